"""The results page: plots and tables built from a results folder's CSVs, with the paper's numbers beside ours.

``build_report(results, page_dir)`` copies the CSVs and settings into ``page_dir/data/``, draws
``fig2.png``, ``fig3.png``, ``fig4.png`` and writes ``page_dir/README.md``; run on ``page_dir/data/`` itself, it
rebuilds the page from the records it keeps. Only rows of the protocol recorded in
``settings-<experiment>.json`` are used, so stale rows from another setting never leak in.
Comparisons between methods are paired over split seeds (the same images and init for every method).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from dwp_hub.init import DEFAULT_RESCALE

from .page_text import official_split, prior_name

# Paper Fig. 2, MNIST test accuracy (read from the original implementation's notebook), N = 50…1000.
PAPER_FIG2 = {
    "dwp": {50: 0.800, 100: 0.867, 200: 0.915, 500: 0.945, 1000: 0.961},
    "log-uniform": {50: 0.766, 100: 0.839, 200: 0.894, 500: 0.938, 1000: 0.958},
    "normal": {50: 0.717, 100: 0.816, 200: 0.890, 500: 0.938, 1000: 0.959},
    "deterministic": {50: 0.751, 100: 0.827, 200: 0.879, 500: 0.926, 1000: 0.954},
}
LABELS = {"dwp": "DWP", "normal": "N(0,1)", "log-uniform": "log-uniform",
          "mv-gaussian": "multivariate Gaussian", "deterministic": "deterministic"}
INIT_LABELS = {"dwp": "DWP samples (raw)", "dwp:match": "DWP samples, rescale=match",
               "dwp:fan_in": "DWP samples, rescale=fan_in", "filters": "source kernels (raw)",
               "filters:match": "source kernels, rescale=match", "xavier": "Xavier"}
TEXT_COLUMNS = {"run_id", "protocol", "method", "init", "model", "metric", "layer"}
# Two-sided 5% critical values of Student's t by degrees of freedom (paired test over split seeds).
T_CRIT = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
          12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def _t_crit(dof: int) -> float:
    return T_CRIT[max(k for k in T_CRIT if k <= dof)] if dof >= 1 else math.inf


def load_rows(results: Path, experiment: str) -> tuple[list[dict], dict | None]:
    """Rows of `experiment` recorded under the protocol its settings file names, numbers parsed."""
    settings_path, csv_path = results / f"settings-{experiment}.json", results / f"{experiment}.csv"
    if not settings_path.is_file() or not csv_path.is_file():
        return [], None
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("protocol") == settings["protocol"] and None not in r.values()]
    for r in rows:
        for k, v in r.items():
            if k not in TEXT_COLUMNS:
                r[k] = _number(v)
    return rows, settings


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _pm(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    m, s = _mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def paired_verdict(a: dict[int, float], b: dict[int, float], higher_is_better: bool = True) -> tuple[str, float, int]:
    """Compare method a against b over their common seeds: ('win'|'tie'|'loss'|'n/a', mean diff, seeds)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return "n/a", math.nan, 0
    d = np.array([a[s] - b[s] for s in seeds]) * (1 if higher_is_better else -1)
    if len(d) < 2:
        return "n/a", float(d.mean()), len(d)
    se = d.std(ddof=1) / math.sqrt(len(d))
    if se == 0:
        verdict = "tie" if d.mean() == 0 else ("win" if d.mean() > 0 else "loss")
    else:
        t = d.mean() / se
        verdict = "win" if t > _t_crit(len(d) - 1) else "loss" if t < -_t_crit(len(d) - 1) else "tie"
    return verdict, float(d.mean()) * (1 if higher_is_better else -1), len(d)


def _test_set(settings: dict) -> str:
    """What a Fig. 3 or Fig. 4 run was tested on: the target's fixed test set, or every image not drawn."""
    return "the official 10,000 test images" if official_split(settings.get("target", "")) else "the rest"


# --- Fig. 2 ---------------------------------------------------------------------------------------------
def _accuracy_verdict(by: dict, dwp_key: tuple, other_key: tuple) -> tuple[str, str]:
    """Paired verdict of DWP's accuracy against another method's over their shared seeds, and its table cell."""
    a = {s: r["accuracy"] for s, r in by.get(dwp_key, {}).items()}
    b = {s: r["accuracy"] for s, r in by.get(other_key, {}).items()}
    v, d, n = paired_verdict(a, b)
    return v, (f"{v} ({d:+.3f})" if n else "n/a")


