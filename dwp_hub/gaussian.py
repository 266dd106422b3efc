"""Closed-form pieces of diagonal Gaussians shared by the prior and the variational layers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
LOG_2PI_E = 1.0 + LOG_2PI


class _Softplus(torch.autograd.Function):
    """softplus(x) = max(x, 0) + log1p(e^−|x|), with log1p(u) = log(v) − (v − 1 − u)/v for v = 1 + u (the
    rounding of v corrected to first order: within a few float32 ulps of log1p).

    PyTorch's CPU softplus and log1p run element by element: 5.0 and 4.5 ms for 262k floats on one thread,
    against 0.3 ms for log or exp, and the decoder's variance head made softplus ~11% of the exact DWP bound's
    time with a small (dense) kernel VAE.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        u = x.abs().neg_().exp_()
        v = u + 1.0
        correction = (v - 1.0).sub_(u).div_(v)
        return v.log_().sub_(correction).add_(x.clamp(min=0))

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(ctx.saved_tensors[0]).mul_(grad)

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(ctx.saved_tensors[0]).mul_(tangent)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + eˣ): F.softplus's function (no threshold), vectorised on CPU (_Softplus); F.softplus elsewhere."""
    return _Softplus.apply(x) if x.device.type == "cpu" else F.softplus(x)


def bounded_variance(raw: torch.Tensor, floor: float) -> torch.Tensor:
    """Variance = floor + softplus(raw): never below `floor`, grows only linearly in `raw` (no overflow)."""
    return floor + softplus(raw)


def log_normal(x: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, dims: int) -> torch.Tensor:
    """log N(x | mu, diag var), summed over the last `dims` dimensions."""
    lp = -0.5 * (LOG_2PI + var.log() + (x - mu) ** 2 / var)
    return lp.flatten(-dims).sum(-1) if dims else lp


def kl_to_standard_normal(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag var) || N(0, I)) over the last dimension (the latent KL of eq. 4 and eq. 7)."""
    return 0.5 * (mu**2 + var - 1.0 - var.log()).sum(-1)


def gaussian_entropy(log_sigma2: torch.Tensor) -> torch.Tensor:
    """H(N(μ, diag σ²)) summed over all elements: ½ Σ (1 + log 2π + log σ²)."""
    return 0.5 * (LOG_2PI_E * log_sigma2.numel() + log_sigma2.sum())
