"""init_from_prior on real timm models with the bundled notMNIST priors: what changes, what does not, and why."""

import copy
import math

import pytest
import timm
import torch
from timm.layers import Conv2dSame, StdConv2d
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from dwp_hub import DWPrior, PriorNotFoundError, init_from_prior
from dwp_hub.init import DEFAULT_RESCALE
from dwp_hub.prior_spec import domain_priors, resolve_priors
from dwp_hub.networks import save_checkpoint

# Few-kernel models run in full here; resnet18 (1.2M kernels) runs once, end to end, in test_cli_init.py.
SMALL_MODELS = ["convnext_atto", "efficientnet_b0", "mobilenetv3_small_100"]


@pytest.fixture(scope="module")
def priors():
    return {k: DWPrior.from_pretrained(f"dwp/notmnist-{k}x{k}") for k in (7, 5, 3)}


def fresh(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).eval()


def xavier_like(w: torch.Tensor) -> torch.Tensor:
    """Xavier-uniform kernels of w's shape, brought to w's RMS so that only the kernels' shapes differ.

    (Unscaled Xavier kernels of wide layers are tiny, and kernels near zero are likely under any of these
    priors: comparing at equal RMS asks whether the prior prefers its own kernels' shapes.)
    """
    x = nn.init.xavier_uniform_(torch.empty_like(w))
    return x * (w.pow(2).mean().sqrt() / x.pow(2).mean().sqrt())


def mean_elbo(prior: DWPrior, kernels: torch.Tensor, n: int = 128) -> float:
    """Mean ELBO (eq. 4) of up to n kernels, with a fixed seed for the z draws."""
    torch.manual_seed(0)
    with torch.no_grad():
        return prior.elbo(kernels.reshape(-1, prior.kernel_size, prior.kernel_size)[:n]).mean().item()


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_matching_layers_get_prior_kernels_and_the_rest_stays_bit_identical(name, priors):
    model = fresh(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = init_from_prior(model, "notmnist", generator=torch.Generator().manual_seed(0))
    assert report.layers and report.rescale == DEFAULT_RESCALE
    modules = dict(model.named_modules())
    changed = set()
    for r in report.layers:
        w = modules[r.name].weight.detach()
        key = f"{r.name}.weight"
        changed.add(key)
        assert r.kernels == w.shape[0] * w.shape[1] and r.kernel_size == w.shape[-1]
        assert not torch.equal(w, before[key])
        assert math.isclose(r.rms_after, r.rms_before, rel_tol=1e-4)  # rescale="match"
        prior = priors[r.kernel_size]
        # Undo the layer's scale: what is left are the prior's own samples. They score at least as high as
        # the prior's held-out source kernels, and higher than Xavier kernels of the same layer and RMS.
        raw = w / r.scale
        sampled = mean_elbo(prior, raw)
        assert sampled > prior.provenance["heldout_elbo"], r.name
        assert sampled > mean_elbo(prior, xavier_like(raw)), r.name
    for key, value in model.state_dict().items():
        if key not in changed:
            assert torch.equal(value, before[key]), key
    assert {s.name for s in report.skipped} == {
        n for n, m in modules.items() if isinstance(m, nn.Conv2d) and m.kernel_size[0] not in (3, 5, 7)}


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_saved_checkpoint_reloads_through_timm_with_identical_outputs(name, priors, tmp_path):
    model = fresh(name)
    init_from_prior(model, list(priors.values()), generator=torch.Generator().manual_seed(1))
    save_checkpoint(model, name, tmp_path, {"dwp_init": {"note": "test"}})
    loaded = timm.create_model(name, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(tmp_path / "model.safetensors"))).eval()
    from_dir = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(loaded(x), expected)
        assert torch.equal(from_dir(x), expected)


def test_same_seed_gives_the_same_weights_and_another_seed_other_ones(priors):
    runs = []
    for seed in (0, 0, 1):
        model = fresh("mobilenetv3_small_100")
        init_from_prior(model, priors, generator=torch.Generator().manual_seed(seed))
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.equal(runs[0]["conv_stem.weight"], runs[2]["conv_stem.weight"])


def test_each_kernel_is_the_decoder_mean_of_its_own_z(priors):
    """rescale="none": the weight is exactly prior.sample(n) for the same generator, one z per kernel."""
    conv = nn.Conv2d(6, 10, 3, groups=2)
    report = init_from_prior(nn.Sequential(conv), {3: priors[3]}, rescale="none",
                             generator=torch.Generator().manual_seed(5), chunk_size=7)
    expected = priors[3].sample(30, generator=torch.Generator().manual_seed(5))
    assert report.layers[0].scale == 1.0 and report.layers[0].kernels == 30
    torch.testing.assert_close(conv.weight.detach().reshape(30, 3, 3), expected, rtol=0, atol=1e-6)
    assert len(torch.unique(expected.reshape(30, -1), dim=0)) == 30


