"""Estimators of a layer's sum of per-kernel terms that give every kernel a stored gradient each step.

The DWP bound (eq. 7) of a layer is −H(q) + Σ_i f_i with f_i = −ELBO_ψ(w_i) at one w_i ~ q(w_i | μ_i, σ_i).
Subsampling m of n kernels (``dwp_hub.subsample``) is unbiased but reaches each kernel only when drawn,
scaled by n/m, so each drawn kernel's own sampling noise (one w, one z) is amplified n/m times. Kernels
move slowly, so a kernel's gradient from a few steps ago is a good guess of its gradient now. These
estimators keep, per kernel, the last value F_i and gradient G_i = ∂f_i/∂(μ_i, log σ²_i) seen, and each step,
with probability p, evaluate f on a subset S of m kernels (``samples`` draws of w and z each, averaged):

- ``"saga"`` (Defazio et al. 2014): gradient G_i + [i ∈ S]·c·(∂f_i − G_i) with c = n/(m p); unbiased, but
  the correction carries the n/(m p) amplification;
- ``"sag"`` (Schmidt et al. 2017): gradient G_i for i ∉ S and the fresh ∂f_i for i ∈ S (c = 1): no
  amplification, each kernel's noise is what the exact bound has, but a gradient is up to n/(m p) steps old.

In both, the reverse model ψ gets c_ψ·Σ_S ∂f_i/∂ψ with c_ψ = n/(m p) (unbiased), and the value is
Σ_i F_i + c·Σ_S (f_i − F_i). The tables are refreshed from the gradient that reaches the drawn kernels in
the ordinary backward pass (tensor hooks), so there is no second backward pass. The first call evaluates
every kernel (``warm_start``; with empty tables the kernels not drawn would get no gradient at all in SAG,
measured to weaken the prior's pull for the first n/(m p) steps). A step without a subset costs two
elementwise products per weight.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .subsample import kernel_subset

MODES = ("saga", "sag")
# term(w, psi_scale) -> f per kernel of w (n,); psi_scale multiplies the gradient that reaches ψ.
Term = Callable[[torch.Tensor, float], torch.Tensor]


def default_subset_size(n: int) -> int:
    """m for a layer of n kernels: ⌈√n⌉, at least 16 (all kernels of a small layer), so the work grows slowly
    with the layer (64 of 4,096; 512 of 262,144)."""
    return min(n, max(16, math.ceil(math.sqrt(n))))


class StoredGradientSum(nn.Module):
    """Σ_i f_i(μ_i, log σ²_i) over n kernels with stored per-kernel gradients (module docstring); one per layer."""

    def __init__(self, mode: str = "saga", subset: int | None = None, refresh_prob: float = 1.0,
                 samples: int = 1, warm_start: bool = True) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be a positive integer or None, got {subset!r}")
        if not 0 < refresh_prob <= 1:
            raise ValueError(f"refresh_prob must be in (0, 1], got {refresh_prob!r}")
        if samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        self.mode, self.subset, self.refresh_prob, self.samples = mode, subset, float(refresh_prob), samples
        self.warm_start = warm_start
        self.register_buffer("values", torch.zeros(0), persistent=False)
        self.register_buffer("grad_mu", torch.zeros(0), persistent=False)
        self.register_buffer("grad_log_sigma2", torch.zeros(0), persistent=False)

    def _tables(self, mu: torch.Tensor) -> bool:
        """Make the tables fit `mu`; True if they are new (empty)."""
        if self.grad_mu.shape != mu.shape or self.grad_mu.device != mu.device or self.grad_mu.dtype != mu.dtype:
            self.values = torch.zeros(mu.shape[0], dtype=mu.dtype, device=mu.device)
            self.grad_mu = torch.zeros_like(mu)
            self.grad_log_sigma2 = torch.zeros_like(mu)
            return True
        return False

    def forward(self, mu: torch.Tensor, log_sigma2: torch.Tensor, term: Term) -> torch.Tensor:
        """The estimate for kernels `mu`, `log_sigma2` (n, k, k); `term(w, psi_scale)` gives f per kernel."""
        new = self._tables(mu) and self.warm_start
        stored = (self.grad_mu * mu).sum() + (self.grad_log_sigma2 * log_sigma2).sum()
        estimate = self.values.sum() + (stored - stored.detach())  # value Σ F, gradient G for every kernel
        n = mu.shape[0]
        if new:  # the first call evaluates every kernel (the exact bound, once) and fills the tables
            idx, prob = torch.arange(n, device=mu.device), 1.0
        else:
            if torch.rand(()).item() >= self.refresh_prob:
                return estimate
            idx, prob = kernel_subset(n, self.subset or default_subset_size(n), mu.device)[0], self.refresh_prob
            if idx is None:
                idx = torch.arange(n, device=mu.device)
        amplify = n / (len(idx) * prob)
        scale = amplify if self.mode == "saga" else 1.0
        mu_s, ls_s = mu[idx], log_sigma2[idx]
        k = self.samples
        noise = torch.randn((k * len(idx), *mu_s.shape[1:]), dtype=mu.dtype, device=mu.device)
        sigma_eps = (0.5 * ls_s).exp().repeat(k, 1, 1) * noise
        w = mu_s.repeat(k, 1, 1) + sigma_eps  # k draws of w ~ q per drawn kernel: dw/dμ = 1, dw/dlog σ² = σε/2
        f = term(w, amplify / scale).view(k, -1).mean(0)
        stored_s = (self.grad_mu[idx] * mu_s).sum() + (self.grad_log_sigma2[idx] * ls_s).sum()
        out = estimate + scale * ((f - self.values[idx]).sum() + (stored_s.detach() - stored_s))
        if w.requires_grad:
            upstream: list[torch.Tensor] = []
            out.register_hook(lambda g: upstream.append(g))

            def refresh(grad_w: torch.Tensor) -> None:
                # grad_w = (upstream gradient of the estimate) · scale · ∂f/∂w. The tables are replaced, not
                # written in place: autograd still holds the old ones for this backward pass.
                weight = upstream[0] * scale if upstream else None
                if weight is not None and weight != 0:
                    df_dw = grad_w.detach() / weight  # includes the 1/k of the mean over draws
                    shape = (k, -1, *df_dw.shape[1:])
                    self.grad_mu = self.grad_mu.index_put((idx,), df_dw.view(shape).sum(0))
                    self.grad_log_sigma2 = self.grad_log_sigma2.index_put(
                        (idx,), (df_dw * 0.5 * sigma_eps.detach()).view(shape).sum(0))

            w.register_hook(refresh)
        self.values = self.values.index_put((idx,), f.detach())
        return out

    def extra_repr(self) -> str:
        return (f"mode={self.mode}, subset={self.subset or 'sqrt(n)'}, refresh_prob={self.refresh_prob}, "
                f"samples={self.samples}")
