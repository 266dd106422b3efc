"""BayesConv2d: a convolution with a fully factorised Gaussian posterior over its weights (paper §3, §4.1).

q(w) = N(μ, σ²) per weight, with μ (``weight``) and log σ² (``log_sigma2``) as independent parameters
(the additive parameterisation of Molchanov et al. 2017: σ is not tied to μ). The bias stays a point
estimate, as in the paper's Bayesian networks (appendix H).

Also here: the functions that act on every Bayesian layer of a model — ``kl(model)`` and ``bayes_mode``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("lrt", "sample", "mean")
# Added to the output variance of the local reparameterisation before the square root: where an input
# patch is all zeros the variance is exactly 0 and sqrt would have an infinite derivative.
LRT_VAR_EPS = 1e-16


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total TF-style 'SAME' padding of one spatial dimension (output size = ceil(size / stride))."""
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class BayesConv2d(nn.Conv2d):
    """A Conv2d whose weight is a Gaussian random variable; a drop-in for the conv it replaces.

    Parameters: ``weight`` is the posterior mean μ, ``log_sigma2`` its log-variance (same shape), ``bias``
    a point estimate. ``prior`` is a weight-prior module (see ``dwp_hub.weight_priors`` and
    ``dwp_hub.dwp_bound``) giving ``kl()``, KL(q‖p) or an upper bound on it.

    Forward modes (attribute ``mode``; ``None`` means "lrt" in training and "mean" in eval):

    - ``"lrt"``: local reparameterisation (Kingma et al. 2015): output ~ N(conv(x, μ) + b, conv(x², σ²)),
      independently per output unit and example — the low-variance training estimator.
    - ``"sample"``: one weight sample w ~ q per forward call, shared by the whole batch (one ensemble member).
    - ``"mean"``: conv(x, μ) + b, the deterministic network; bit-identical to the conv it replaced.

    Stride, padding (numbers, 'same'/'valid', padding_mode other than zeros), dilation, groups and bias
    behave exactly as in ``nn.Conv2d``. ``same_pad=True`` gives timm's ``Conv2dSame`` behaviour: TF-style
    'SAME' zero padding computed from each input's size. Squaring commutes with every padding mode
    (zeros, reflect, replicate, circular all copy or zero values), so conv(x², σ²) sees exactly the padded
    x² that the mean path sees.

    ``init_log_sigma2`` (default −10, as in the paper's code) sets the initial log σ². Note that Adam moves a
    parameter by at most about its learning rate per step: from −10 with lr 1e-3, log σ² needs thousands of
    steps to reach values where σ matters, so the initial value (or a larger learning rate for
    ``log_sigma2``) is a real modelling choice, not a detail.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", same_pad: bool = False, prior: nn.Module | None = None,
                 init_log_sigma2: float = -10.0, device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        if same_pad and (padding_mode != "zeros" or self.padding not in (0, (0, 0))):
            raise ValueError("same_pad=True computes its own zero padding: use padding=0, padding_mode='zeros'")
        self.same_pad = same_pad
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, float(init_log_sigma2)))
        self.prior = prior
        self.mode: str | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, prior: nn.Module | None, init_log_sigma2: float = -10.0,
                  same_pad: bool = False) -> "BayesConv2d":
        """A Bayesian copy of `conv` whose μ *is* conv's weight Parameter (and bias), so ties survive."""
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode, same_pad=same_pad, prior=prior, device="meta")
        layer.weight = conv.weight
        layer.bias = conv.bias
        layer.log_sigma2 = nn.Parameter(torch.full_like(conv.weight, float(init_log_sigma2)))
        layer.train(conv.training)
        return layer

    @property
    def sigma2(self) -> torch.Tensor:
        return self.log_sigma2.exp()

    @property
    def num_kernels(self) -> int:
        return self.weight.shape[0] * self.weight.shape[1]

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.same_pad:
            (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
            ph = same_padding(x.shape[-2], kh, sh, dh)
            pw = same_padding(x.shape[-1], kw, sw, dw)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)
        return self._conv_forward(x, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.mode or ("lrt" if self.training else "mean")
        if mode == "mean":
            return self._conv(x, self.weight, self.bias)
        if mode == "lrt":
            mean = self._conv(x, self.weight, self.bias)
            var = self._conv(x * x, self.log_sigma2.exp(), None)
            return mean + (var + LRT_VAR_EPS).sqrt() * torch.randn_like(mean)
        if mode == "sample":
            w = self.weight + (0.5 * self.log_sigma2).exp() * torch.randn_like(self.weight)
            return self._conv(x, w, self.bias)
        raise ValueError(f"unknown BayesConv2d mode {mode!r}; expected one of {MODES} or None")

    def kl(self) -> torch.Tensor:
        """KL(q(w) ‖ p(w)) of this layer, or its upper bound (eq. 7) for a deep weight prior."""
        if self.prior is None:
            raise ValueError("this BayesConv2d has no prior; pass prior=... or use dwp_hub.bayesianize")
        return self.prior.kl(self.weight, self.log_sigma2)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", same_pad=True" if self.same_pad else "")


def bayes_layers(model: nn.Module) -> Iterator[tuple[str, BayesConv2d]]:
    """(name, layer) for every BayesConv2d in `model`."""
    for name, m in model.named_modules():
        if isinstance(m, BayesConv2d):
            yield name, m


def kl(model: nn.Module) -> torch.Tensor:
    """Σ over the Bayesian layers of `model` of KL(q‖p) (closed form) or its auxiliary bound (DWP, eq. 7).

    This is the term added to the data term in the negative ELBO (eq. 3 / eq. 8). Raises if `model` has no
    Bayesian layers, since a silent zero would turn variational inference into plain training.
    """
    terms = [layer.kl() for _, layer in bayes_layers(model)]
    if not terms:
        raise ValueError("model has no BayesConv2d layers; call dwp_hub.bayesianize(model, ...) first")
    return torch.stack(terms).sum()


@contextmanager
def bayes_mode(model: nn.Module, mode: str | None) -> Iterator[nn.Module]:
    """Temporarily set every Bayesian layer's mode ("lrt", "sample", "mean" or None = by train/eval)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES} or None")
    layers = [layer for _, layer in bayes_layers(model)]
    previous = [layer.mode for layer in layers]
    for layer in layers:
        layer.mode = mode
    try:
        yield model
    finally:
        for layer, old in zip(layers, previous):
            layer.mode = old
