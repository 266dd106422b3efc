"""How fast a kernel's stored or linearised DWP term goes stale under VI: gradients against the exact bound's.

    python -m training.experiments.estimator_drift --out training/results/runs/estimator-drift/drift.csv

A cheap estimator of the eq. 7 bound must reuse per-kernel work across steps: only ~1% of a layer's kernels
can go through the kernel VAE per step at ≤ 1.3× an N(0,1) step. This measures how well such reused work
predicts the bound's gradient later. The paper's MNIST net is trained by the Fig. 2 protocol (μ from the
bundled priors, KL on 128 kernels per layer, Adam, batch 32, official MNIST split) for `--warmup` steps; the
5x5 layer's first `--kernels` kernels and the reverse model ψ are recorded there (time t₀) and again `lag`
steps later (t₁). At t₁ each candidate's gradient of Σ_kernels term w.r.t. μ and log σ² is compared with a
reference: the exact bound's gradient averaged over 4·`--draws` draws of (w, z). Candidates:

- ``exact-1`` / ``exact-R``: the exact bound at t₁, one draw (what training uses) / `--draws` draws averaged;
- ``stale-R``: the exact bound's gradient at t₀ (μ₀, σ₀, ψ₀), as stored-gradient estimators (SAG) reuse it;
- ``tangent-R``: a first-order model built at t₀: the reverse model's outputs (z mean, raw variance)
  linear in w around μ₀, the decoder's outputs linear in z around z₀ = its mean + std·ε₀ (ε₀ held); evaluated
  at fresh w ~ q(μ₁, σ₁) — one model per draw;
- ``rb-1`` / ``rb-R``: another valid bound, with r(z|μ) in place of r(z|w): for any r independent of w,
  log p(w) ≥ E_r[log p(w|z) + log p(z) − log r(z)], so the w-expectation is closed form (Rao-Blackwellised);
- ``rb-tangent-R``: rb with the t₀ first-order model of the reverse model and decoder.

Errors are the cosine and ‖g − g_ref‖ / ‖g_ref‖ of the layer's gradient; a candidate that reused work is useful
only while its error stays below ``exact-1``'s (one fresh draw). The value column is the mean term per kernel.
"""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path
from typing import Callable

import click
import torch

from dwp_hub import bayesianize, elbo_loss, kl, parameter_groups
from dwp_hub.atomic import staged_file
from dwp_hub.bayes_conv import bayes_layers
from dwp_hub.gaussian import bounded_variance, kl_to_standard_normal, log_normal
from training.cli_options import CONTEXT, list_option

from .data import load_target
from .nets import classifier, xavier_

COLUMNS = ["n_train", "seed", "lag", "rms_move", "candidate", "draws", "grad_mu_cosine", "grad_mu_rel_error",
           "grad_log_sigma2_cosine", "grad_log_sigma2_rel_error", "value_per_kernel", "reference_value_per_kernel"]
LOG_2PI = math.log(2 * math.pi)
# term(mu, log_sigma2) -> per-kernel term of one draw; a fresh callable per draw (it may hold its own ε₀)
Term = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Snapshot:
    """The layer's first kernels' μ and log σ², and a frozen copy of its VAE (reverse model and decoder), at one step."""

    def __init__(self, layer: torch.nn.Module, kernels: int) -> None:
        k = layer.weight.shape[-1]
        self.mu = layer.weight.detach().reshape(-1, k, k)[:kernels].clone()
        self.log_sigma2 = layer.log_sigma2.detach().reshape(-1, k, k)[:kernels].clone()
        self.prior = copy.deepcopy(layer.prior.aux).requires_grad_(False)
        self.encoder, self.decoder = self.prior.encoder, self.prior.decoder
        self.floor, self.z_dim = self.prior.config.var_floor, self.prior.config.z_dim


def exact_term(s: Snapshot) -> Term:
    """−ELBO_ψ(w) at w ~ q (eq. 7's expectation term, one draw of w and of z ~ r(z|w))."""
    def term(mu, log_sigma2):
        return -s.prior.elbo(mu + (0.5 * log_sigma2).exp() * torch.randn_like(mu))
    return term


