"""The prose of the results page around the generated sections: protocol, reproduction, known differences."""

from __future__ import annotations

import math

from dwp_hub import DWPrior
from dwp_hub.hub import bundled_with_weights

from .priors import PROVENANCE_KEYS


COMPUTE_BUDGET = """### Compute budget of the full setting

Measured with `python -m training.experiments estimate --target npz:mnist5k.npz` on a 2-core CPU shared
with other jobs (one thread; process CPU time, so about ±30%).
Per Fig. 2 training step, batch 32, measured side by side in one process:

| method | ms per step (1 CPU core) |
|---|---|
| DWP, bound subsampled to 128 of 4,096 kernels (the suite's setting) | 123 |
| DWP, exact bound on all kernels | 2,318 (19× the subsampled step) |
| N(0,1) (same subsampled estimator) | 54 |
| log-uniform | 56 |
| multivariate Gaussian | 48 |
| deterministic | 24 |

A 10-sample evaluation of 4,000 test images takes 20 s. Extrapolated to the full setting: Fig. 2 181 min,
appendix B 24 min, Fig. 3 5 min, Fig. 4 23 min — 233 min in one process, about 2 hours with `--workers 2` on
2 cores. With the exact DWP bound, Fig. 2's 15 DWP runs alone would take about 19 hours on one core.
The recorded runs' own step times are in the `ms_per_step` column of `data/fig2.csv` (table above).
"""


def _subsample_line(s: dict) -> str:
    m = s["kl_subsample"]
    if m is None:
        return "- **KL**: exact for every prior (no kernel subsampling); the DWP bound on every kernel each step."
    return (f"- **KL subsampling, the same for every prior**: KL(q ‖ p) = −H(q) + Σ_kernels (cross term); the "
            f"entropy is exact and the cross term is estimated each step on {m} random kernels per layer, scaled "
            f"by kernels/{m} (unbiased) — for DWP that is eq. 7's expectation, for the closed-form priors "
            "KL_i + H_i per kernel. Layer 1 has 32 kernels, so only layer 2 (4,096 kernels) is subsampled.")


def _protocol(settings: dict[str, dict]) -> str:
    f2 = settings.get("fig2")
    if not f2:
        return ""
    s = f2["settings"]
    sigma0 = math.exp(0.5 * s["init_log_sigma2"])
    priors = "; ".join(f"{k}: `{prior_name(v)}`" for k, v in f2["priors"].items())
    return "\n".join([
        "## Protocol of Fig. 2 (identical for every prior; never tuned per prior)",
        "",
        "- **Net**: the paper's MNIST net (appendix H.2): conv 32 7×7 → LeakyReLU → max-pool → conv 128 5×5 → "
        "LeakyReLU → max-pool → linear 1152→10. Both convolutions get a fully factorised Gaussian posterior "
        "(additive parameterisation, local reparameterisation trick); the linear layer and the biases are point "
        "estimates without a prior, as in the paper.",
        f"- **Priors**: DWP = the bundled priors ({priors}); N(0,1); log-uniform (Molchanov et al. 2017 "
        "approximation); multivariate Gaussian N(m, Σ) per kernel size fitted by maximum likelihood to the same "
        "source kernels the DWP was trained on (the `train` kernels shipped in the prior folders, appendix C); "
        "deterministic = the same net trained on the cross-entropy alone.",
        f"- **Data**: N ∈ {tuple(s['sizes'])} images drawn *stratified* (N/10 per class) from the target's training "
        f"pool by split seed {tuple(s['seeds'])}; the test set is the target's (see above).",
        "- **Objective**: negative ELBO = N/B · Σ_batch NLL + KL (KL weight 1; for DWP the auxiliary bound of "
        "eq. 7 with one reverse model r(z|w; ψ_l) per layer, initialised from the prior's encoder and trained with θ).",
        _subsample_line(s),
        f"- **Optimiser**: Adam, {s['steps']:,} steps, batch B = min(N, {s['batch_size']}), epochs reshuffled by "
        f"the seed (the same batches for every method); lr {s['lr']:g} for μ, biases, the linear layer and the "
        f"reverse models, lr {s['lr_log_sigma2']:g} for log σ²; both decay linearly to 0.",
        f"- **Init**: {_init_text(s)}; log σ² = {s['init_log_sigma2']:g} (σ = {sigma0:.4f}).",
        f"- **Metric**: accuracy and NLL of the {s['eval_samples']}-sample ensemble (class probabilities averaged "
        "over weight samples, one sample per forward pass), the original implementation's metric; also the "
        "mean network's accuracy and ECE in the CSV.",
        "",
        "**Why these choices.** Adam moves a parameter by at most about its learning rate per step. The original "
        "implementation initialises log σ² at −10 and trains it at lr 10⁻³ decaying to 0, so after 10,000 steps "
        "log σ² can have reached at most −5: its posteriors stay nearly deterministic and the prior acts almost "
        "only on μ. log σ² is a log-scale parameter whose useful range spans several units, so it gets a learning "
        f"rate 10× that of the weights ({s['lr_log_sigma2']:g}): over {s['steps']:,} linearly decaying steps it "
        f"can travel up to {0.5 * s['steps'] * s['lr_log_sigma2']:.0f} units, enough to reach whatever σ the "
        "objective prefers, while the start stays nearly deterministic (as in the reference) so the data term "
        "can shape μ first. The same numbers hold for every prior. Subsampling the DWP bound is what makes this "
        "many steps affordable (the exact bound on 4,096 kernels costs about 19× the subsampled DWP step on a "
        "CPU). A subsampled term reaches a kernel only on the steps it is drawn, scaled up by kernels/subset, "
        "which could inflate Adam's second-moment estimate and slow that layer; so every prior gets the same "
        "subsampled estimator (for the closed-form priors it is as cheap as the exact KL). A pilot (N = 50, "
        "100 steps, log σ² can move at most 0.5 in that schedule) shows the estimator is not what sets the "
        "posterior scale: layer-2 log σ² rose by 0.50 under N(0,1) (subsampled), by 0.31 under the subsampled "
        "DWP bound and by only 0.19 under the exact DWP bound — the deep weight prior itself keeps layer-2 "
        "posteriors narrow (the 5×5 prior's decoder has a median per-weight std of 0.005). "
        "`--set fig2.kl_subsample=none` reruns "
        "everything with exact KLs (affordable on a GPU).",
        "",
    ])


