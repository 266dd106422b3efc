"""Cost of the exact DWP bound per kernel against the N(0,1) KL, for every bundled prior, measured side by side.

    python training/benchmarks/bench_bound_cost.py                  # every bundled prior, 2 threads (a few minutes)
    python training/benchmarks/bench_bound_cost.py dwp/photo-3x3 build/mine-3x3   # priors by name or folder
    python training/benchmarks/bench_bound_cost.py --write          # + training/results/bound-cost.csv

For each prior: one conv layer of --kernels k×k kernels made Bayesian by ``bayesianize`` (its default: the exact
bound with a trained reverse model on every kernel) and the same layer under N(0,1); their KL term's forward and
backward alternate in this process, one timed block each per round, and the table gives the median µs per kernel
and their ratio, against the budget every shipped prior is held to (``BOUND_COST_BUDGETS`` in
training/bound_cost.py, where the measurement lives; ``python -m training build`` runs a short version of it
on each prior it fits). A ratio is a property of the prior's architecture on this CPU and thread count; absolute
times are printed for context only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `training`

from dwp_hub import DWPrior, list_priors  # noqa: E402
from training.bound_cost import (BENCH_KERNELS, BENCH_THREADS, BOUND_COST_BUDGETS, BOUND_COST_CSV,  # noqa: E402
                                 csv_row, measure_bound_cost, write_costs)
from training.cli_options import CONTEXT  # noqa: E402


@click.command(context_settings=CONTEXT)
@click.argument("priors", nargs=-1)
@click.option("--kernels", type=click.IntRange(1), default=BENCH_KERNELS, show_default=True,
              help="Kernels in the measured layer.")
@click.option("--rounds", type=click.IntRange(1), default=15, show_default=True,
              help="Timed rounds (one block of each KL per round); the medians are reported.")
@click.option("--warmup", type=click.IntRange(0), default=3, show_default=True, help="Untimed rounds first.")
@click.option("--threads", type=click.IntRange(1), default=BENCH_THREADS, show_default=True, help="Torch threads.")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Ratio above which a prior is flagged [default: its kernel size's, BOUND_COST_BUDGETS].")
@click.option("--write", is_flag=True, help="Also write the table as a CSV (--csv).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=BOUND_COST_CSV,
              show_default="training/results/bound-cost.csv", help="Where --write puts the CSV.")
def main(priors: tuple[str, ...], kernels: int, rounds: int, warmup: int, threads: int, budget: float | None,
         write: bool, csv_path: Path) -> None:
    """Per-kernel cost of the exact DWP bound as a ratio to the N(0,1) KL, for PRIORS (default: every bundled one)."""
    names = list(priors) or [p.name for p in list_priors() if p.source == "bundled"]
    loaded = {}
    for name in names:  # every prior is loaded (and refused) before anything is timed
        try:
            loaded[name] = DWPrior.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise click.ClickException(str(e)) from None  # the message names the prior
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    click.echo(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs, load average {load:.2f}; "
               f"{kernels:,} kernels per layer, {rounds} rounds after {warmup} warm-up; budget "
               + (f"{budget:g}x" if budget is not None else
                  ", ".join(f"{k}x{k} {b:g}x" for k, b in sorted(BOUND_COST_BUDGETS.items()))))
    click.echo(f"{'prior':22} {'architecture':15} {'bound µs/kernel':>16} {'N(0,1) µs/kernel':>17} {'ratio':>8}")
    rows = []
    for name, prior in loaded.items():
        cost = measure_bound_cost(prior, kernels=kernels, rounds=rounds, warmup=warmup, threads=threads)
        flag = "  OVER BUDGET" if cost.over_budget(budget) else ""
        click.echo(f"{name:22} {cost.architecture:15} {cost.bound_us:16.3f} {cost.normal_us:17.4f} "
                   f"{cost.ratio:7.1f}x{flag}")
        rows.append(csv_row(name, cost, budget))
    if write:
        write_costs(rows, csv_path)
        click.echo(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