def rb_value(mu, log_sigma2, z_mu, z_var, w_mu, w_var) -> torch.Tensor:
    """KL(r(z) ‖ N(0, I)) − E_{w~q} log N(w; w_mu, w_var), the w-expectation in closed form; per kernel."""
    nll = 0.5 * (LOG_2PI + w_var.log() + ((mu - w_mu) ** 2 + log_sigma2.exp()) / w_var)
    return kl_to_standard_normal(z_mu, z_var) + nll.flatten(1).sum(1)


def rb_term(s: Snapshot) -> Term:
    """The bound with r(z|μ): one z draw, the expectation over w exact."""
    def term(mu, log_sigma2):
        z_mu, z_var = s.prior.encode(mu)
        return rb_value(mu, log_sigma2, z_mu, z_var, *s.prior.decode(z_mu + z_var.sqrt() * torch.randn_like(z_mu)))
    return term


class Tangent:
    """First-order model at snapshot `s`: reverse-model outputs linear in w around μ₀, decoder outputs linear in
    z around z₀ = z mean + z std · ε₀ (ε₀ drawn here and held)."""

    def __init__(self, s: Snapshot) -> None:
        self.s = s
        n, zd = s.mu.shape[0], s.z_dim
        eye = torch.eye(zd)
        (self.a0, self.u0), vjp = torch.func.vjp(lambda w: s.encoder(w[:, None]), s.mu)
        zeros = torch.zeros(n, zd)
        self.A = torch.stack([vjp((eye[j].expand(n, zd), zeros))[0] for j in range(zd)], 1).flatten(2)
        self.U = torch.stack([vjp((zeros, eye[j].expand(n, zd)))[0] for j in range(zd)], 1).flatten(2)
        self.eps0 = torch.randn(n, zd)
        self.z0 = self.a0 + bounded_variance(self.u0, s.floor).sqrt() * self.eps0
        cols = [torch.func.jvp(s.decoder, (self.z0,), (eye[j].expand(n, zd),)) for j in range(zd)]
        self.m0, self.r0 = cols[0][0]
        self.M = torch.stack([c[1][0] for c in cols], -1).flatten(1, 2)
        self.R = torch.stack([c[1][1] for c in cols], -1).flatten(1, 2)

    def at(self, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(z mean, z variance, w mean, w variance) of the linear model at kernels `w`."""
        d = (w - self.s.mu).flatten(1)
        z_mu = self.a0 + torch.einsum("nzk,nk->nz", self.A, d)
        z_var = bounded_variance(self.u0 + torch.einsum("nzk,nk->nz", self.U, d), self.s.floor)
        dz = z_mu + z_var.sqrt() * self.eps0 - self.z0
        w_mu = self.m0 + torch.einsum("nkz,nz->nk", self.M, dz).view_as(w)
        w_raw = self.r0 + torch.einsum("nkz,nz->nk", self.R, dz).view_as(w)
        return z_mu, z_var, w_mu, bounded_variance(w_raw, self.s.floor)


def tangent_term(s: Snapshot) -> Term:
    model = Tangent(s)

    def term(mu, log_sigma2):
        w = mu + (0.5 * log_sigma2).exp() * torch.randn_like(mu)
        z_mu, z_var, w_mu, w_var = model.at(w)
        return kl_to_standard_normal(z_mu, z_var) - log_normal(w, w_mu, w_var, dims=2)
    return term


def rb_tangent_term(s: Snapshot) -> Term:
    model = Tangent(s)
    return lambda mu, log_sigma2: rb_value(mu, log_sigma2, *model.at(mu))


def mean_gradient(make_term: Callable[[], Term], mu: torch.Tensor, log_sigma2: torch.Tensor, draws: int
                  ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Gradients of Σ_kernels term w.r.t. μ and log σ², and the mean term per kernel, averaged over `draws`."""
    g_mu, g_ls, value = torch.zeros_like(mu), torch.zeros_like(mu), 0.0
    for _ in range(draws):
        m, ls = mu.clone().requires_grad_(True), log_sigma2.clone().requires_grad_(True)
        f = make_term()(m, ls).sum()
        a, b = torch.autograd.grad(f, (m, ls))
        g_mu += a / draws
        g_ls += b / draws
        value += f.item() / draws / mu.shape[0]
    return g_mu, g_ls, value


def errors(g: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    cosine = torch.nn.functional.cosine_similarity(g.flatten(), ref.flatten(), dim=0).item()
    return cosine, ((g - ref).norm() / ref.norm()).item()


def measure(n_train: int, seed: int, lags: list[int], warmup: int, kernels: int, draws: int, target_spec: str
            ) -> list[dict]:
    """Train by the Fig. 2 protocol, snapshot the 5x5 layer at `warmup` and `warmup + lag`; the rows of COLUMNS."""
    target = load_target(target_spec)
    train_idx, _ = target.split(n_train, seed)
    x, y = target.tensors(train_idx)
    torch.manual_seed(seed)
    net = classifier(num_classes=target.num_classes)
    xavier_(net, torch.Generator().manual_seed(seed))
    bayesianize(net, "notmnist", subsample=128, init_from="notmnist", generator=torch.Generator().manual_seed(seed))
    lrs = {"mean": 1e-3, "other": 1e-3, "reverse": 1e-3, "log_sigma2": 1e-2}  # Fig2Settings' learning rates
    opt = torch.optim.Adam([{"params": g, "lr": lrs[r]} for r, g in parameter_groups(net).items() if g])
    layer = [lay for _, lay in bayes_layers(net)][1]
    order = torch.Generator().manual_seed(10_007 * seed + 1)
    batch = min(n_train, 32)
    snaps: dict[int, Snapshot] = {}
    for step in range(warmup + max(lags) + 1):
        if step == warmup or step - warmup in lags:
            snaps[step] = Snapshot(layer, kernels)
        idx = torch.randint(0, n_train, (batch,), generator=order)
        loss = elbo_loss(net(x[idx]), y[idx], kl(net), n_train)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    s0, rows = snaps[warmup], []
    for lag in lags:
        s1 = snaps[warmup + lag]
        ref = mean_gradient(lambda: exact_term(s1), s1.mu, s1.log_sigma2, 4 * draws)
        candidates = {
            "exact-1": (lambda: exact_term(s1), 1, s1), "exact-R": (lambda: exact_term(s1), draws, s1),
            "stale-R": (lambda: exact_term(s0), draws, s0), "tangent-R": (lambda: tangent_term(s0), draws, s1),
            "rb-1": (lambda: rb_term(s1), 1, s1), "rb-R": (lambda: rb_term(s1), draws, s1),
            "rb-tangent-R": (lambda: rb_tangent_term(s0), draws, s1),
        }
        move = (s1.mu - s0.mu).pow(2).mean().sqrt().item()
        for name, (make, k, at) in candidates.items():
            g_mu, g_ls, value = mean_gradient(make, at.mu, at.log_sigma2, k)
            (c_mu, e_mu), (c_ls, e_ls) = errors(g_mu, ref[0]), errors(g_ls, ref[1])
            rows.append(dict(n_train=n_train, seed=seed, lag=lag, rms_move=round(move, 6), candidate=name, draws=k,
                             grad_mu_cosine=round(c_mu, 4), grad_mu_rel_error=round(e_mu, 4),
                             grad_log_sigma2_cosine=round(c_ls, 4), grad_log_sigma2_rel_error=round(e_ls, 4),
                             value_per_kernel=round(value, 3), reference_value_per_kernel=round(ref[2], 3)))
            print(" ".join(f"{k_}={v}" for k_, v in rows[-1].items()), flush=True)
    return rows


@click.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV file to write (replaced).")
@list_option("--sizes", convert=int, default=(50, 1000), help="N of the Fig. 2 runs (comma-separated, repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@list_option("--lags", convert=int, default=(8, 32, 64, 256),
             help="Steps between the two snapshots (comma-separated, repeatable).")
@click.option("--warmup", type=int, default=64, show_default=True, help="Training steps before the first snapshot.")
@click.option("--kernels", type=int, default=512, show_default=True, help="Kernels of the 5x5 layer measured.")
@click.option("--draws", type=int, default=32, show_default=True,
              help="Draws averaged by the -R candidates (reference: 4×).")
@click.option("--target", default="mnist", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
def main(out: Path, sizes: tuple[int, ...], seed: int, lags: tuple[int, ...], warmup: int, kernels: int, draws: int,
         target: str, threads: int) -> None:
    """How fast a kernel's stored or linearised DWP term goes stale under VI: gradients against the exact bound's.

    Writes one CSV row per N, lag and candidate estimator (see the module's docstring).
    """
    torch.set_num_threads(threads)
    rows = [r for n in sizes for r in measure(n, seed, list(lags), warmup, kernels, draws, target)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