def _size_header(sizes: list[int]) -> tuple[str, str]:
    """Header and separator of a table with a method column and one column per training-set size N."""
    return "| method | " + " | ".join(f"N={n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)


def fig2_section(rows: list[dict], settings: dict, out: Path) -> str:
    import matplotlib.pyplot as plt

    by = defaultdict(dict)  # (method, n) -> seed -> row
    for r in rows:
        by[(r["method"], r["n_train"])][r["seed"]] = r
    methods = [m for m in settings["settings"]["methods"] if any(k[0] == m for k in by)]
    methods += sorted({k[0] for k in by} - set(methods))
    sizes = sorted({k[1] for k in by})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, m in enumerate(methods):
        color = f"C{i}"
        for ax, key in zip(axes, ("accuracy", "nll")):
            ns = [n for n in sizes if by.get((m, n))]
            stats = [_mean_std([r[key] for r in by[(m, n)].values()]) for n in ns]
            ax.errorbar(ns, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", capsize=3,
                        color=color, label=LABELS.get(m, m))
        if m in PAPER_FIG2:
            ns = sorted(PAPER_FIG2[m])
            axes[0].plot(ns, [PAPER_FIG2[m][n] for n in ns], ls="--", color=color, alpha=0.6)
    k = settings["settings"]["eval_samples"]
    for ax, title in zip(axes, (f"test accuracy ({k}-sample ensemble); dashed: paper", f"test NLL ({k}-sample ensemble)")):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training images N")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig2.png", dpi=120)
    plt.close(fig)

    head, sep = _size_header(sizes)
    acc = [head, sep]
    for m in methods:
        cells = []
        for n in sizes:
            cell = _pm([r["accuracy"] for r in by.get((m, n), {}).values()])
            if m in PAPER_FIG2 and n in PAPER_FIG2[m]:
                cell += f" ({PAPER_FIG2[m][n]:.3f})"
            cells.append(cell)
        acc.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    nll = [head, sep] + [f"| {LABELS.get(m, m)} | " + " | ".join(_pm([r['nll'] for r in by.get((m, n), {}).values()])
                                                                   for n in sizes) + " |" for m in methods]
    sig = ["| method | " + " | ".join(f"N={n}" for n in sizes) + " |", sep]
    for m in methods:
        if m == "deterministic":
            continue
        sig.append(f"| {LABELS.get(m, m)} | " + " | ".join(
            _pm([r["sigma_conv1"] for r in by.get((m, n), {}).values()], 4) + " / "
            + _pm([r["sigma_conv2"] for r in by.get((m, n), {}).values()], 4) for n in sizes) + " |")

    verdict_lines = ["| DWP vs | " + " | ".join(f"N={n}" for n in sizes) + " |", sep]
    summary = defaultdict(list)
    for m in methods:
        if m.startswith("dwp"):
            continue
        cells = []
        for n in sizes:
            v, cell = _accuracy_verdict(by, ("dwp", n), (m, n))
            cells.append(cell)
            summary[v].append(f"{LABELS.get(m, m)} at N={n}")
        verdict_lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    s = settings["settings"]
    speed = ["| method | " + " | ".join(sorted({r.get('device', '?') for r in rows})) + " |",
             "|---|" + "---|" * len({r.get('device', '?') for r in rows})]
    for m in methods:
        cells = []
        for d in sorted({r.get("device", "?") for r in rows}):
            ms = [r["ms_per_step"] for r in rows if r["method"] == m and r.get("device", "?") == d]
            cells.append(f"{np.median(ms):.1f}" if ms else "–")
        speed.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    paper_gap = []
    for m in methods:
        if m in PAPER_FIG2:
            diffs = [_mean_std([r["accuracy"] for r in by[(m, n)].values()])[0] - PAPER_FIG2[m][n]
                     for n in sizes if by.get((m, n)) and n in PAPER_FIG2[m]]
            if diffs:
                paper_gap.append(f"{LABELS.get(m, m)} {min(diffs):+.3f} to {max(diffs):+.3f}")
    return "\n".join([
        "## Fig. 2 — variational inference with little data (and appendix C)",
        "",
        "![Fig. 2](fig2.png)",
        "",
        f"Test accuracy of the {s['eval_samples']}-sample ensemble, mean ± std over split seeds; in brackets the "
        "paper's number (MNIST, official 10k test set).",
        "",
        *acc,
        "",
        f"Test NLL (nats per image) of the {s['eval_samples']}-sample ensemble, mean ± std over split seeds:",
        "",
        *nll,
        "",
        "**DWP against each baseline** (accuracy; paired over split seeds: the same images and the same μ init "
        "for every method). *win*/*loss*: the paired mean difference (in brackets) differs from 0 by a two-sided "
        f"paired t-test at 5% over {len(s['seeds'])} seeds; *tie* otherwise.",
        "",
        *verdict_lines,
        "",
        f"Summary — DWP wins against: {', '.join(summary['win']) or 'none'}; ties with: "
        f"{', '.join(summary['tie']) or 'none'}; loses against: {', '.join(summary['loss']) or 'none'}.",
        "",
        f"Ours minus the paper, per method over N: {'; '.join(paper_gap) or 'n/a'}.",
        "",
        "Posterior scale after training: median σ of layer 1 / layer 2 (mean ± std over seeds). The posteriors "
        f"start at σ = {math.exp(0.5 * s['init_log_sigma2']):.4f}.",
        "",
        *sig,
        "",
        "Median training time per step (ms, wall clock, including the KL; runs shared the device with the "
        "other workers):",
        "",
        *speed,
        "",
    ])