def test_noise_draws_each_kernel_from_the_decoder_as_sample_does(priors):
    """noise=True: exactly prior.sample(n, noise=True) for the same generator, whatever the chunk size."""
    conv = nn.Conv2d(6, 10, 3, groups=2)
    init_from_prior(nn.Sequential(conv), {3: priors[3]}, rescale="none", noise=True,
                    generator=torch.Generator().manual_seed(5), chunk_size=7)
    expected = priors[3].sample(30, generator=torch.Generator().manual_seed(5), noise=True)
    torch.testing.assert_close(conv.weight.detach().reshape(30, 3, 3), expected, rtol=0, atol=1e-6)
    means = priors[3].sample(30, generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(expected, means)


def test_fan_in_gives_the_kaiming_scale(priors):
    convs = [nn.Conv2d(8, 16, 3), nn.Conv2d(16, 16, 3, groups=16), nn.Conv2d(3, 8, 7)]
    report = init_from_prior(nn.Sequential(*convs), priors, rescale="fan_in")
    for conv, r in zip(convs, report.layers):
        fan_in = conv.weight[0].numel()
        assert math.isclose(r.rms_after, math.sqrt(2.0 / fan_in), rel_tol=1e-4)


def test_weight_standardised_depthwise_same_padding_and_unwritable_convs(priors):
    model = nn.Sequential(StdConv2d(3, 8, 3), Conv2dSame(8, 8, 5, groups=8), nn.Conv2d(8, 8, (1, 3)), nn.Conv2d(8, 4, 1),
                          weight_norm(nn.Conv2d(4, 4, 3)), nn.LazyConv2d(4, 3))
    report = init_from_prior(model, priors)
    notes = {r.name: r.note for r in report.layers}
    assert "StdConv2d standardises" in notes["0"] and notes["1"] == "depthwise"
    reasons = {s.name: s.reason for s in report.skipped}
    assert reasons["2"] == "no prior for 1x3 kernels" and reasons["3"] == "no prior for 1x1 kernels"
    assert "parametrised" in reasons["4"] and "lazy" in reasons["5"] and len(reasons) == 4


def test_channels_last_weights_get_the_same_kernels(priors):
    a = nn.Conv2d(4, 8, 3)
    b = copy.deepcopy(a).to(memory_format=torch.channels_last)
    for conv in (a, b):
        init_from_prior(conv, {3: priors[3]}, generator=torch.Generator().manual_seed(2))
    assert b.weight.is_contiguous(memory_format=torch.channels_last)
    # Same kernels and scale; the layer RMS is summed in another memory order, hence float rounding only.
    torch.testing.assert_close(a.weight, b.weight.contiguous(), rtol=1e-6, atol=0)


def test_prior_forms_resolve_to_one_prior_per_kernel_size(priors, tmp_path):
    assert domain_priors("notmnist") == ["dwp/notmnist-7x7", "dwp/notmnist-5x5", "dwp/notmnist-3x3"]
    assert domain_priors("no-such-domain") == []
    table = resolve_priors(["notmnist-7x7", "dwp/notmnist-3x3"])
    assert {k: e.label for k, e in table.items()} == {7: "notmnist-7x7", 3: "dwp/notmnist-3x3"}
    assert {k: e.source.origin for k, e in table.items()} == {7: "bundled", 3: "bundled"}
    folder = priors[5].save_pretrained(tmp_path / "mine-5x5")
    assert resolve_priors({5: str(folder)})[5].label == str(folder)
    assert resolve_priors(priors[3])[3].prior is priors[3]
    baselines = resolve_priors({7: "gaussian:dwp/notmnist-7x7", 3: "normal"})
    assert type(baselines[7].prior).__name__ == "MultivariateGaussianPrior" and baselines[3].label == "normal"
    assert resolve_priors("normal")[None].label == "normal"
    with pytest.raises(ValueError, match="priors\\[5\\] is dwp/notmnist-3x3 \\(3x3\\), not a prior over 5x5"):
        resolve_priors({5: "dwp/notmnist-3x3"})
    with pytest.raises(ValueError, match="two priors for 5x5 kernels"):
        resolve_priors(["notmnist", str(tmp_path / "mine-5x5"), "dwp/notmnist-3x3"])
    with pytest.raises(PriorNotFoundError):
        resolve_priors("dwp/no-such-prior-3x3")


def test_errors_for_bad_arguments_and_models_without_matching_convs(priors):
    with pytest.raises(ValueError, match="no convolution of Sequential matches a prior: its kernel sizes are 1x1"):
        init_from_prior(nn.Sequential(nn.Conv2d(3, 4, 1)), priors)
    with pytest.raises(ValueError, match="rescale must be one of"):
        init_from_prior(nn.Conv2d(3, 4, 3), priors, rescale="xavier")
    model = nn.Conv2d(3, 4, 3)
    before = model.weight.detach().clone()
    with pytest.raises(ValueError, match="the priors cover 7x7"):
        init_from_prior(model, {7: priors[7]})
    assert torch.equal(model.weight, before)
