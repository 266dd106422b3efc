"""Training and evaluation helpers for variational inference (paper eq. 3 / eq. 8, Algorithm 1).

- ``elbo_loss``: the negative (auxiliary) ELBO of a mini-batch, N · mean NLL + KL.
- ``parameter_groups``: the trainable parameters split by role, for per-group learning rates.
- ``predict_proba`` / ``evaluate``: Monte-Carlo ensemble prediction (probabilities averaged over weight
  samples) and its accuracy, NLL and expected calibration error.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .bayes_conv import bayes_layers, bayes_mode
from .dwp_bound import DWPBound
from .progress import progress_bar


def elbo_loss(logits: torch.Tensor, targets: torch.Tensor, kl_term: torch.Tensor, dataset_size: int,
              kl_weight: float = 1.0) -> torch.Tensor:
    """Negative ELBO estimate: Σ_batch NLL · N / batch + kl_weight · KL (eq. 3; eq. 8 with the DWP bound).

    `kl_term` is ``dwp_hub.kl(model)``. The data term is rescaled to the whole training set of size
    `dataset_size`, so the KL is weighed against N examples, as in the paper (kl_weight 1).
    """
    if dataset_size < 1:
        raise ValueError(f"dataset_size must be positive, got {dataset_size!r}")
    nll = F.cross_entropy(logits, targets, reduction="sum")
    return nll * (dataset_size / targets.shape[0]) + kl_weight * kl_term


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters by role: "mean" (μ), "log_sigma2", "reverse" (DWP reverse models ψ), "other".

    Frozen parameters (the priors' decoders) are left out, so
    ``torch.optim.Adam([{"params": g, "lr": ...} for g in parameter_groups(model).values()])`` trains
    exactly θ and ψ.
    """
    groups: dict[str, list[nn.Parameter]] = {"mean": [], "log_sigma2": [], "reverse": [], "other": []}
    role: dict[int, str] = {}
    for _, layer in bayes_layers(model):
        role[id(layer.weight)] = "mean"
        role[id(layer.log_sigma2)] = "log_sigma2"
        if isinstance(layer.prior, DWPBound):
            for p in layer.prior.aux.encoder.parameters():
                role[id(p)] = "reverse"
    for p in model.parameters():  # deduplicated: shared parameters appear once
        if p.requires_grad:
            groups[role.get(id(p), "other")].append(p)
    return groups


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, num_samples: int = 10) -> torch.Tensor:
    """Class probabilities averaged over `num_samples` weight samples (an ensemble of sampled networks).

    The model is put in eval mode (batch norm statistics, no dropout) and every Bayesian layer in "sample"
    mode, one weight draw per forward pass; both are restored afterwards. num_samples=0 evaluates the
    mean network once.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples!r}")
    was_training = model.training
    model.eval()
    try:
        if num_samples == 0:
            with bayes_mode(model, "mean"):
                return F.softmax(model(x), dim=-1)
        with bayes_mode(model, "sample"):
            probs = F.softmax(model(x), dim=-1)
            for _ in range(num_samples - 1):
                probs += F.softmax(model(x), dim=-1)
        return probs / num_samples
    finally:
        model.train(was_training)


def accuracy(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of examples whose most probable class is the target."""
    return (probs.argmax(-1) == targets).float().mean().item()


def nll(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean negative log-likelihood of the targets under the predicted probabilities."""
    p = probs.gather(-1, targets[:, None])[:, 0]
    return -p.clamp_min(torch.finfo(probs.dtype).tiny).log().mean().item()


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """ECE: Σ_b |B_b|/n · |accuracy(B_b) − confidence(B_b)| over `bins` equal-width confidence bins."""
    confidence, predicted = probs.max(-1)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype, device=confidence.device)
    which = torch.bucketize(confidence, edges[1:-1])  # bin b holds confidences in (edges[b], edges[b+1]]
    # |B_b|·|acc(B_b) − conf(B_b)| = |Σ_{i∈B_b} (correct_i − confidence_i)|
    gap = torch.zeros(bins, dtype=confidence.dtype, device=confidence.device).index_add_(0, which, correct - confidence)
    return (gap.abs().sum() / confidence.numel()).item()


def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_samples: int = 10,
             device: torch.device | str | None = None, progress: bool | None = None) -> dict[str, float]:
    """Ensemble accuracy, NLL and ECE of `model` over (inputs, targets) batches (e.g. a DataLoader).

    `progress`: a tqdm bar over the batches (None: on a terminal only).
    """
    all_probs, all_targets = [], []
    total = len(batches) if hasattr(batches, "__len__") else None
    with progress_bar(total, f"evaluate ({num_samples} samples)", progress, unit="batch") as bar:
        for x, y in batches:
            if device is not None:
                x, y = x.to(device), y.to(device)
            all_probs.append(predict_proba(model, x, num_samples).cpu())
            all_targets.append(y.cpu())
            bar.update()
    probs, targets = torch.cat(all_probs), torch.cat(all_targets)
    return {"accuracy": accuracy(probs, targets), "nll": nll(probs, targets),
            "ece": expected_calibration_error(probs, targets)}
