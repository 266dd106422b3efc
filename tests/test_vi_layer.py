"""BayesConv2d: exact conv semantics in mean mode, and the local reparameterisation's output distribution."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import nn

from dwp_hub import BayesConv2d, NormalPrior, bayes_mode, kl
from dwp_hub.bayes_conv import same_padding

CONV_CONFIGS = {
    "plain": dict(in_channels=4, out_channels=6, kernel_size=3),
    "stride-pad-nobias": dict(in_channels=4, out_channels=6, kernel_size=5, stride=2, padding=2, bias=False),
    "same-string": dict(in_channels=4, out_channels=6, kernel_size=4, padding="same"),
    "valid-string": dict(in_channels=4, out_channels=6, kernel_size=3, padding="valid"),
    "reflect": dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="reflect"),
    "circular-same": dict(in_channels=4, out_channels=6, kernel_size=5, padding="same", padding_mode="circular"),
    "replicate": dict(in_channels=4, out_channels=6, kernel_size=3, padding=(2, 1), padding_mode="replicate"),
    "dilated": dict(in_channels=4, out_channels=6, kernel_size=3, dilation=2, padding=2),
    "groups": dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, padding=1),
    "depthwise": dict(in_channels=4, out_channels=4, kernel_size=7, groups=4, padding=3, stride=2),
    "non-square": dict(in_channels=4, out_channels=6, kernel_size=(1, 5), padding=(0, 2)),
}


def _bayes_copy(conv: nn.Conv2d, log_sigma2: float = -10.0) -> BayesConv2d:
    same = isinstance(conv, Conv2dSame)
    return BayesConv2d.from_conv(copy.deepcopy(conv), NormalPrior(), init_log_sigma2=log_sigma2, same_pad=same)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's, for same-string
@pytest.mark.parametrize("name", sorted(CONV_CONFIGS))
def test_mean_mode_is_bit_identical_to_the_conv(name):
    torch.manual_seed(0)
    conv = nn.Conv2d(**CONV_CONFIGS[name])
    layer = _bayes_copy(conv)
    x = torch.randn(2, 4, 11, 13)
    with bayes_mode(layer, "mean"):
        assert torch.equal(layer(x), conv(x))
    layer.eval()  # mode None: eval means "mean"
    assert torch.equal(layer(x), conv(x))


@pytest.mark.parametrize("size", [(11, 13), (16, 16), (7, 9)])
def test_timm_conv2d_same_keeps_dynamic_padding(size):
    torch.manual_seed(0)
    conv = Conv2dSame(3, 5, 5, stride=2, dilation=1)
    layer = _bayes_copy(conv)
    assert layer.same_pad
    x = torch.randn(2, 3, *size)
    with bayes_mode(layer, "mean"):
        out = layer(x)
    assert torch.equal(out, conv(x))
    assert out.shape[-2:] == (math.ceil(size[0] / 2), math.ceil(size[1] / 2))


def test_same_padding_matches_tf_definition():
    # TF 'SAME': output size ceil(n / s); total padding as small as possible to reach it
    for n in range(1, 20):
        for k in (1, 3, 4, 5, 7):
            for s in (1, 2, 3):
                for d in (1, 2):
                    p = same_padding(n, k, s, d)
                    assert (n + p - d * (k - 1) - 1) // s + 1 == math.ceil(n / s)
                    assert p == 0 or (n + p - 1 - d * (k - 1) - 1) // s + 1 < math.ceil(n / s)


def _explicit_samples(layer: BayesConv2d, x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n outputs of the layer's convolution of x, each with its own explicitly sampled weight w ~ q."""
    sigma = (0.5 * layer.log_sigma2).exp()
    w = layer.weight + sigma * torch.randn((n, *layer.weight.shape), generator=gen, dtype=x.dtype)
    return torch.func.vmap(lambda wi: layer._conv(x, wi, layer.bias)[0])(w)


