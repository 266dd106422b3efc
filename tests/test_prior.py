"""DWPrior: architectures, variance bounds, sampling, ELBO and the IWAE estimate of log p̂(w)."""

import math

import pytest
import torch

from dwp_hub import DWPrior
from dwp_hub.architectures import ARCHITECTURES
from training.research_architectures import RESEARCH_ARCHITECTURES  # noqa: F401  (shell below)


@pytest.mark.parametrize("name, enc, dec", [("dwp-vae-7x7", 56004, 56674), ("dwp-vae-5x5", 260040, 304194)])
def test_paper_architectures_have_table2_parameter_counts(name, enc, dec):
    arch = ARCHITECTURES[name]
    prior = DWPrior.for_kernel_size(arch.kernel_size, "test", z_dim=arch.default_z_dim)
    assert sum(p.numel() for p in prior.encoder.parameters()) == enc
    assert sum(p.numel() for p in prior.decoder.parameters()) == dec


@pytest.mark.parametrize("k", [3, 5, 7])
def test_shapes_round_trip(k):
    prior = DWPrior.for_kernel_size(k, "test")
    w = torch.randn(6, k, k)
    mu, var = prior.encode(w)
    assert mu.shape == var.shape == (6, prior.z_dim)
    w_mu, w_var = prior.decode(mu)
    assert w_mu.shape == w_var.shape == (6, k, k)
    assert prior.elbo(w).shape == (6,)
    assert prior.sample(4).shape == (4, k, k)
    with pytest.raises(ValueError, match=f"\\(n, {k}, {k}\\)"):
        prior.encode(torch.randn(6, k + 2, k + 2))


def test_variances_never_collapse_or_overflow():
    prior = DWPrior.for_kernel_size(3, "test")
    for head in (prior.encoder.heads.fc_var, prior.decoder.heads.fc_var):
        torch.nn.init.zeros_(head.weight)
    torch.nn.init.constant_(prior.encoder.heads.fc_var.bias, -1e6)
    torch.nn.init.constant_(prior.decoder.heads.fc_var.bias, 1e30)
    _, z_var = prior.encode(torch.randn(4, 3, 3))
    _, w_var = prior.decode(torch.randn(4, prior.z_dim))
    assert (z_var >= prior.config.var_floor).all() and torch.isfinite(z_var).all()
    assert torch.isfinite(w_var).all() and torch.isfinite(w_var.log()).all()


def test_sample_is_seeded_and_independent_of_chunking():
    prior = DWPrior.for_kernel_size(5, "test")
    a = prior.sample(300, generator=torch.Generator().manual_seed(1), chunk_size=64)
    b = prior.sample(300, generator=torch.Generator().manual_seed(1))
    c = prior.sample(300, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, c)
    noisy = prior.sample(300, generator=torch.Generator().manual_seed(1), noise=True)
    assert not torch.allclose(noisy, b)
    mean_only = prior.sample(300, generator=torch.Generator().manual_seed(1), noise=False)
    assert torch.allclose(mean_only, b, atol=1e-6)


