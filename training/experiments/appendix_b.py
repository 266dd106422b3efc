"""Appendix B: how loose the auxiliary KL bound (eq. 7) is after DWP variational inference, per layer.

Each run trains DWP-VI with the Fig. 2 protocol on N stratified images, then per Bayesian layer compares
(all in nats, summed over the layer's kernels, upper bounds on KL(q ‖ p̂)):

- ``bound``: eq. 7 with the trained reverse model r(z|w; ψ_l) — what training minimised;
- ``bound_prior_r``: eq. 7 with r(z|w) = p(z) = N(0, I), i.e. without a learned reverse model;
- ``iwae_kl``: −H(q) − E_q log p̂_K(w) with the IWAE estimate of log p̂ (K = 10,000, eq. 18), the tightest;

and the gaps ``gap = bound − iwae_kl`` (eq. 19, via ``dwp_hub.approximation_gap``) and
``gap_prior_r = bound_prior_r − iwae_kl``.
"""

from __future__ import annotations

import math

import torch

from dwp_hub import DWPBound, approximation_gap
from dwp_hub.bayes_conv import bayes_layers
from dwp_hub.gaussian import gaussian_entropy, log_normal
from dwp_hub.subsample import posterior_sample

from .context import RunContext
from .fig2 import test_metrics, train_vi
from .settings import GapSettings

NAME = "gap"
COLUMNS = ["n_train", "seed", "layer", "kernel_size", "kernels", "evaluated", "iwae_samples", "bound", "iwae_kl",
           "gap", "gap_stderr", "bound_prior_r", "gap_prior_r", "gap_prior_r_stderr", "accuracy"]


def plan(s: GapSettings) -> list[tuple[str, dict]]:
    return [(f"gap/dwp/N{n}/s{seed}", dict(n_train=n, seed=seed)) for n in s.sizes for seed in s.seeds]


@torch.no_grad()
def prior_r_bound(layer, samples: int, max_kernels: int, max_batch: int = 65536) -> tuple[float, float]:
    """Eq. 7 with r(z|w) = p(z): −H(q) − Σ_kernels E_{w~q} E_{z~N(0,I)} log p(w|z), and its standard error.

    The KL(r ‖ p(z)) term vanishes; the expectation over z uses `samples` draws per kernel, on at most
    `max_kernels` random kernels scaled to the whole layer.
    """
    prior: DWPBound = layer.prior
    mu, log_sigma2 = prior.as_kernels(layer.weight), prior.as_kernels(layer.log_sigma2)
    n = mu.shape[0]
    neg_entropy = -gaussian_entropy(log_sigma2).item()
    w, scale = posterior_sample(mu, log_sigma2, max_kernels)
    m = w.shape[0]
    per_kernel = torch.empty(m, dtype=torch.float64, device=mu.device)
    rows = max(1, max_batch // samples)
    for r0 in range(0, m, rows):
        wr = w[r0:r0 + rows]
        z = torch.randn(wr.shape[0] * samples, prior.aux.z_dim, device=mu.device, dtype=mu.dtype)
        w_mu, w_var = prior.aux.decode(z)
        lp = log_normal(wr.repeat_interleave(samples, 0), w_mu, w_var, dims=2)
        per_kernel[r0:r0 + rows] = lp.view(wr.shape[0], samples).double().mean(1)
    bound = neg_entropy - scale * per_kernel.sum().item()
    stderr = n * per_kernel.std().item() / math.sqrt(m) if m > 1 else math.inf
    return bound, stderr


def run(params: dict, s: GapSettings, ctx: RunContext, run_id: str) -> list[dict]:
    n, seed = params["n_train"], params["seed"]
    train_idx, test_idx = ctx.target.split(n, seed, s.vi.max_test)
    with ctx.run_log(run_id) as log:
        log(f"{run_id}: DWP-VI on N={n}, split seed {seed}, settings {s}")
        net, _ = train_vi("dwp", train_idx, s.vi, seed, ctx, log, desc=run_id)
        acc = test_metrics(net, test_idx, s.vi, ctx)["accuracy"]
        torch.manual_seed(seed)
        gaps = {g.name: g for g in approximation_gap(net, num_samples=s.iwae_samples, max_kernels=s.max_kernels)}
        rows = []
        for name, layer in bayes_layers(net):
            g = gaps[name]
            bound_p, stderr_p = prior_r_bound(layer, s.prior_z_samples, s.max_kernels)
            rows.append(dict(n_train=n, seed=seed, layer=name, kernel_size=layer.kernel_size[0], kernels=g.kernels,
                             evaluated=g.evaluated, iwae_samples=g.num_samples, bound=g.bound, iwae_kl=g.iwae_kl,
                             gap=g.gap, gap_stderr=g.gap_stderr, bound_prior_r=bound_p,
                             gap_prior_r=bound_p - g.iwae_kl, gap_prior_r_stderr=stderr_p, accuracy=acc))
            log(f"{name}: {rows[-1]}")
    return rows
