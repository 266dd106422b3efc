"""Model cards of published priors: ``cards/template.md`` filled with a prior's config and measured numbers.

The template holds what every prior card says (what a deep weight prior is, usage, limitations); the
hand-written part of one prior, ``cards/<name>.md``, is merged in when it exists. The YAML front matter
is built with ``huggingface_hub.ModelCardData`` so that the Hub reads library, licence, tags, data sets
and the measured metrics (as a ``model-index``) from it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from dwp_hub.hub import DEFAULT_ORG
from dwp_hub.prior_folder import PAPER_ARXIV, PROVENANCE_NAME, PriorConfig, card_metadata

CARDS_DIR = Path(__file__).resolve().parent.parent / "cards"
TEMPLATE_PATH = CARDS_DIR / "template.md"

# Data sets that exist on the Hugging Face Hub, keyed by the (lower-case) domain or data-set names a build
# records. Anything not listed here (notMNIST-style rendered glyphs, for one) gets no `datasets` entry.
HUB_DATASETS = {
    "mnist": "ylecun/mnist",
    "mnist-5k": "ylecun/mnist",
    "cifar10": "uoft-cs/cifar10",
    "cifar-10": "uoft-cs/cifar10",
    "cifar100": "uoft-cs/cifar100",
    "cifar-100": "uoft-cs/cifar100",
}

# Metrics that go into the model-index: key → (metric type, human name). Values are nats per kernel.
INDEXED_METRICS = {
    "heldout_elbo": ("elbo", "Held-out ELBO"),
    "heldout_iwae_loglik": ("iwae-log-likelihood", "Held-out IWAE log-likelihood"),
}
# Rows of the "Measured quality" table, in this order; other metrics follow under their own names.
METRIC_LABELS = {
    "heldout_iwae_loglik": "held-out IWAE log-likelihood (nats per kernel)",
    "heldout_elbo": "held-out ELBO (nats per kernel)",
    "heldout_fullcov_gaussian_loglik": "held-out log-likelihood, full-covariance Gaussian baseline",
    "heldout_isotropic_gaussian_loglik": "held-out log-likelihood, isotropic Gaussian baseline",
    "train_iwae_loglik": "training-kernel IWAE log-likelihood (nats per kernel)",
    "iwae_samples": "IWAE importance samples K",
    "iwae_kernels": "held-out kernels scored",
    "kernels_kept": "kernels kept (norm above the threshold)",
    "num_source_nets": "source networks",
    "epochs": "VAE training epochs",
    "train_seconds": "VAE training time (s)",
}
# Baselines fitted to the same training kernels, which the VAE's held-out IWAE log-likelihood is compared with.
BASELINES = {
    "heldout_fullcov_gaussian_loglik": "a full-covariance Gaussian fitted to the same training kernels (as in paper appendix C)",
    "heldout_isotropic_gaussian_loglik": "an isotropic Gaussian fitted to the same training kernels",
}
# Longest rendering of one provenance value in the table; the full record stays in provenance.json.
MAX_CELL_CHARS = 300
MAX_LIST_ITEMS = 8


def default_repo_id(config: PriorConfig) -> str:
    """``dwp/<domain>-<k>x<k>``: the name a prior of this domain and kernel size is published under."""
    k = config.kernel_size
    return f"{DEFAULT_ORG}/{config.domain}-{k}x{k}"


def _format_number(value: float | int) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.6g}"


def _format_value(value: Any) -> str:
    """One table cell: numbers formatted, long lists summarised, no newlines or pipes."""
    if isinstance(value, (int, float)):
        text = _format_number(value)
    elif isinstance(value, (list, tuple)):
        shown = [_format_value(v) for v in value[:MAX_LIST_ITEMS]]
        text = ", ".join(shown)
        if len(value) > MAX_LIST_ITEMS:
            text = f"{len(value):,} items: {text}, …"
    elif isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, default=str)
    elif value is None:
        text = "—"
    else:
        text = str(value)
    text = " ".join(text.split()).replace("|", "\\|")
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + f"… (full record in `{PROVENANCE_NAME}`)"
    return text


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def _comparison(metrics: dict[str, float]) -> str:
    """One sentence placing the VAE's held-out log-likelihood against each baseline, whichever way it falls."""
    if "heldout_iwae_loglik" not in metrics:
        return ""
    vae = metrics["heldout_iwae_loglik"]
    parts = [f"{'above' if vae >= metrics[key] else '**below**'} the {_format_number(metrics[key])} of {what}"
             for key, what in BASELINES.items() if key in metrics]
    if not parts:
        return ""
    text = f"On held-out kernels this VAE's IWAE log-likelihood ({_format_number(vae)}) is " + "; ".join(parts) + "."
    if any(vae < metrics[key] for key in BASELINES if key in metrics):
        text += " By this measure the VAE is not the best density model of these kernels among those compared."
    return text


