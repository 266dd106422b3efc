"""Kernel subsampling for the closed-form priors, so that every prior's KL is estimated the same way.

The DWP bound (eq. 7) is −H(q) + Σ_kernels E_q[cross term]; ``dwp_hub.DWPBound`` computes the entropy
exactly and the cross term on m random kernels per step, scaled by n/m. A closed-form KL splits the same
way, KL(q ‖ p) = −H(q) + Σ_kernels (KL_i + H_i), so ``SubsampledKL`` estimates it with the same estimator.
Why it matters: a subsampled term reaches each kernel only on the steps it is drawn, scaled by n/m, which
inflates Adam's second-moment estimate and slows that layer's parameters (by up to √(n/m)). Giving every
prior the same estimator keeps that effect out of the comparison.
"""

from __future__ import annotations

import torch

from dwp_hub import WeightPrior
from dwp_hub.dwp_bound import gaussian_entropy
from dwp_hub.subsample import kernel_subset


class SubsampledKL(WeightPrior):
    """`prior`'s KL with its cross term estimated on `subsample` random kernels per call (None: exact)."""

    def __init__(self, prior: WeightPrior, subsample: int | None) -> None:
        super().__init__()
        if subsample is not None and subsample < 1:
            raise ValueError(f"subsample must be a positive integer or None, got {subsample!r}")
        self.prior = prior
        self.subsample = subsample
        self.kernel_size = prior.kernel_size
        self.name = prior.name

    def kl(self, mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
        kh, kw = mu.shape[-2:]
        mu, log_sigma2 = mu.reshape(-1, 1, kh, kw), log_sigma2.reshape(-1, 1, kh, kw)
        idx, scale = kernel_subset(mu.shape[0], self.subsample, mu.device)
        if idx is None:
            return self.prior.kl(mu, log_sigma2)
        part_mu, part_ls = mu[idx], log_sigma2[idx]
        cross = self.prior.kl(part_mu, part_ls) + gaussian_entropy(part_ls)  # Σ_subset (KL_i + H_i)
        return -gaussian_entropy(log_sigma2) + scale * cross

    def extra_repr(self) -> str:
        return f"subsample={self.subsample}"
