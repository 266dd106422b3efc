"""The `dwp-hub` command line: list, inspect, sample, push priors and initialise networks from them.

Only click is imported up front; each command imports torch and the rest of dwp_hub when it runs, so
``dwp-hub --help`` answers at once (training/benchmarks/bench_cli.py measures it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .errors import DWPError
from .domains import DEFAULT_DOMAINS

INFO_PROVENANCE_KEYS = ("dataset", "num_source_nets", "source_test_accuracy_mean", "kernels_kept", "epochs",
                        "heldout_iwae_loglik", "heldout_fullcov_gaussian_loglik", "heldout_isotropic_gaussian_loglik",
                        "date", "build_command")


def _quiet_exit_on_closed_pipe() -> None:
    """stdout's reader went away (``dwp-hub info … | head``): stop without an error message, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(0)


class FriendlyGroup(click.Group):
    """A click group that turns user-caused errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _quiet_exit_on_closed_pipe()
        except (DWPError, ValueError, OSError) as e:
            raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def _output_folder(out: str) -> None:
    """Make sure the folder `out` goes into exists: created (and said so on stderr) if missing.

    The README's commands write into folders a fresh checkout does not have, so missing folders are
    created; an existing file in the way is refused with its name.
    """
    parent = Path(out).parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise click.ClickException(f"cannot write {out}: {existing} is not a folder")
    if existing != parent:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise click.ClickException(f"cannot create folder {parent} for {out}: {e.strerror or e}") from None
        click.echo(f"created folder {parent}", err=True)


def _write_png(image, out: str) -> Path:
    """`image` saved atomically as `out` (folders created as `_output_folder` says); errors name `out`."""
    from .images import save_png

    _output_folder(out)
    try:
        return save_png(image, out)
    except OSError as e:
        raise click.ClickException(f"cannot write {out}: {e.strerror or e}") from None


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dwp-hub")
def main() -> None:
    """Deep weight priors for convolutional networks: load, sample, initialise, publish."""


@main.command("list")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Hugging Face cache to scan.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(cache_dir: str | None, as_json: bool) -> None:
    """List bundled priors and priors in the local Hugging Face cache, then the domains they make up."""
    from .hub import list_priors

    priors = list_priors(cache_dir=cache_dir)
    if as_json:
        click.echo(json.dumps([{**p.__dict__, "path": str(p.path)} for p in priors], indent=2))
        return
    click.echo(f"{'name':32} {'kernel':>6} {'z_dim':>5}  {'domain':14} source")
    for p in priors:
        click.echo(f"{p.name:32} {p.kernel_size:>4}x{p.kernel_size:<1} {p.z_dim:>5}  {p.domain:14} {p.source}")
    if not priors:
        click.echo("(no priors found)")
        return
    sizes: dict[str, set[int]] = {}
    for p in priors:
        sizes.setdefault(p.domain, set()).add(p.kernel_size)
    click.echo("\ndomains (use one with --domain, or as a prior name: every kernel size it has):")
    for domain, ks in sorted(sizes.items()):
        default = [str(c) for c, d in DEFAULT_DOMAINS.items() if d == domain]
        note = f"  default for {'/'.join(default)}-channel inputs" if default else ""
        click.echo(f"  {domain:14} {', '.join(f'{k}x{k}' for k in sorted(ks, reverse=True))}{note}")


@main.command()
@click.argument("name")
@click.option("--revision", default=None, help="Hub branch, tag or commit (loads from the Hub).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the config, where the prior came from (source) and the card metadata as JSON.")
@click.option("--provenance", is_flag=True, help="Print the full provenance record (provenance.json) as JSON.")
def info(name: str, revision: str | None, as_json: bool, provenance: bool) -> None:
    """Show a short summary of a prior: where it came from, its config, card metadata and scores."""
    from .prior import DWPrior

    prior = DWPrior.from_pretrained(name, revision=revision)
    src = prior.source
    if provenance:
        click.echo(json.dumps(prior.provenance, indent=2, sort_keys=True))
        return
    meta = prior.generate_model_card().data.to_dict() if prior.card else {}
    if as_json:
        click.echo(json.dumps({"config": prior.config.to_dict(), "source": {**src.to_dict(), "path": str(src.path)},
                               "card_metadata": meta}, indent=2, sort_keys=True, default=str))
        return
    c = prior.config
    where = src.repo_id or str(src.path)
    pin = f"revision {src.revision}" if src.revision else f"sha256 {src.sha256}"
    click.echo(f"name:         {name}")
    click.echo(f"source:       {src.origin} {where} ({pin})")
    click.echo(f"path:         {src.path}")
    click.echo(f"prior:        {c.kernel_size}x{c.kernel_size} kernels, domain {c.domain}, {c.architecture}, "
               f"z_dim {c.z_dim}, {sum(p.numel() for p in prior.parameters()):,} parameters")
    if meta:
        click.echo(f"card:         license {meta.get('license', '?')}, tags {', '.join(meta.get('tags') or [])}")
    kernels = "yes" if prior.kernels_file is not None else "no"
    click.echo(f"kernels:      source-kernel samples shipped: {kernels}")
    shown = [k for k in INFO_PROVENANCE_KEYS if k in prior.provenance]
    for key in shown:
        click.echo(f"  {key + ':':36} {prior.provenance[key]}")
    if prior.provenance:
        click.echo(f"({len(prior.provenance)} provenance fields; --provenance prints them all, --json the config, "
                   "source and card metadata)")


@main.command()
@click.argument("name")
@click.option("-n", "--num", "n", type=click.IntRange(1, 100_000), default=64, show_default=True, help="Kernels to sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--noise", is_flag=True, help="Add decoder noise instead of drawing the decoder mean.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
def sample(name: str, n: int, seed: int, noise: bool, out: str) -> None:
    """Sample kernels from a prior and save them as a PNG grid (paper Fig. 1c)."""
    import torch

    from .images import kernel_grid
    from .prior import DWPrior

    if not out.lower().endswith(".png"):
        raise click.BadParameter("output must be a .png file", param_hint="--out")
    prior = DWPrior.from_pretrained(name)
    kernels = prior.sample(n, generator=torch.Generator().manual_seed(seed), noise=noise)
    path = _write_png(kernel_grid(kernels), out)
    click.echo(f"wrote {n} {prior.kernel_size}x{prior.kernel_size} kernels from {name} to {path}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=str))
@click.option("--repo-id", required=True, help="Hub repository to publish to, ORG/NAME (created if missing).")
@click.option("--revision", default=None, help="Branch to commit to (created from the default branch if missing).")
@click.option("--private", is_flag=True, help="Create the repository as private (no effect on an existing one).")
@click.option("--commit-message", default=None, help="Commit message (default: what the prior is).")
@click.option("--create-pr", is_flag=True, help="Open a pull request against --revision instead of committing to it.")
@click.option("--token", default=None, help="Hub token (default: HF_TOKEN or the one saved by `hf auth login`).")
def push(folder: str, repo_id: str, revision: str | None, private: bool, commit_message: str | None,
         create_pr: bool, token: str | None) -> None:
    """Validate a prior folder and publish it to the Hub in one commit.

    FOLDER must load as a prior (config.json, model.safetensors, README.md with metadata; optional
    kernels.safetensors); anything wrong is reported before any network call. The Hub endpoint comes
    from HF_ENDPOINT, as for every Hugging Face tool. Prints the repository URL and the commit id.
    """
    from .publish import push_folder

    result = push_folder(folder, repo_id, revision=revision, private=True if private else None,
                         commit_message=commit_message, create_pr=create_pr, token=token)
    click.echo(f"repo:     {result.repo_url}")
    click.echo(f"revision: {result.revision}")
    click.echo(f"commit:   {result.commit}")
    if result.pr_url:
        click.echo(f"pull request: {result.pr_url}")
    if not result.changed:
        click.echo("(the revision already held exactly these files; no new commit was made)")


@main.command("init")
@click.argument("model_name", metavar="MODEL")
@click.option("--prior", "priors", multiple=True,
              help="Prior name, NAME@REV, folder or domain shorthand (notmnist = every bundled dwp/notmnist-KxK); "
                   "repeatable.")
@click.option("--domain", default=None,
              help="Every prior of this domain (see `dwp-hub list`). Default, without --prior: by the model's input "
                   "channels, " + ", ".join(f"{d} for {c}" for c, d in DEFAULT_DOMAINS.items()) + ".")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write model.safetensors + config.json + README.md into (new, empty, or an earlier "
                   "output).")
@click.option("--rescale", type=click.Choice(["match", "fan_in", "none"]), default="match", show_default=True,
              help="Per-layer scale: the model's own init RMS, Kaiming sqrt(2/fan_in), or raw prior samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the model's own init and the sampling.")
@click.option("--num-classes", type=click.IntRange(min=1), default=None, help="Classifier outputs (model default if unset).")
@click.option("--in-chans", type=click.IntRange(min=1), default=None, help="Input channels (timm models only).")
def init_cmd(model_name: str, priors: tuple[str, ...], domain: str | None, out: str, rescale: str, seed: int,
             num_classes: int | None, in_chans: int | None) -> None:
    """Initialise MODEL's convolutions from deep weight priors and save it in timm's checkpoint layout.

    MODEL is a timm model name or torchvision:NAME. Every conv whose kernel size has a prior gets one
    decoder-mean sample per kernel (paper §4.2-4.3); the others keep MODEL's own init. Prints the
    per-layer report and how to load the result.
    """
    import torch

    from . import __version__
    from .domains import default_domain
    from .init import dwp_table, init_from_prior
    from .networks import create_network, load_instructions, save_checkpoint, staged_checkpoint
    from .prior_spec import domain_priors

    if priors and domain:
        raise click.BadParameter("give --prior or --domain, not both", param_hint="--domain")
    torch.manual_seed(seed)
    model = create_network(model_name, num_classes=num_classes, in_chans=in_chans)
    if not priors:
        domain = domain or default_domain(model)
        if not domain_priors(domain):
            raise click.BadParameter(f"no prior of domain {domain!r} is bundled or cached; see `dwp-hub list`",
                                     param_hint="--domain")
        priors = (domain,)
    table = dwp_table(list(priors))  # resolved once; a bad prior name fails before any work
    with staged_checkpoint(out) as tmp:
        report = init_from_prior(model, {k: entry.prior for k, entry in table.items()}, rescale=rescale,
                                 generator=torch.Generator().manual_seed(seed))
        record = {"dwp_hub_version": __version__, "model": model_name, "seed": seed, **report.to_dict()}
        save_checkpoint(model, model_name, tmp, record, num_classes=num_classes, in_chans=in_chans, destination=out)
    click.echo(report.table())
    click.echo(report.summary())
    click.echo(f"wrote {out} (model.safetensors, config.json, README.md); load with:")
    click.echo("  " + load_instructions(model_name, out, num_classes=num_classes, in_chans=in_chans))


@main.command()
@click.argument("name")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--kernels", "kernels_file", type=click.Path(dir_okay=False), default=None,
              help="safetensors file with a tensor 'heldout' (n, k, k) [default: the prior's kernels.safetensors].")
@click.option("--grid", type=click.IntRange(2, 32), default=10, show_default=True, help="Latent grid points per side.")
@click.option("--max-points", type=click.IntRange(min=1), default=4096, show_default=True, help="Kernels to plot at most.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subsample when there are more kernels.")
def latent(name: str, out: str, kernels_file: str | None, grid: int, max_points: int, seed: int) -> None:
    """Plot a prior's latent space (paper Figure 6): held-out kernels' latent means, decoded grid kernels."""
    from .latent import heldout_kernels, latent_figure
    from .prior import DWPrior

    if not out.lower().endswith(".png"):
        raise click.BadParameter("output must be a .png file", param_hint="--out")
    prior = DWPrior.from_pretrained(name)
    kernels = heldout_kernels(prior, kernels_file)
    k = prior.kernel_size
    image = latent_figure(prior, kernels, f"{name}: latent space of its {k}x{k} kernel VAE (paper Fig. 6)",
                          grid=grid, max_points=max_points, seed=seed)
    path = _write_png(image, out)
    click.echo(f"wrote {path}: {min(len(kernels), max_points):,} held-out kernels, {grid}x{grid} decoded grid")