def reference_section(ours: list[dict], theirs: list[dict], ours_settings: dict, their_settings: dict) -> str:
    """Fig. 2 with our shipped priors against the same protocol with the paper authors' priors, paired by seed.

    In the reference runs every method's μ starts from the authors' priors, so the N(0,1) and deterministic rows
    there say what the authors' init alone is worth; DWP's row adds their prior's KL.
    """
    by_ours, by_theirs = defaultdict(dict), defaultdict(dict)
    for rows, by in ((ours, by_ours), (theirs, by_theirs)):
        for r in rows:
            by[(r["method"], r["n_train"])][r["seed"]] = r["accuracy"]
    sizes = sorted({n for (_, n) in by_theirs} & {n for (_, n) in by_ours})
    methods = [m for m in LABELS if any((m, n) in by_theirs for n in sizes)]
    lines = list(_size_header(sizes))
    for m in methods:
        cells = []
        for n in sizes:
            a, b = by_ours.get((m, n), {}), by_theirs.get((m, n), {})
            v, d, k = paired_verdict(a, b)
            cells.append(f"{_pm(list(a.values()))} / {_pm(list(b.values()))}, {v} ({d:+.3f})" if k else "n/a")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    names = lambda st: ", ".join(f"{k} {prior_name(v)}" for k, v in sorted(st["priors"].items()))  # noqa: E731
    return "\n".join([
        "## Our priors against the paper authors' (Fig. 2, same protocol)",
        "",
        f"Ours: {names(ours_settings)}. Theirs: {names(their_settings)} (the authors' VAEs, for measurement only). "
        "Every method's μ starts from samples of the priors of its run, so the baselines differ between the two "
        "columns by their init alone. Each cell: accuracy with our priors / with the authors', mean ± std over split "
        "seeds; then the paired verdict of ours against theirs (t-test at 5%) and the mean difference.",
        "",
        *lines,
        "",
    ])


# --- Appendix B -----------------------------------------------------------------------------------------
def gap_section(rows: list[dict], settings: dict) -> str:
    by = defaultdict(list)
    for r in rows:
        by[(r["n_train"], r["layer"], r["kernel_size"], r["kernels"])].append(r)
    lines = ["| N | layer | kernels | bound, trained r(z|w) | bound, r(z|w) = p(z) | IWAE (K) | gap | gap with r = p(z) |",
             "|---|---|---|---|---|---|---|---|"]
    for (n, layer, k, kernels), rs in sorted(by.items()):
        lines.append(f"| {n} | {layer} ({k}x{k}) | {kernels} | {_pm([r['bound'] for r in rs], 1)} | "
                     f"{_pm([r['bound_prior_r'] for r in rs], 1)} | {_pm([r['iwae_kl'] for r in rs], 1)} "
                     f"({rs[0]['iwae_samples']}) | {_pm([r['gap'] for r in rs], 1)} | "
                     f"{_pm([r['gap_prior_r'] for r in rs], 1)} |")
    s = settings["settings"]
    return "\n".join([
        "## Appendix B — how loose the auxiliary bound is",
        "",
        f"DWP-VI trained with the Fig. 2 protocol on N ∈ {tuple(s['sizes'])} (split seeds {tuple(s['seeds'])}); "
        "then per layer, upper bounds on KL(q ‖ p̂) in nats summed over the layer's kernels (mean ± std over "
        f"seeds): eq. 7 with the trained reverse model, eq. 7 with r(z|w) = p(z), and the IWAE estimate with "
        f"K = {s['iwae_samples']:,} (eq. 18). gap = bound − IWAE (eq. 19; ≥ 0 up to noise). Estimated on "
        f"{s['max_kernels']} random kernels per layer and scaled to the layer; r = p(z) uses "
        f"{s['prior_z_samples']} z-samples per kernel.",
        "",
        *lines,
        "",
    ])


