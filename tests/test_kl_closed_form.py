"""Closed-form KL terms of the baseline priors against Monte-Carlo estimates."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dwp_hub import (DWPrior, LogUniformPrior, MultivariateGaussianPrior, NormalPrior, PriorFormatError, SubsampledKL,
                     WeightPrior, bayesianize, kl)
from dwp_hub.prior_folder import KERNELS_NAME
from dwp_hub.weight_priors import log_uniform_kl

EULER_GAMMA = 0.5772156649015329


def _q(shape, seed):
    g = torch.Generator().manual_seed(seed)
    mu = 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    log_sigma2 = -3 + 2 * torch.rand(shape, generator=g, dtype=torch.float64)
    return mu, log_sigma2


def _mc_kl(mu, log_sigma2, log_p, n, seed):
    """Monte-Carlo KL(q‖p) = E_q[log q(w) − log p(w)] over whole weight tensors, with its standard error."""
    g = torch.Generator().manual_seed(seed)
    q = torch.distributions.Normal(mu, (0.5 * log_sigma2).exp())
    w = mu + (0.5 * log_sigma2).exp() * torch.randn((n, *mu.shape), generator=g, dtype=mu.dtype)
    terms = q.log_prob(w).flatten(1).sum(1) - log_p(w)
    return terms.mean().item(), terms.std().item() / math.sqrt(n)


@pytest.mark.parametrize("std", [1.0, 0.3])
def test_normal_prior_kl_matches_monte_carlo(std):
    mu, log_sigma2 = _q((4, 3, 5, 5), seed=0)
    closed = NormalPrior(std).kl(mu, log_sigma2).item()
    p = torch.distributions.Normal(0.0, std)
    mc, se = _mc_kl(mu, log_sigma2, lambda w: p.log_prob(w).flatten(1).sum(1), 20000, seed=1)
    assert abs(closed - mc) < 4 * se, (closed, mc, se)


@pytest.mark.parametrize("log_alpha", [-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0])
def test_log_uniform_kl_matches_monte_carlo(log_alpha):
    """Per weight, KL(N(μ, αμ²) ‖ log-uniform) = −½ log α + E log|ε| + c, ε ~ N(1, α) (Molchanov et al. 2017).

    c is fixed by KL → 0 as α → ∞, where E log|ε| → ½ log α + E log|N(0,1)| = ½ log α − (γ + log 2)/2;
    so c = (γ + log 2)/2, computed here independently of the approximation's constants. The approximation
    itself is accurate to about 0.01 nats (largest deviation on this grid, measured: 0.009 at log α = −4).
    """
    n = 1_000_000
    g = torch.Generator().manual_seed(int(log_alpha) + 10)
    eps = 1 + math.exp(0.5 * log_alpha) * torch.randn(n, generator=g, dtype=torch.float64)
    log_abs = eps.abs().log()
    mc = -0.5 * log_alpha + log_abs.mean().item() + 0.5 * (EULER_GAMMA + math.log(2))
    se = log_abs.std().item() / math.sqrt(n)
    for mu in (1.0, -0.03):  # α depends on μ only through μ², and the KL only on α
        approx = log_uniform_kl(torch.tensor(mu, dtype=torch.float64),
                                torch.tensor(log_alpha + math.log(mu * mu), dtype=torch.float64)).item()
        assert abs(approx - mc) < 0.01 + 4 * se, (log_alpha, approx, mc)


def test_log_uniform_prior_sums_per_weight_terms():
    mu, log_sigma2 = _q((3, 2, 3, 3), seed=5)
    total = LogUniformPrior().kl(mu, log_sigma2)
    per_weight = [log_uniform_kl(m, s) for m, s in zip(mu.flatten(), log_sigma2.flatten())]
    torch.testing.assert_close(total, torch.stack(per_weight).sum())


def _smooth_kernels(n, k, seed):
    """Spatially correlated random kernels: white noise blurred by a 3x3 box, plus a shared offset."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, k + 2, k + 2, generator=g, dtype=torch.float64)
    blurred = torch.nn.functional.avg_pool2d(noise, 3, stride=1)[:, 0]
    return 0.2 * blurred + 0.05 * torch.linspace(-1, 1, k, dtype=torch.float64)