def _bundled_copy(p: dict) -> str | None:
    """The bundled prior whose weights a run's local prior folder holds, if any."""
    return bundled_with_weights(p["sha256"]) if p.get("origin") == "local" and p.get("sha256") else None


def prior_name(p: dict) -> str:
    """How the page names one prior of a run's record: a local folder holding a bundled prior's weights is named
    as that bundled prior, so the page cites what a reader can load rather than a folder that may be gone."""
    return _bundled_copy(p) or p["name"]


def _prior_text(p: dict) -> str:
    """One prior of a run's record: its name, then what its provenance says about its source nets. A local folder
    whose weights are those of a bundled prior is named as that prior, and its missing fields come from that
    prior's provenance."""
    bundled = _bundled_copy(p)
    text = f"`{prior_name(p)}`"
    if bundled:
        text += f" (run from a local copy with the weights of the bundled `{bundled}`, SHA-256 `{p['sha256'][:16]}…`)"
        known = DWPrior.from_pretrained(bundled).provenance
        p = {**{k: known[k] for k in PROVENANCE_KEYS if k in known}, **p}
    if "num_source_nets" in p:
        text += (f" from {p['num_source_nets']} {p.get('source_architecture', '')} source nets of widths "
                 f"{p.get('source_widths', '?')} trained on {p.get('dataset', '?')} ({p.get('source_training', '?')}")
        text += f"; {p['kernels_train']} training kernels)" if "kernels_train" in p else ")"
    elif "kernels_train" in p:
        text += f" ({p['kernels_train']} training kernels; no source nets recorded)"
    return text


def _priors_line(settings: dict[str, dict]) -> str:
    st = next((st for st in settings.values() if st), None)
    if not st:
        return ""
    parts = [_prior_text(p) for p in st["priors"].values()]
    return ("- **Priors**: " + "; ".join(parts) + ". The paper's were fitted to kernels of notMNIST nets of widths "
            "256/512 trained 100 epochs; the real notMNIST cannot be downloaded here, so ours come from letters "
            "rendered from installed fonts. Different source kernels make a different prior.")


def _init_text(s: dict) -> str:
    if s.get("init", "xavier") == "prior":
        return ("μ of both convolutions are samples of the configured 7x7 / 5x5 deep weight priors "
                "(`init_from_prior`, no rescale) from the split seed, identical for every method, as in the paper's "
                "code")
    return "μ Xavier-uniform from the split seed (identical for every method)"