@pytest.mark.parametrize("name", ["plain", "reflect", "groups", "circular-same", "depthwise", "stride-pad-nobias"])
def test_lrt_output_distribution_matches_explicit_weight_sampling(name):
    """LRT output mean/variance vs. convolutions with explicitly sampled weights, per output unit."""
    torch.manual_seed(1)
    conv = nn.Conv2d(**CONV_CONFIGS[name]).double()
    layer = _bayes_copy(conv, log_sigma2=-2.0)  # σ ≈ 0.37: the output variance is far from negligible
    with torch.no_grad():
        layer.log_sigma2.add_(torch.rand_like(layer.log_sigma2))  # and not the same for every weight
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    n = 3000
    with torch.no_grad(), bayes_mode(layer, "lrt"):
        lrt = layer(x.expand(n, -1, -1, -1))  # every example gets independent output noise
    with torch.no_grad():
        ref = _explicit_samples(layer, x, n, torch.Generator().manual_seed(2))
    # the exact moments, for reference
    mean = layer._conv(x, layer.weight, layer.bias)[0]
    var = layer._conv(x * x, layer.log_sigma2.exp(), None)[0]
    for samples in (lrt, ref):
        # sample means: z-scores of (n-sample mean − exact mean); max over ~300 units stays < 5 for a correct layer
        z = (samples.mean(0) - mean) / (var / n).sqrt()
        assert z.abs().max() < 5, z.abs().max()
        # sample variances: log(s²/σ²) has sd ≈ sqrt(2/(n−1)) ≈ 0.026; allow 5 sd
        log_ratio = (samples.var(0) / var).log()
        assert log_ratio.abs().max() < 5 * math.sqrt(2 / (n - 1)), log_ratio.abs().max()


def test_sample_mode_output_distribution_matches_the_moments():
    torch.manual_seed(3)
    layer = _bayes_copy(nn.Conv2d(**CONV_CONFIGS["groups"]).double(), log_sigma2=-2.0)
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    n = 1500
    with torch.no_grad(), bayes_mode(layer, "sample"):
        samples = torch.cat([layer(x) for _ in range(n)])
        mean = layer._conv(x, layer.weight, layer.bias)[0]
        var = layer._conv(x * x, layer.log_sigma2.exp(), None)[0]
    assert ((samples.mean(0) - mean) / (var / n).sqrt()).abs().max() < 5
    assert (samples.var(0) / var).log().abs().max() < 5 * math.sqrt(2 / (n - 1))


def test_sample_mode_draws_one_weight_per_forward():
    torch.manual_seed(0)
    layer = _bayes_copy(nn.Conv2d(**CONV_CONFIGS["plain"]), log_sigma2=-2.0)
    x = torch.randn(1, 4, 8, 8).expand(3, -1, -1, -1)
    with bayes_mode(layer, "sample"):
        a, b = layer(x), layer(x)
    assert torch.equal(a[0], a[1]) and torch.equal(a[1], a[2])  # one weight for the whole batch
    assert not torch.allclose(a, b)  # a new one for the next call
    with bayes_mode(layer, "lrt"):
        c = layer(x)
    assert not torch.allclose(c[0], c[1])  # LRT noise is per example
    assert layer.mode is None  # restored


def test_gradients_reach_mean_and_log_variance_in_lrt_mode():
    torch.manual_seed(0)
    layer = _bayes_copy(nn.Conv2d(**CONV_CONFIGS["plain"]), log_sigma2=-4.0)
    layer.train()
    x = torch.zeros(2, 4, 8, 8)
    x[:, :, 2:5, 2:5] = torch.randn(2, 4, 3, 3)  # zero patches: variance exactly 0 there
    (layer(x).square().sum() + kl(nn.Sequential(layer))).backward()
    for p in (layer.weight, layer.bias, layer.log_sigma2):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_from_conv_shares_the_weight_parameter_and_rejects_bad_modes():
    conv = nn.Conv2d(3, 4, 3)
    layer = BayesConv2d.from_conv(conv, NormalPrior(), init_log_sigma2=-7.0)
    assert layer.weight is conv.weight and layer.bias is conv.bias
    assert torch.equal(layer.log_sigma2, torch.full_like(conv.weight, -7.0))
    assert layer.log_sigma2.device == conv.weight.device and layer.log_sigma2.requires_grad
    layer.mode = "bogus"
    with pytest.raises(ValueError, match="unknown BayesConv2d mode"):
        layer(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="unknown mode"):
        with bayes_mode(layer, "bogus"):
            pass
    with pytest.raises(ValueError, match="no BayesConv2d"):
        kl(nn.Sequential(nn.Conv2d(1, 1, 3)))
    with pytest.raises(ValueError, match="no prior"):
        BayesConv2d(1, 1, 3).kl()


def test_explicit_conv_matches_functional_reference():
    """The layer's own conv path against F.conv2d on an explicitly padded input (reflect padding)."""
    torch.manual_seed(0)
    layer = _bayes_copy(nn.Conv2d(**CONV_CONFIGS["reflect"]))
    x = torch.randn(2, 4, 7, 7)
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), layer.weight, layer.bias)
    torch.testing.assert_close(layer._conv(x, layer.weight, layer.bias), ref)
