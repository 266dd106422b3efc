"""Closed-form Gaussian densities over kernels, fitted by maximum likelihood: the yardsticks of a prior's fit.

A deep weight prior should assign held-out source kernels a higher log-likelihood than a full-covariance
Gaussian fitted to the same training kernels (paper appendix C) and than an isotropic Gaussian.
Both are computed exactly, in float64.
"""

from __future__ import annotations

import math

import torch

from dwp_hub import MultivariateGaussianPrior

ISOTROPIC_RIDGE = 1e-8  # added to the pooled variance so a constant kernel set still gives a density


def full_gaussian_loglik(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """log N(w | m, Σ) per test kernel, with appendix C's fit on `train` (the same one Fig. 2's baseline uses)."""
    return MultivariateGaussianPrior.fit(train).log_prob(test)


def isotropic_gaussian_loglik(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """log N(w | μ, σ² I) per test kernel, μ the ML mean and σ² the ML variance pooled over all weights."""
    x, y = train.flatten(1).double(), test.flatten(1).double()
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean() + ISOTROPIC_RIDGE
    d = x.shape[1]
    return (-0.5 * (d * math.log(2 * math.pi * var) + ((y - mu) ** 2).sum(1) / var)).float()