def _bound_cost(provenance: dict[str, Any]) -> str:
    """One sentence on the exact bound's measured cost against the budget, from provenance's ``bound_cost``
    (``training.bound_cost.BoundCost.record``); empty when the build did not measure it."""
    cost = provenance.get("bound_cost")
    if not isinstance(cost, dict) or not all(isinstance(cost.get(key), (int, float))
                                             for key in ("ratio_to_normal_kl", "budget", "kernels", "threads")):
        return ""
    verdict = "within" if cost["ratio_to_normal_kl"] <= cost["budget"] else "**over**"
    return (f"The exact bound (eq. 7, `bayesianize`'s default) costs {cost['ratio_to_normal_kl']:g}× the N(0,1) KL's "
            f"forward and backward per kernel (measured by the build on a layer of {cost['kernels']:,} kernels, "
            f"{cost['threads']} threads), {verdict} the budget of {cost['budget']:g}× that shipped priors of this "
            "kernel size are held to.")


def _hub_datasets(config: PriorConfig, provenance: dict[str, Any]) -> list[str]:
    names = [config.domain] + [v for k, v in provenance.items() if "data" in k.lower() and isinstance(v, str)]
    found = []
    for name in names:
        hub_id = HUB_DATASETS.get(name.strip().lower())
        if hub_id and hub_id not in found:
            found.append(hub_id)
    return found


def _eval_results(config: PriorConfig, metrics: dict[str, float]) -> list[EvalResult]:
    k = config.kernel_size
    results = []
    for key, (metric_type, metric_name) in INDEXED_METRICS.items():
        if key not in metrics:
            continue
        args = None
        if key == "heldout_iwae_loglik" and "iwae_samples" in metrics:
            args = {"num_samples": int(metrics["iwae_samples"])}
        results.append(EvalResult(
            task_type="density-estimation", task_name="Density estimation of convolution kernels",
            dataset_type="source-kernels", dataset_name=f"Held-out {k}x{k} source kernels ({config.domain})",
            dataset_split="heldout", metric_type=metric_type, metric_name=metric_name,
            metric_value=round(float(metrics[key]), 4), metric_args=args,
        ))
    return results


def render_card(config: PriorConfig, provenance: dict[str, Any], metrics: dict[str, float],
                repo_id: str | None = None) -> str:
    """The full model card (README.md text) of a prior built with `config` as `provenance` records, reporting `metrics`.

    `repo_id` is the name the card tells users to load (default ``dwp/<domain>-<k>x<k>``); its last part
    names the hand-written section ``cards/<name>.md`` merged in when present. Every metric must be finite.
    """
    for key, value in metrics.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"metric {key!r} must be a finite number, got {value!r}")
    repo_id = repo_id or default_repo_id(config)
    k = config.kernel_size
    meta = card_metadata(config)
    card_data = ModelCardData(
        library_name=meta["library_name"], license=meta["license"], tags=meta["tags"],
        datasets=_hub_datasets(config, provenance) or None,
        model_name=repo_id, eval_results=_eval_results(config, metrics) or None,
    )
    provenance_table = (_table([(f"`{key}`", _format_value(v)) for key, v in sorted(provenance.items())],
                               ("recorded", "value")) if provenance else "(nothing recorded)")
    ordered = [k for k in METRIC_LABELS if k in metrics] + sorted(k for k in metrics if k not in METRIC_LABELS)
    metrics_table = _table([(METRIC_LABELS.get(key, f"`{key}`"), _format_value(metrics[key])) for key in ordered],
                           ("measure", "value")) if metrics else ""
    own_part = CARDS_DIR / f"{repo_id.rsplit('/', 1)[-1]}.md"
    hand_written = own_part.read_text(encoding="utf-8").strip() if own_part.is_file() else ""
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE_PATH),
        k=k, domain=config.domain, architecture=config.architecture, z_dim=config.z_dim,
        var_floor=config.var_floor, arxiv=PAPER_ARXIV, repo_id=repo_id, priors_arg=f'{{{k}: "{repo_id}"}}',
        provenance_table=provenance_table, metrics_table=metrics_table, comparison=_comparison(metrics),
        bound_cost=_bound_cost(provenance), hand_written=hand_written,
    )
    return str(card).rstrip("\n") + "\n"
