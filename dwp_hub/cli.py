"""The `dwp-hub` command line: list, inspect and sample priors (more commands register themselves below)."""

from __future__ import annotations

import json

import click
import torch

from .errors import DWPError
from .prior import DWPrior
from .resolve import list_priors


class FriendlyGroup(click.Group):
    """A click group that turns user-caused errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (DWPError, ValueError, OSError) as e:
            raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dwp-hub")
def main() -> None:
    """Deep weight priors for convolutional networks: load, sample, initialise, publish."""


@main.command("list")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Hugging Face cache to scan.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(cache_dir: str | None, as_json: bool) -> None:
    """List bundled priors and priors in the local Hugging Face cache."""
    priors = list_priors(cache_dir=cache_dir)
    if as_json:
        click.echo(json.dumps([{**p.__dict__, "path": str(p.path)} for p in priors], indent=2))
        return
    click.echo(f"{'name':32} {'kernel':>6} {'z_dim':>5}  {'domain':14} source")
    for p in priors:
        click.echo(f"{p.name:32} {p.kernel_size:>4}x{p.kernel_size:<1} {p.z_dim:>5}  {p.domain:14} {p.source}")
    if not priors:
        click.echo("(no priors found)")


@main.command()
@click.argument("name")
@click.option("--revision", default=None, help="Hub branch, tag or commit.")
def info(name: str, revision: str | None) -> None:
    """Show a prior's config and model-card metadata."""
    from huggingface_hub import ModelCard

    from .config import CARD_NAME

    prior = DWPrior.from_pretrained(name, revision=revision)
    src = prior.source
    click.echo(f"name:    {name}\nsource:  {src.source}{f' @ {src.revision}' if src.revision else ''}\npath:    {src.path}")
    click.echo(f"params:  {sum(p.numel() for p in prior.parameters()):,}")
    click.echo("config:\n" + json.dumps(prior.config.to_dict(), indent=2, sort_keys=True))
    card = src.path / CARD_NAME
    if card.is_file():
        meta = ModelCard.load(card).data.to_dict()
        click.echo("card metadata:\n" + json.dumps(meta, indent=2, sort_keys=True, default=str))
    else:
        click.echo("card metadata: (no README.md)")


@main.command()
@click.argument("name")
@click.option("-n", "--num", "n", type=click.IntRange(1, 100_000), default=64, show_default=True, help="Kernels to sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--noise", is_flag=True, help="Add decoder noise instead of drawing the decoder mean.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
def sample(name: str, n: int, seed: int, noise: bool, out: str) -> None:
    """Sample kernels from a prior and save them as a PNG grid (paper Fig. 1c)."""
    from .images import kernel_grid, save_png

    if not out.lower().endswith(".png"):
        raise click.BadParameter("output must be a .png file", param_hint="--out")
    prior = DWPrior.from_pretrained(name)
    kernels = prior.sample(n, generator=torch.Generator().manual_seed(seed), noise=noise)
    path = save_png(kernel_grid(kernels), out)
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
@click.option("--prior", "priors", multiple=True, required=True,
              help="Prior name, folder or domain shorthand (notmnist = every bundled dwp/notmnist-KxK); repeatable.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write model.safetensors + config.json into (new, empty, or an earlier output).")
@click.option("--rescale", type=click.Choice(["match", "fan_in", "none"]), default="match", show_default=True,
              help="Per-layer scale: the model's own init RMS, Kaiming sqrt(2/fan_in), or raw prior samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the model's own init and the sampling.")
@click.option("--num-classes", type=click.IntRange(min=1), default=None, help="Classifier outputs (model default if unset).")
@click.option("--in-chans", type=click.IntRange(min=1), default=None, help="Input channels (timm models only).")
def init_cmd(model_name: str, priors: tuple[str, ...], out: str, rescale: str, seed: int,
             num_classes: int | None, in_chans: int | None) -> None:
    """Initialise MODEL's convolutions from deep weight priors and save it in timm's checkpoint layout.

    MODEL is a timm model name or torchvision:NAME. Every conv whose kernel size has a prior gets one
    decoder-mean sample per kernel (paper §4.2-4.3); the others keep MODEL's own init. Prints the
    per-layer report and how to load the result.
    """
    from . import __version__
    from .init import init_from_prior, resolve_priors
    from .networks import create_network, load_instructions, save_checkpoint, staged_checkpoint

    table = resolve_priors(list(priors))  # a bad prior name fails before any work
    with staged_checkpoint(out) as tmp:
        torch.manual_seed(seed)
        model = create_network(model_name, num_classes=num_classes, in_chans=in_chans)
        report = init_from_prior(model, [prior for prior, _ in table.values()], rescale=rescale,
                                 generator=torch.Generator().manual_seed(seed))
        provenance = {"dwp_hub_version": __version__, "model": model_name, "seed": seed,
                      "priors": {f"{k}x{k}": label for k, (_, label) in sorted(table.items())}, **report.to_dict()}
        save_checkpoint(model, model_name, tmp, {"dwp_init": provenance}, num_classes=num_classes)
    click.echo(report.table())
    click.echo(report.summary())
    click.echo(f"wrote {out} (model.safetensors, config.json); load with:")
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
    from .images import save_png
    from .latent import heldout_kernels, latent_figure

    if not out.lower().endswith(".png"):
        raise click.BadParameter("output must be a .png file", param_hint="--out")
    prior = DWPrior.from_pretrained(name)
    kernels = heldout_kernels(prior, kernels_file)
    k = prior.kernel_size
    image = latent_figure(prior, kernels, f"{name}: latent space of its {k}x{k} kernel VAE (paper Fig. 6)",
                          grid=grid, max_points=max_points, seed=seed)
    path = save_png(image, out)
    click.echo(f"wrote {path}: {min(len(kernels), max_points):,} held-out kernels, {grid}x{grid} decoded grid")