def official_split(target: str) -> bool:
    """Whether a target description names the official MNIST split (its fixed 10,000 test images)."""
    return "official 10,000 test images" in target


def _test_set_text(target: str) -> str:
    if official_split(target):
        return ("**Test set: the paper's.** N images are drawn from MNIST's 60,000 official training images and "
                "every method is tested on the official 10,000 test images. The priors are ours (see below), so "
                "the paper's numbers are a reference point, not a target.")
    return ("**Our test set is not the paper's.** The paper tests on the official 10,000-image MNIST test set after "
            "training on N images of the 60,000-image training set. Here N images are drawn from the target and "
            "*the rest of it* is the test set. The priors are ours too (see below), so the paper's numbers are a "
            "reference point, not a target.")


def _seeds_line(settings: dict[str, dict]) -> str:
    f2 = settings.get("fig2")
    if not f2:
        return ""
    n = len(f2["settings"]["seeds"])
    return (f"- **Seeds**: {n} split seeds per point (the paper does not state its count); at N ≥ 500 the "
            "methods differ by about as much as the seeds do, so small differences there are noise.")


NATURAL_IMAGES_LINK = ("The photo-domain priors, their Fig. 3 and Fig. 4 on unseen photographs (RGB ResNets), and which "
                       "prior domain (notmnist, photo, face, text) to use for which data, with MNIST beside the photos, "
                       "have a page of their own: [natural/README.md](natural/README.md).")


def page(sections: dict[str, str], settings: dict[str, dict], target: str, quick: bool, devices: list[str]) -> str:
    """The whole README.md of the results page."""
    warning = ("> **These are smoke-test numbers from the `--quick` setting, not results.**\n\n" if quick else "")
    return "\n".join([
        "# The paper's experiments on real data",
        "",
        warning + "Built by `python -m training.experiments report --results DIR` from the CSVs and settings in "
        f"[`data/`](data/) (`--results` on that folder rebuilds the page from them); runs made on: "
        f"{', '.join(devices)}. Target data: {target}.",
        "",
        _test_set_text(target),
        "",
        NATURAL_IMAGES_LINK,
        "",
        sections.get("discussion", ""),
        "## Reproduce",
        "",
        "```",
        "python -m training.experiments all --out runs/full --workers 2   # 2 CPU cores; MNIST, official split",
        "python -m training.experiments all --out runs/full \\",
        "    --device cuda --workers 8 --cpu-workers 8          # 1 GPU (VI runs) + 8 CPU cores (Fig. 3, 4)",
        "python -m training.experiments report --results runs/full         # this page and its PNGs",
        "```",
        "",
        "Every run is seeded and recorded in `OUT/<experiment>.csv` as soon as it finishes; rerunning a command "
        "skips recorded runs. `OUT/logs/<run>.log` holds each run's training curve, `OUT/settings-*.json` the "
        "exact setting, `OUT/experiments.log` the run list. `--set EXP.FIELD=VALUE` changes any setting "
        "(e.g. `--set fig2.kl_subsample=none` uses the exact KL for every prior; a changed setting is a new "
        "protocol, so use a fresh `--out` folder for it).",
        "",
        "## Where our setup differs from the paper (likely causes of differences)",
        "",
        *([] if official_split(target) else [
            "- **Test set and training pool**: the rest of the target, not the 10k MNIST test set (above). "
            "Accuracies are on a different, smaller test set (for MNIST-5k ≈ 4,000–4,950 images, ±0.3–0.7% "
            "binomial noise)."]),
        _priors_line(settings),
        "- **Schedule**: far fewer steps than the original implementation (10,000 steps at N = 50), and our "
        "log σ² learning rate and KL subsampling (see the protocol) — the same for every prior.",
        *([] if settings.get("fig2", {}).get("settings", {}).get("init") == "prior" else [
            "- **μ init**: Xavier for every method (the original code initialises μ from the prior's samples); "
            "we keep the init identical so that only the prior differs."]),
        _seeds_line(settings),
        "",
        _protocol(settings),
        sections.get("fig2", ""),
        sections.get("gap", ""),
        sections.get("fig3", ""),
        sections.get("fig4", ""),
        sections.get("compute", ""),
        COMPUTE_BUDGET,
    ])
