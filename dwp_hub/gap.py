"""How loose the DWP bound is: appendix B's IWAE estimate of the gap, per Bayesian layer.

G = L(θ) − L^aux(θ, ψ) (eq. 16) is bounded below by L_K^IWAE − L^aux (eq. 19). Per layer that is

    Σ_kernels E_{w~q}[ log p̂_K(w) − ELBO_ψ(w) ],

where log p̂_K is the K-sample importance-weighted estimate (eq. 18) with the layer's reverse model
r(z|w; ψ_l) as proposal and ELBO_ψ(w) is the single-sample bound used in training (eq. 7). The data term
and the entropy of q cancel. Both are evaluated at the same weight samples, which keeps the difference's
variance low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .bayes_conv import bayes_layers
from .dwp_bound import DWPBound
from .gaussian import gaussian_entropy
from .subsample import posterior_sample


@dataclass
class LayerGap:
    """Appendix-B numbers for one DWP layer, summed over all its kernels (nats)."""

    name: str
    kernels: int  # kernels in the layer
    evaluated: int  # kernels the estimate was computed on (then scaled to all)
    num_samples: int  # K of the IWAE estimate
    bound: float  # the layer's KL bound (eq. 7), as used in training
    iwae_kl: float  # −H(q) − E_q log p̂_K(w): a tighter upper bound on KL(q ‖ p̂)
    gap: float  # bound − iwae_kl ≥ 0 in expectation: a lower bound on the looseness of eq. 7
    gap_stderr: float  # standard error of `gap` over the evaluated kernels


@torch.no_grad()
def approximation_gap(model: nn.Module, num_samples: int = 10_000, max_kernels: int | None = 256,
                      max_batch: int = 65536) -> list[LayerGap]:
    """Appendix B's gap estimate for every DWP layer of `model` (K = `num_samples`, 10,000 in the paper).

    Each layer is evaluated on at most `max_kernels` randomly chosen kernels (None: all) and the sums are
    scaled to the whole layer; the IWAE pass costs `num_samples` decoder evaluations per kernel, done
    `max_batch` at a time. Layers with closed-form priors have no gap and are not listed.
    """
    if num_samples < 1:
        raise ValueError("num_samples must be >= 1")
    out = []
    for name, layer in bayes_layers(model):
        prior = layer.prior
        if not isinstance(prior, DWPBound):
            continue
        mu, log_sigma2 = prior.as_kernels(layer.weight), prior.as_kernels(layer.log_sigma2)
        n = mu.shape[0]
        neg_entropy = -gaussian_entropy(log_sigma2).item()
        w, scale = posterior_sample(mu, log_sigma2, max_kernels)
        m = w.shape[0]
        elbo = prior.aux.elbo(w)
        log_p = prior.aux.log_prob(w, num_samples=num_samples, max_batch=max_batch)
        diff = (log_p - elbo).double()
        out.append(LayerGap(
            name=name, kernels=n, evaluated=m, num_samples=num_samples,
            bound=neg_entropy - scale * elbo.double().sum().item(),
            iwae_kl=neg_entropy - scale * log_p.double().sum().item(),
            gap=scale * diff.sum().item(),
            gap_stderr=n * diff.std().item() / math.sqrt(m) if m > 1 else math.inf,
        ))
    return out
