"""The markdown summary of Fig. 2's natural-image panel: test accuracy, NLL and ECE per N and method, each DWP
run paired by seed with every baseline that started from the same μ.

    python -m training.experiments fig2-table --csv DIR/fig2.csv

The CSV is the one ``fig2 --target photo-heldout`` writes (fig2.NATURAL_COLUMNS); it may hold the runs of several
prior domains. Rows are grouped by how μ started (``init_prior``) and by the net and schedule (``width_scale``,
``steps``): only runs of one group are compared. Within a group each DWP domain gets one table per metric: the
mean ± std over seeds of every method, and for each baseline the paired difference DWP − baseline over the
seeds both have, how many seeds DWP wins (higher accuracy; lower NLL and ECE), and the paired t-test p.
Baselines are the other methods of the group, mv-gaussian per domain of its source kernels, and the DWP of any
other domain (the domain control). A run recorded twice (another protocol, same grid point) counts once: the last.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

METRICS = {"accuracy": ("test accuracy", 1.0), "nll": ("test NLL (nats)", -1.0), "ece": ("test ECE", -1.0)}  # sign: better


def _label(method: str, prior: str) -> str:
    return f"{method} ({prior})" if prior else method


def _size_key(n: str) -> tuple[int, int]:
    return (1, 0) if n == "all" else (0, int(n))


def _paired(a: dict[int, float], b: dict[int, float], better: float) -> str:
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return "no common seeds"
    d = np.array([a[k] - b[k] for k in seeds])
    wins = int((better * d > 0).sum())
    if len(d) < 2:
        return f"Δ {d.mean():+.4f}, wins {wins}/1"
    from scipy.stats import ttest_rel

    p = ttest_rel([a[k] for k in seeds], [b[k] for k in seeds]).pvalue
    return f"Δ {d.mean():+.4f}, wins {wins}/{len(d)}, p {p:.3f}" if np.isfinite(p) else \
        f"Δ {d.mean():+.4f}, wins {wins}/{len(d)}, p n/a"


def _mean(scores: dict[int, float]) -> str:
    v = np.array(list(scores.values()))
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def read_runs(path: str | os.PathLike) -> list[dict[str, str]]:
    """The CSV's rows, one per grid point (method, prior, init_prior, N, seed, width_scale, steps): the last one."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        missing = {"prior", "init_prior", "width_scale"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{path}: no column(s) {sorted(missing)}: not a natural Fig. 2 CSV "
                         "(fig2 --target photo-heldout writes one)")
    last = {(r["method"], r["prior"], r["init_prior"], r["n_train"], r["seed"], r["width_scale"], r["steps"]): r
            for r in rows}
    return list(last.values())


def natural_fig2_table(path: str | os.PathLike) -> str:
    """Markdown tables of the natural panel's CSV at `path` (see the module docstring)."""
    rows = read_runs(path)
    lines: list[str] = []
    groups = dict.fromkeys((r["init_prior"], r["width_scale"], r["steps"]) for r in rows)
    for init, width, steps in groups:
        runs = [r for r in rows if (r["init_prior"], r["width_scale"], r["steps"]) == (init, width, steps)]
        sizes = sorted({r["n_train"] for r in runs}, key=_size_key)
        labels = list(dict.fromkeys(_label(r["method"], r["prior"]) for r in runs))
        domains = [lab for lab in labels if lab.startswith("dwp (")]
        heading = f"μ from the {init} DWP's samples, width × {width}, {steps} steps"
        if not domains:
            lines += [f"**{heading}**: no DWP runs, nothing to compare.", ""]
            continue
        for dwp in domains:
            others = [lab for lab in labels if lab != dwp]
            for metric, (title, better) in METRICS.items():
                lines += [f"**{title} — {dwp} against each baseline, {heading}** (N = training tiles per class)", "",
                          f"| N | {dwp} | " + " | ".join(others) + " |", "|---|---|" + "---|" * len(others)]
                for n in sizes:
                    scores = {lab: {int(r["seed"]): float(r[metric]) for r in runs
                                    if r["n_train"] == n and _label(r["method"], r["prior"]) == lab} for lab in labels}
                    cells = [f"{_mean(scores[o])} ({_paired(scores[dwp], scores[o], better)})"
                             if scores[o] and scores[dwp] else (_mean(scores[o]) if scores[o] else "–") for o in others]
                    lines.append(f"| {n} | {_mean(scores[dwp]) if scores[dwp] else '–'} | " + " | ".join(cells) + " |")
                lines.append("")
    return "\n".join(lines)
