"""The stored-gradient estimators (SAGA, SAG) of a layer's sum of per-kernel terms: exact when they see every
kernel, stored gradients for the others, SAGA unbiased over subsets, both usable as the DWP bound's estimator."""

import copy

import pytest
import torch
from torch import nn

from dwp_hub import DWPBound, bayesianize, kl
from dwp_hub.stored_gradients import StoredGradientSum, default_subset_size

LOG_SIGMA2 = -40.0  # σ = 2e-9: w = μ to float precision, so the test term below is deterministic


def term(w: torch.Tensor, psi_scale: float = 1.0) -> torch.Tensor:
    return (w ** 2).sum((1, 2)) + w[:, 0, 0] ** 3  # per kernel; gradient 2w (+ 3w² at [0, 0]); no ψ here


def grads(est: StoredGradientSum, mu: torch.Tensor) -> tuple[float, torch.Tensor]:
    mu = mu.clone().requires_grad_(True)
    out = est(mu, torch.full_like(mu, LOG_SIGMA2), term)
    out.backward()
    return out.item(), mu.grad


def exact(mu: torch.Tensor) -> tuple[float, torch.Tensor]:
    mu = mu.clone().requires_grad_(True)
    f = term(mu).sum()
    f.backward()
    return f.item(), mu.grad


def test_every_kernel_drawn_is_exact_and_fills_the_tables():
    torch.manual_seed(0)
    mu = torch.randn(40, 3, 3)
    est = StoredGradientSum(subset=40)
    value, g = grads(est, mu)
    value_x, g_x = exact(mu)
    assert abs(value - value_x) < 1e-3 * abs(value_x) and torch.allclose(g, g_x, atol=1e-5)
    assert torch.allclose(est.grad_mu, g_x, atol=1e-5) and torch.allclose(est.values, term(mu), atol=1e-5)


@pytest.mark.parametrize("mode, factor, seed", [("saga", 10, 1), ("sag", 1, 5)])
def test_kernels_not_drawn_get_their_stored_gradient(mode, factor, seed):
    """Drawn kernels get stored + c·(fresh − stored): c = n/m = 10 in SAGA, 1 (the fresh gradient) in SAG."""
    torch.manual_seed(seed)
    mu = torch.randn(40, 3, 3)
    est = StoredGradientSum(mode, subset=40)
    grads(est, mu)
    stored = est.grad_mu.clone()
    est.subset = 4
    moved = mu + 0.1
    _, g = grads(est, moved)
    fresh = exact(moved)[1]
    changed = (est.grad_mu != stored).flatten(1).any(1)
    assert changed.sum() == 4  # the four drawn kernels were refreshed...
    assert torch.allclose(est.grad_mu[changed], fresh[changed], atol=1e-5)
    assert torch.allclose(g[~changed], stored[~changed])  # ...the other 36 got their stored gradient
    assert torch.allclose(g[changed], stored[changed] + factor * (fresh[changed] - stored[changed]), atol=1e-4)


def test_unbiased_over_subsets_and_refresh_draws():
    torch.manual_seed(2)
    mu = torch.randn(30, 3, 3)
    base = StoredGradientSum(subset=30)
    grads(base, mu)  # tables at mu ...
    moved = mu + 0.3 * torch.randn_like(mu)  # ... then the kernels move: the tables are stale
    value_x, g_x = exact(moved)
    values, total = [], torch.zeros_like(mu)
    draws = 3000
    for _ in range(draws):
        est = copy.deepcopy(base)
        est.subset, est.refresh_prob = 5, 0.5
        v, g = grads(est, moved)
        values.append(v)
        total += g
    mean_g = total / draws
    assert (mean_g - g_x).abs().max() < 0.1 * g_x.abs().max()
    assert abs(sum(values) / draws - value_x) < 0.03 * abs(value_x)


def test_subset_size_grows_like_the_square_root():
    assert [default_subset_size(n) for n in (10, 32, 4096, 262_144)] == [10, 16, 64, 512]


def test_dwp_layers_train_with_stored_gradients(one_thread):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 8, 7), nn.ReLU(), nn.Conv2d(8, 16, 5))
    report = bayesianize(model, "notmnist", stored_gradients="saga", refresh_prob=0.5)
    assert len(report.converted) == 2 and isinstance(model[2].prior, DWPBound)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(6):
        loss = model(torch.rand(2, 1, 16, 16)).square().mean() + kl(model) / 100
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert model[2].prior.stored.grad_mu.abs().sum() > 0  # tables were filled from the backward passes
    with torch.no_grad():  # without gradients: the stored values, no gradient table touched
        before = model[2].prior.stored.grad_mu.clone()
        assert torch.isfinite(kl(model)) and torch.equal(model[2].prior.stored.grad_mu, before)


def test_log_sigma2_gradient_and_table_follow_the_reparameterisation():
    mu, log_sigma2 = torch.randn(12, 3, 3), torch.full((12, 3, 3), -3.0)
    est = StoredGradientSum(subset=12, warm_start=False)
    a, b = mu.clone().requires_grad_(True), log_sigma2.clone().requires_grad_(True)
    torch.manual_seed(4)
    est(a, b, term).backward()
    torch.manual_seed(4)
    torch.rand(())  # the refresh draw
    x, y = mu.clone().requires_grad_(True), log_sigma2.clone().requires_grad_(True)
    term(x + (0.5 * y).exp() * torch.randn_like(x)).sum().backward()
    assert torch.allclose(b.grad, y.grad, atol=1e-5) and torch.allclose(est.grad_log_sigma2, y.grad, atol=1e-5)
    assert y.grad.abs().sum() > 0


def test_the_reverse_model_gets_the_unbiased_scale_in_both_modes(one_thread):
    """ψ's gradient is (n / m)·Σ_S ∂f/∂ψ in SAGA (through the correction) and in SAG (through psi_scale)."""
    from dwp_hub import DWPrior

    torch.manual_seed(6)
    prior = DWPrior.from_pretrained("dwp/notmnist-3x3")
    mu, ls = torch.randn(64, 3, 3) * 0.1, torch.full((64, 3, 3), -8.0)
    grads_psi = {}
    for mode in ("saga", "sag", None):
        bound = DWPBound(copy.deepcopy(prior), subsample=8, stored_gradients=mode)
        if mode is not None:
            bound.stored.warm_start = False  # draw the subset on this first call too
        torch.manual_seed(7)
        if mode is None:
            torch.rand(())  # the stored estimators' refresh draw, so that all three draw the same subset and noise
        bound.kl(mu, ls).backward()
        grads_psi[mode] = torch.cat([p.grad.flatten() for p in bound.aux.encoder.parameters()])
    assert grads_psi[None].abs().sum() > 0
    for mode in ("saga", "sag"):
        assert torch.allclose(grads_psi[mode], grads_psi[None], rtol=1e-4, atol=1e-6), mode


def test_the_first_call_evaluates_every_kernel():
    torch.manual_seed(8)
    mu = torch.randn(40, 3, 3)
    for mode in ("sag", "saga"):
        est = StoredGradientSum(mode, subset=4, refresh_prob=0.25)
        value, g = grads(est, mu)
        value_x, g_x = exact(mu)
        assert abs(value - value_x) < 1e-3 * abs(value_x) and torch.allclose(g, g_x, atol=1e-5), mode
        assert torch.allclose(est.grad_mu, g_x, atol=1e-5), mode
