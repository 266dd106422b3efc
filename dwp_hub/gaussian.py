"""Closed-form pieces of diagonal Gaussians shared by the prior and the variational layers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def bounded_variance(raw: torch.Tensor, floor: float) -> torch.Tensor:
    """Variance = floor + softplus(raw): never below `floor`, grows only linearly in `raw` (no overflow)."""
    return floor + F.softplus(raw)


def log_normal(x: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, dims: int) -> torch.Tensor:
    """log N(x | mu, diag var), summed over the last `dims` dimensions."""
    lp = -0.5 * (LOG_2PI + var.log() + (x - mu) ** 2 / var)
    return lp.flatten(-dims).sum(-1) if dims else lp


def kl_to_standard_normal(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag var) || N(0, I)) over the last dimension (the latent KL of eq. 4 and eq. 7)."""
    return 0.5 * (mu**2 + var - 1.0 - var.log()).sum(-1)