# --- Fig. 3 ---------------------------------------------------------------------------------------------
def fig3_section(rows: list[dict], settings: dict, out: Path) -> str:
    import matplotlib.pyplot as plt

    by = defaultdict(dict)
    for r in rows:
        by[(r["init"], r["scale"])][r["seed"]] = r
    inits = [i for i in settings["settings"]["inits"] if any(k[0] == i for k in by)]
    scales = sorted({k[1] for k in by})
    fig, ax = plt.subplots(figsize=(6, 4))
    for init in inits:
        ks = [k for k in scales if by.get((init, k))]
        stats = [_mean_std([r["accuracy"] for r in by[(init, k)].values()]) for k in ks]
        ax.errorbar(ks, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3,
                    label=INIT_LABELS.get(init, init))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width scale k (filters: 32k, 128k)")
    ax.set_ylabel("test accuracy")
    ax.set_title("random feature extraction: frozen convs, trained classifier", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig3.png", dpi=120)
    plt.close(fig)
    head = "| init | " + " | ".join(f"k={k:g}" for k in scales) + " |"
    sep = "|---|" + "---|" * len(scales)
    table = [head, sep] + [f"| {INIT_LABELS.get(i, i)} | " + " | ".join(
        _pm([r["accuracy"] for r in by.get((i, k), {}).values()]) for k in scales) + " |" for i in inits]
    verdicts = [head.replace("| init |", "| DWP vs |"), sep]
    for other in inits:
        if other == "dwp":
            continue
        cells = [_accuracy_verdict(by, ("dwp", k), (other, k))[1] for k in scales]
        verdicts.append(f"| {INIT_LABELS.get(other, other)} | " + " | ".join(cells) + " |")
    s = settings["settings"]
    return "\n".join([
        "## Fig. 3 — random feature extraction",
        "",
        "![Fig. 3](fig3.png)",
        "",
        f"Convolutions frozen at their initial kernels (biases zero), only the linear classifier trained on the "
        f"standardised features of {s['train_size']} stratified images ({s['steps']} Adam steps, batch "
        f"{s['batch_size']}, lr {s['lr']:g} decaying linearly to 0), tested on {_test_set(settings)}; mean ± std "
        f"over {len(s['seeds'])} seeds (seed = split, init and batch order).",
        "",
        *table,
        "",
        "DWP samples against the other inits (paired over seeds, two-sided paired t-test at 5%):",
        "",
        *verdicts,
        "",
    ])


# --- Fig. 4 ---------------------------------------------------------------------------------------------
def fig4_section(rows: list[dict], settings: dict, out: Path) -> str:
    import matplotlib.pyplot as plt

    curves = defaultdict(lambda: defaultdict(dict))  # (model, init) -> step -> seed -> value
    for r in rows:
        curves[(r["model"], r["init"])][r["step"]][r["seed"]] = r["value"]
    inits = [i for i in settings["settings"]["inits"] if any(k[1] == i for k in curves)]
    models = [m for m in ("cnn", "vae") if any(k[0] == m for k in curves)]
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(11, 4), squeeze=False)
    titles = {"cnn": "MNIST CNN: test accuracy", "vae": "conv VAE: test ELBO (nats/image)"}
    for ax, model in zip(axes[0], models):
        for init in inits:
            c = curves.get((model, init))
            if not c:
                continue
            steps = sorted(c)
            stats = [_mean_std(list(c[s].values())) for s in steps]
            mean, std = np.array([m for m, _ in stats]), np.array([s for _, s in stats])
            x = np.maximum(steps, 0.5)
            ax.plot(x, mean, marker=".", label=INIT_LABELS.get(init, init))
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("training step (step 0 drawn at 0.5)")
        ax.set_title(titles[model], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig4.png", dpi=120)
    plt.close(fig)

    parts = ["## Fig. 4 — convergence from different initial kernels", "", "![Fig. 4](fig4.png)", ""]
    s = settings["settings"]
    parts.append(
        f"Every parameter trained with Adam (lr {s['lr']:g}, constant), batch {s['batch_size']}, on "
        f"{s['train_size']} stratified images; evaluated on {_test_set(settings)}. CNN: {s['cnn_steps']} steps; "
        f"VAE (appendix G, z = {s['vae_z_dim']}, Bernoulli likelihood): {s['vae_steps']} steps. Mean ± std over "
        f"{len(s['seeds'])} seeds; *mean over the curve* averages the metric over the evaluation steps (an "
        "area-under-the-curve summary of convergence speed).")
    parts.append("")
    curve_means = {}  # (model, init) -> seed -> the metric's mean over the evaluation steps
    for model in models:
        steps = sorted({st for i in inits for st in curves[(model, i)]})
        show = sorted({steps[0], *steps[len(steps) // 3::max(1, len(steps) // 4)], steps[-1]})
        parts.append(f"{titles[model]}:")
        parts.append("")
        parts.append("| init | " + " | ".join(f"step {st}" for st in show) + " | mean over the curve |")
        parts.append("|---|" + "---|" * (len(show) + 1))
        for init in inits:
            c = curves[(model, init)]
            seeds = sorted(set.intersection(*(set(c[st]) for st in steps))) if c else []
            per_seed = [np.mean([c[st][sd] for st in steps]) for sd in seeds]
            curve_means[(model, init)] = dict(zip(seeds, per_seed))
            digits = 3 if model == "cnn" else 1
            parts.append(f"| {INIT_LABELS.get(init, init)} | " + " | ".join(
                _pm(list(c[st].values()), digits) for st in show) + f" | {_pm(per_seed, digits)} |")
        parts.append("")
    return "\n".join(parts + _rescale_verdicts(curve_means, models, inits, titles))


def _rescale_verdicts(curve_means: dict, models: list[str], inits: list[str], titles: dict[str, str]) -> list[str]:
    """init_from_prior's default rescale against the other DWP inits, paired over seeds on each model's curve mean.

    A mode that beats the default on some model and loses to it on none would be the measured case for a new default.
    """
    default = "dwp" if DEFAULT_RESCALE == "none" else f"dwp:{DEFAULT_RESCALE}"
    others = [i for i in inits if i.split(":")[0] == "dwp" and i != default]
    if default not in inits or not others:
        return []
    lines = [f"**`init_from_prior`'s default `rescale` (`{DEFAULT_RESCALE}`) against the other DWP inits.** The mean "
             "over the curve, the default's minus the other's, paired over seeds (two-sided t-test at 5%):", "",
             "| default vs | " + " | ".join(titles[m] for m in models) + " |", "|---|" + "---|" * len(models)]
    better, digits = [], {m: 3 if m == "cnn" else 1 for m in models}
    for other in others:
        verdicts = [paired_verdict(curve_means[(m, default)], curve_means[(m, other)]) for m in models]
        lines.append(f"| {INIT_LABELS.get(other, other)} | " + " | ".join(
            f"{v} ({d:+.{digits[m]}f})" if n else "n/a" for m, (v, d, n) in zip(models, verdicts)) + " |")
        if "loss" in {v for v, _, _ in verdicts} and "win" not in {v for v, _, _ in verdicts}:
            better.append(other)
    lines.append("")
    if better:
        lines.append("Measured against it: " + ", ".join(INIT_LABELS.get(i, i) for i in better)
                     + " beats the default on some model and loses on none.")
    else:
        lines.append(f"No other mode beats `{DEFAULT_RESCALE}` on one model without losing to it on another: "
                     "the default stands on this run.")
    return lines + [""]


# --- the page -------------------------------------------------------------------------------------------
def planned_runs(name: str, s: dict) -> int:
    """How many runs the setting's grid holds (so a page made from a stopped job says what is missing)."""
    grids = {"fig2": ("sizes", "seeds", "methods"), "gap": ("sizes", "seeds"), "fig3": ("scales", "seeds", "inits"),
             "fig4": ("seeds", "inits")}
    return math.prod(len(s[k]) for k in grids[name]) * (2 if name == "fig4" else 1)


def _compute_section(all_rows: dict[str, list[dict]], all_settings: dict[str, dict]) -> str:
    lines = ["## Compute", "", "Summed wall time of the runs (each run's training, evaluation and data loading; "
             "runs went in parallel, so the job took less).", "",
             "| experiment | runs recorded / planned | ran on | summed run time (s) |",
             "|---|---|---|---|"]
    for name in ("fig2", "gap", "fig3", "fig4"):
        rows, st = all_rows.get(name), all_settings.get(name)
        if not rows or not st:
            continue
        per_run = {r["run_id"]: (r.get("run_seconds", math.nan), r.get("device", "?")) for r in rows}
        seconds = sum(v[0] for v in per_run.values())
        where = ", ".join(f"{d} ({sum(1 for v in per_run.values() if v[1] == d)} runs)"
                          for d in sorted({v[1] for v in per_run.values()}))
        lines.append(f"| {name} | {len(per_run)} / {planned_runs(name, st['settings'])} | {where} | {seconds:,.0f} |")
    return "\n".join(lines + [""])


# Hand-written reading of the recorded numbers (which run, what it shows), kept beside the page and placed
# right after its introduction, so that regenerating the page never loses it.
DISCUSSION_NAME = "discussion.md"
# The Fig. 2 records of the authors' priors as the page keeps them in data/ (``--reference`` copies them there).
REFERENCE_RECORD = "reference-fig2"


def _copy_records(results: Path, data: Path) -> None:
    """Copy the experiment CSVs and settings of `results` into the page's `data` folder (nothing when they are
    the same folder: the page is being rebuilt from its own records)."""
    if data.resolve() == results.resolve():
        return
    for f in sorted(results.glob("*.csv")) + sorted(results.glob("settings-*.json")):
        shutil.copyfile(f, data / f.name)


def build_report(results: str | Path, page_dir: str | Path, reference: str | Path | None = None) -> Path:
    """Copy the results into `page_dir`/data, draw the figures and write `page_dir`/README.md.

    `reference`: a results folder of Fig. 2 run with the paper authors' priors (``--prior7 reference --prior5
    reference``), shown beside ours; its CSV and settings are copied as ``data/reference-fig2.*``. Without it,
    records of that name in `results` (a page's own ``data/``) are used.
    """
    import matplotlib

    matplotlib.use("Agg")
    results, page_dir = Path(results), Path(page_dir)
    if not results.is_dir():
        raise FileNotFoundError(f"--results {results}: no such folder")
    page_dir.mkdir(parents=True, exist_ok=True)
    data = page_dir / "data"
    data.mkdir(exist_ok=True)
    _copy_records(results, data)
    all_rows, all_settings = {}, {}
    for name in ("fig2", "gap", "fig3", "fig4"):
        all_rows[name], all_settings[name] = load_rows(results, name)
    if not any(all_rows.values()):
        raise FileNotFoundError(f"{results}: no experiment CSVs with a matching settings file")
    from .page_text import page

    sections = {}
    if all_rows["fig2"]:
        sections["fig2"] = fig2_section(all_rows["fig2"], all_settings["fig2"], page_dir)
    if all_rows["gap"]:
        sections["gap"] = gap_section(all_rows["gap"], all_settings["gap"])
    if all_rows["fig3"]:
        sections["fig3"] = fig3_section(all_rows["fig3"], all_settings["fig3"], page_dir)
    if all_rows["fig4"]:
        sections["fig4"] = fig4_section(all_rows["fig4"], all_settings["fig4"], page_dir)
    if reference is not None:
        ref_rows, ref_settings = load_rows(Path(reference), "fig2")
        if not ref_rows or not all_rows["fig2"]:
            raise FileNotFoundError(f"--reference {reference}: no Fig. 2 runs there or in {results} to compare")
        shutil.copyfile(Path(reference) / "fig2.csv", data / f"{REFERENCE_RECORD}.csv")
        shutil.copyfile(Path(reference) / "settings-fig2.json", data / f"settings-{REFERENCE_RECORD}.json")
    else:
        ref_rows, ref_settings = load_rows(results, REFERENCE_RECORD)
    if ref_rows and all_rows["fig2"]:
        sections["fig2"] += "\n" + reference_section(all_rows["fig2"], ref_rows, all_settings["fig2"], ref_settings)
    sections["compute"] = _compute_section(all_rows, all_settings)
    discussion = page_dir / DISCUSSION_NAME
    if discussion.is_file():
        sections["discussion"] = discussion.read_text(encoding="utf-8")
    target = next(st["target"] for st in all_settings.values() if st)
    quick = any(st["quick"] for st in all_settings.values() if st)
    devices = sorted({r.get("device", "?") for rows in all_rows.values() for r in rows})
    text = page(sections, all_settings, target=target, quick=quick, devices=devices)
    readme = page_dir / "README.md"
    readme.write_text(text, encoding="utf-8")
    return readme
