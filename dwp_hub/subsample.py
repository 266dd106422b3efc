"""The subsample-and-scale step of the layer-wise estimators: a sum over a layer's n kernels from m of them.

For per-kernel terms t_i, (n / m) Σ_{i in S} t_i with S drawn uniformly without replacement (|S| = m) is an
unbiased estimate of Σ_i t_i. The DWP bound (eq. 7) in training, appendix B's gap and the experiments'
estimators all take their subsets here.
"""

from __future__ import annotations

import torch


def kernel_subset(n: int, m: int | None, device: torch.device | str | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor | None, float]:
    """(indices of m of n kernels, the scale n / m); (None, 1.0) for every kernel when m is None or m >= n."""
    if m is None or m >= n:
        return None, 1.0
    if m < 1:
        raise ValueError(f"a subset needs at least one kernel, got m={m}")
    return torch.randperm(n, device=device, generator=generator)[:m], n / m


def posterior_sample(mu: torch.Tensor, log_sigma2: torch.Tensor, m: int | None) -> tuple[torch.Tensor, float]:
    """One reparameterised w ~ N(μ, σ²) for each of m random kernels of (n, k, k) posterior parameters, and n / m.

    Every kernel (and scale 1) when m is None or m >= n.
    """
    idx, scale = kernel_subset(mu.shape[0], m, mu.device)
    if idx is not None:
        mu, log_sigma2 = mu[idx], log_sigma2[idx]
    return mu + (0.5 * log_sigma2).exp() * torch.randn_like(mu), scale