def test_multivariate_gaussian_fit_is_the_maximum_likelihood_estimate():
    kernels = _smooth_kernels(500, 5, seed=0)
    prior = MultivariateGaussianPrior.fit(kernels, jitter=0.0)
    x = kernels.flatten(1).numpy()
    np.testing.assert_allclose(prior.mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-7)
    cov = np.cov(x, rowvar=False, bias=True)
    np.testing.assert_allclose(np.linalg.inv(prior.precision.double().numpy()), cov, rtol=1e-3, atol=1e-7)
    # the ML estimate maximises the likelihood: moving the mean lowers it
    mvn = torch.distributions.MultivariateNormal(torch.tensor(x.mean(0)), torch.tensor(cov))
    moved = torch.distributions.MultivariateNormal(torch.tensor(x.mean(0)) + 0.01, torch.tensor(cov))
    assert mvn.log_prob(kernels.flatten(1)).sum() > moved.log_prob(kernels.flatten(1)).sum()


def test_multivariate_gaussian_kl_matches_monte_carlo():
    kernels = _smooth_kernels(400, 3, seed=1)
    prior = MultivariateGaussianPrior.fit(kernels).double()
    x = kernels.flatten(1)
    cov = torch.cov(x.T, correction=0)
    cov += 1e-4 * cov.diagonal().mean() * torch.eye(9, dtype=torch.float64)  # the documented jitter
    p = torch.distributions.MultivariateNormal(x.mean(0), cov)
    mu, log_sigma2 = _q((6, 4, 3, 3), seed=2)
    mu = 0.3 * mu
    log_sigma2 = log_sigma2 - 2
    closed = prior.kl(mu, log_sigma2).item()
    mc, se = _mc_kl(mu, log_sigma2, lambda w: p.log_prob(w.reshape(w.shape[0], -1, 9)).sum(1), 20000, seed=3)
    assert abs(closed - mc) < 4 * se, (closed, mc, se)
    with pytest.raises(ValueError, match="kernels"):
        prior.kl(torch.zeros(2, 2, 5, 5), torch.zeros(2, 2, 5, 5))


def test_multivariate_gaussian_from_a_prior_folder(tmp_path):
    folder = DWPrior.for_kernel_size(7, "test").save_pretrained(tmp_path / "p")
    with pytest.raises(PriorFormatError, match=KERNELS_NAME):
        MultivariateGaussianPrior.from_pretrained(folder)
    train, heldout = _smooth_kernels(300, 7, seed=4).float(), _smooth_kernels(50, 7, seed=5).float()
    save_file({"train": train, "heldout": heldout}, folder / KERNELS_NAME)
    loaded = MultivariateGaussianPrior.from_pretrained(folder)
    direct = MultivariateGaussianPrior.fit(train)
    assert loaded.kernel_size == (7, 7)
    torch.testing.assert_close(loaded.mean, direct.mean)
    torch.testing.assert_close(loaded.precision, direct.precision)
    held = MultivariateGaussianPrior.from_pretrained(folder, split="heldout")
    torch.testing.assert_close(held.mean, MultivariateGaussianPrior.fit(heldout).mean)
    with pytest.raises(PriorFormatError, match="no tensor 'test'"):
        MultivariateGaussianPrior.from_pretrained(folder, split="test")
    save_file({"train": torch.zeros(10, 7, 5)}, folder / KERNELS_NAME)
    with pytest.raises(PriorFormatError, match=r"has shape \(10, 7, 5\), expected \(n, 7, 7\)"):
        MultivariateGaussianPrior.from_pretrained(folder)


def test_multivariate_gaussian_rejects_bad_parameters():
    with pytest.raises(ValueError, match="positive definite"):
        MultivariateGaussianPrior(torch.zeros(3, 3), -torch.eye(9))
    with pytest.raises(ValueError, match="shape"):
        MultivariateGaussianPrior.fit(torch.zeros(10, 3, 4))
    with pytest.raises(ValueError, match="NaN"):
        MultivariateGaussianPrior.fit(torch.full((10, 3, 3), float("nan")))


