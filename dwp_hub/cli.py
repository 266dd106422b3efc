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