def _fit(prior: DWPrior, data: torch.Tensor, steps: int) -> None:
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = data[torch.randint(0, len(data), (64,), generator=gen)]
        loss = -prior.elbo(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _oriented_edges(n: int, k: int, seed: int) -> torch.Tensor:
    """Structured kernels: oriented step edges with random angle and contrast, plus small noise."""
    g = torch.Generator().manual_seed(seed)
    ang = torch.rand(n, generator=g) * 2 * math.pi
    amp = 0.1 + 0.2 * torch.rand(n, generator=g)
    r = torch.arange(k) - (k - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    proj = torch.cos(ang)[:, None, None] * xx + torch.sin(ang)[:, None, None] * yy
    return amp[:, None, None] * torch.tanh(proj) + 0.01 * torch.randn(n, k, k, generator=g)


def test_training_raises_elbo_and_iwae_is_tighter_than_elbo():
    torch.manual_seed(0)
    prior = DWPrior.for_kernel_size(3, "test")
    data, held = _oriented_edges(4000, 3, 0), _oriented_edges(300, 3, 1)
    before = prior.elbo(held).mean().item()
    _fit(prior, data, 150)
    with torch.no_grad():
        after = torch.stack([prior.elbo(held) for _ in range(20)]).mean(0)
    assert after.mean().item() > before + 5.0
    iwae = prior.log_prob(held, num_samples=500, generator=torch.Generator().manual_seed(0))
    # The IWAE bound with K samples is, in expectation, at least the K=1 bound (the ELBO).
    assert iwae.mean().item() >= after.mean().item() - 0.05


def test_log_prob_matches_numerical_integral():
    """For z_dim=2, p̂(w) = ∫ p(w|z) N(z|0,I) dz can be integrated on a grid and compared with IWAE."""
    torch.manual_seed(3)
    prior = DWPrior.for_kernel_size(3, "test", z_dim=2)
    w = prior.sample(3, generator=torch.Generator().manual_seed(4), noise=True)
    side = torch.linspace(-6, 6, 241)
    zz = torch.cartesian_prod(side, side)
    cell = (side[1] - side[0]).item() ** 2
    with torch.no_grad():
        mu, var = prior.decode(zz)
        log_lik = -0.5 * (math.log(2 * math.pi) + var.log() + (w[:, None] - mu) ** 2 / var).sum((-1, -2))
        log_pz = -0.5 * (2 * math.log(2 * math.pi) + (zz**2).sum(-1))
        exact = torch.logsumexp(log_lik + log_pz, dim=1) + math.log(cell)
    iwae = prior.log_prob(w, num_samples=5000, max_batch=4096, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(iwae, exact, atol=0.05), (iwae, exact)


def test_log_prob_handles_ten_thousand_samples_in_chunks():
    prior = DWPrior.for_kernel_size(3, "test")
    w = torch.randn(4, 3, 3) * 0.1
    small = prior.log_prob(w, num_samples=10_000, max_batch=2048, generator=torch.Generator().manual_seed(0))
    large = prior.log_prob(w, num_samples=10_000, max_batch=65536, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(small).all()
    assert torch.allclose(small, large, atol=0.05)


def test_the_vaes_elu_is_pytorchs_elu_in_value_and_gradient():
    """dwp_hub.elu computes ELU from exp on CPU (PyTorch's goes through slow expm1): same function, same gradient."""
    from dwp_hub.elu import ELU

    x = torch.cat([torch.linspace(-30, 5, 1001), torch.randn(1000) * 1e-4, torch.zeros(3)]).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    ours, ref = ELU(alpha=0.7)(x), torch.nn.functional.elu(y, alpha=0.7)
    assert torch.allclose(ours, ref, atol=1e-7, rtol=0)
    g = torch.randn_like(ours)
    ours.backward(g)
    ref.backward(g)
    assert torch.allclose(x.grad, y.grad, atol=1e-6, rtol=1e-6)
    tangent = torch.randn_like(x)  # forward mode (torch.func.jvp) and vmap work through it too
    _, jvp_ours = torch.func.jvp(ELU(alpha=0.7), (x.detach(),), (tangent,))
    _, jvp_ref = torch.func.jvp(lambda t: torch.nn.functional.elu(t, alpha=0.7), (x.detach(),), (tangent,))
    assert torch.allclose(jvp_ours, jvp_ref, atol=1e-6, rtol=1e-6)
    rows = torch.randn(4, 6)
    assert torch.equal(torch.func.vmap(ELU())(rows), ELU()(rows))
    xr = torch.randn(40, dtype=torch.double, requires_grad=True)
    for alpha in (1.0, 0.7):
        assert torch.autograd.gradcheck(lambda t: ELU(alpha=alpha)(t), (xr,), check_forward_ad=True)
    prior = DWPrior.for_kernel_size(5, "test")
    assert all(type(m) is not torch.nn.ELU for m in prior.modules())  # every VAE uses it
    assert prior.encoder.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_the_variance_heads_softplus_is_pytorchs_to_a_few_ulps():
    """dwp_hub.gaussian.softplus (vectorised on CPU) against float64 softplus; gradient and forward mode checked."""
    from dwp_hub.gaussian import softplus

    x = torch.cat([torch.linspace(-80, 60, 20001), torch.randn(5000) * 1e-3, torch.randn(5000) * 5])
    ref = torch.nn.functional.softplus(x.double(), threshold=1000)
    assert ((softplus(x).double() - ref).abs() / ref).max() < 8 * 6e-8  # float32 ulps
    xr = torch.randn(40, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(softplus, (xr,), check_forward_ad=True)


@pytest.mark.parametrize("family", ["dense", "dense32", "shell"])
@pytest.mark.parametrize("k", [7, 5, 3])
def test_dense_architectures_are_priors_like_the_papers(k, family, tmp_path):
    """A dwp-dense-KxK (or dense32, shell) prior is chosen by name only, saves and loads, samples, serves the DWP
    bound."""
    from dwp_hub import PriorFormatError, bayesianize, kl
    from dwp_hub.architectures import architecture_for

    assert architecture_for(k).name == f"dwp-vae-{k}x{k}"  # the paper's stays the default
    torch.manual_seed(0)
    prior = DWPrior.for_kernel_size(k, "test", architecture=f"dwp-{family}-{k}x{k}")
    assert prior.config.architecture == f"dwp-{family}-{k}x{k}"
    width = 32 if family == "dense32" else 64
    assert prior.decoder.features[0].out_features == width and prior.encoder.features[1].out_features == width
    if family == "shell":  # every decoder mean at the radius, which is saved with the weights
        prior.decoder.radius.fill_(0.37)
        norms = prior.sample(50, generator=torch.Generator().manual_seed(2)).flatten(1).norm(dim=1)
        assert torch.allclose(norms, torch.full((50,), 0.37))
    prior.save_pretrained(tmp_path / "p")
    loaded = DWPrior.from_pretrained(tmp_path / "p")
    w = torch.randn(6, k, k)
    z = torch.randn(6, prior.z_dim)
    for a, b in zip(prior.decode(z) + prior.encode(w), loaded.decode(z) + loaded.encode(w)):
        assert torch.equal(a, b)
    assert torch.equal(prior.sample(9, generator=torch.Generator().manual_seed(1)),
                       prior.decode(torch.randn(9, prior.z_dim, generator=torch.Generator().manual_seed(1)))[0])
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, k))
    bayesianize(net, {k: loaded})
    kl(net).backward()
    assert net[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown architecture"):
        DWPrior.for_kernel_size(k, "test", architecture="dwp-dense-9x9")
    with pytest.raises(PriorFormatError, match="architecture"):
        DWPrior.for_kernel_size(k, "test", architecture="dwp-dense-7x7" if k != 7 else "dwp-dense-5x5")


@pytest.mark.parametrize("n, error, message", [
    (-1, ValueError, "n must be >= 0, got -1"),
    (2.5, TypeError, "n must be an integer, got 2.5"),
    (True, TypeError, "n must be an integer"),
])
def test_sample_refuses_a_bad_count_by_name(n, error, message):
    prior = DWPrior.for_kernel_size(3, "test")
    with pytest.raises(error, match=message):
        prior.sample(n)
    assert prior.sample(0).shape == (0, 3, 3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_log_prob_refuses_non_finite_kernels(bad):
    prior = DWPrior.for_kernel_size(3, "test")
    w = torch.zeros(4, 3, 3)
    w[2, 1, 1] = bad
    with pytest.raises(ValueError, match=r"1 of 4 kernels hold NaN or infinite values \(first at index 2\)"):
        prior.log_prob(w, num_samples=4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_kernels_of_any_float_dtype_are_cast_to_the_priors(dtype):
    torch.manual_seed(0)
    prior = DWPrior.for_kernel_size(3, "test")
    w = prior.sample(5).to(dtype)
    as_float = w.float()
    g = torch.Generator().manual_seed(1)
    got = prior.log_prob(w, num_samples=8, generator=torch.Generator().manual_seed(1))
    assert got.dtype == torch.float32
    assert torch.equal(got, prior.log_prob(as_float, num_samples=8, generator=g))
    assert torch.equal(prior.encode(w)[0], prior.encode(as_float)[0])
    assert prior.elbo(w).shape == (5,)
    with pytest.raises(TypeError, match="floating-point kernels"):
        prior.log_prob(torch.zeros(2, 3, 3, dtype=torch.int64))