def _closed_form_priors() -> dict[str, WeightPrior | dict]:
    mvg = {k: MultivariateGaussianPrior.fit(_smooth_kernels(200, k, seed=k).float()) for k in (3, 5)}
    return {"normal": NormalPrior(0.5), "log-uniform": LogUniformPrior(), "mv-gaussian": mvg}


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5), torch.nn.Conv2d(8, 16, 3))
    for conv in net:  # means and variances that differ from kernel to kernel
        conv.weight.data.normal_(0, 0.3)
    return net


@pytest.mark.parametrize("name", ["normal", "log-uniform", "mv-gaussian"])
def test_bayesianize_subsample_estimates_every_closed_form_kl_without_bias(name):
    """bayesianize(subsample=m) reaches the closed-form priors: m of n kernels a layer per call, unbiased."""
    spec = _closed_form_priors()[name]
    exact_net = _net()
    bayesianize(exact_net, spec, init_log_sigma2=-4.0)
    for layer in exact_net:
        layer.log_sigma2.data.uniform_(-6.0, -2.0)
    exact = kl(exact_net)
    assert torch.equal(kl(exact_net), exact)  # subsample=None: the exact KL, the bare prior, every call
    assert not any(isinstance(layer.prior, SubsampledKL) for layer in exact_net)

    net = _net()
    bayesianize(net, spec, init_log_sigma2=-4.0, subsample=10)
    for layer, exact_layer in zip(net, exact_net):
        layer.log_sigma2.data.copy_(exact_layer.log_sigma2.data)
        assert isinstance(layer.prior, SubsampledKL) and layer.prior.subsample == 10
    with torch.no_grad():
        draws = torch.stack([kl(net) for _ in range(3000)]).double()
    assert draws.std() > 1e-3 * exact.abs()  # each draw is an estimate, not the full KL
    assert abs(draws.mean().item() - exact.item()) < 4 * draws.std().item() / math.sqrt(len(draws))


def test_subsampled_kl_keeps_the_entropy_exact_and_is_exact_on_every_kernel():
    mu, log_sigma2 = _q((6, 4, 3, 3), seed=7)
    prior = LogUniformPrior()
    torch.testing.assert_close(SubsampledKL(prior, 24).kl(mu, log_sigma2), prior.kl(mu, log_sigma2))
    torch.testing.assert_close(SubsampledKL(prior, None).kl(mu, log_sigma2), prior.kl(mu, log_sigma2))
    # the estimate moves only through the cross term: equal log σ² across kernels and a flat prior term
    # (μ = 0 gives the same log-uniform KL per kernel) make every draw exact
    same = torch.full_like(log_sigma2, -3.0)
    draws = torch.stack([SubsampledKL(prior, 5).kl(torch.zeros_like(mu), same) for _ in range(20)])
    torch.testing.assert_close(draws, prior.kl(torch.zeros_like(mu), same).expand(20))


class _LayerWidePrior(WeightPrior):
    """A prior whose KL is not a sum over kernels (it depends on the layer's mean kernel)."""

    def kl(self, mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
        return mu.mean(0).pow(2).sum() + log_sigma2.exp().sum()


def test_subsample_refuses_a_prior_it_cannot_apply_to_before_changing_the_model():
    net = _net()
    before = [type(m) for m in net]
    with pytest.raises(ValueError, match="_LayerWidePrior does not declare one"):
        bayesianize(net, {5: NormalPrior(), 3: _LayerWidePrior()}, subsample=4)
    assert [type(m) for m in net] == before  # nothing was converted
    with pytest.raises(ValueError, match="brings its own subsample=3"):
        bayesianize(net, SubsampledKL(NormalPrior(), 3), subsample=4)
    with pytest.raises(ValueError, match="positive integer"):
        bayesianize(net, NormalPrior(), subsample=0)
    assert [type(m) for m in net] == before
    bayesianize(net, _LayerWidePrior())  # without subsample it is used as it is
    assert net[1].prior.__class__ is _LayerWidePrior
