"""The decoder mean μ_φ(z) of eq. 6, evaluated fast for sampling millions of kernels (no autograd, no variance).

Initialising a network decodes one z per kernel, ~1.2M of them for a resnet50, so this is where sampling
spends its time. ``DecoderMean(decoder)(z)`` computes the same function as ``decoder(z)[0]`` (up to float
rounding, ~1e-7) with three changes of evaluation order, none of the model:

- activations stay channels-last, so a 1x1 convolution is one matrix product over all pixels of a chunk;
- a convolution (or transposed convolution) applied to a 1x1 input is one matrix product from the input
  channels to every output pixel, instead of a convolution call with its per-call overhead;
- ELU is computed as relu(x) + α·(exp(min(x, 0)) − 1): PyTorch's CPU ELU goes through expm1, which is
  not vectorised and ~10x slower than exp; the two differ by float rounding only.

Layers it has no faster form for (a transposed convolution on a 3x3 input, say) run as the module itself.
The variance head is never evaluated.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .architectures import KernelDecoder

Step = Callable[[torch.Tensor], torch.Tensor]


def _elu_(h: torch.Tensor, alpha: float) -> torch.Tensor:
    """ELU in place: relu(h) + alpha * (exp(min(h, 0)) - 1)."""
    neg = torch.clamp(h, max=0.0).exp_().sub_(1.0)
    if alpha != 1.0:
        neg.mul_(alpha)
    return h.clamp_(min=0.0).add_(neg)


def _pointwise(conv: nn.Conv2d) -> bool:
    return (conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
            and conv.dilation == (1, 1) and conv.groups == 1)


def _dense_from_point(conv: nn.ConvTranspose2d) -> bool:
    """True if `conv` maps a 1x1 input to a kh x kw output that is a plain matrix product of the input."""
    return (conv.stride == (1, 1) and conv.padding == (0, 0) and conv.output_padding == (0, 0)
            and conv.dilation == (1, 1) and conv.groups == 1)


def _matmul_step(matrix: torch.Tensor, bias: torch.Tensor | None, out_shape: Callable[[torch.Tensor], tuple]) -> Step:
    """h (n, H, W, C) -> (rows @ matrix + bias) reshaped by `out_shape(h)`."""

    def step(h: torch.Tensor) -> torch.Tensor:
        rows = h.reshape(-1, matrix.shape[0])
        out = torch.addmm(bias, rows, matrix) if bias is not None else rows @ matrix
        return out.view(out_shape(h))

    return step


def _module_step(module: nn.Module) -> Step:
    """Fallback: run `module` on NCHW and return channels-last."""

    def step(h: torch.Tensor) -> torch.Tensor:
        return module(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()

    return step


def _layer_step(module: nn.Module) -> Step:
    """The fastest exact step for `module` on a channels-last activation (n, H, W, C)."""
    if isinstance(module, nn.ELU):
        return lambda h, a=module.alpha: _elu_(h, a)
    if isinstance(module, nn.Conv2d) and _pointwise(module):
        matrix = module.weight[:, :, 0, 0].t().contiguous()  # (C_in, C_out)
        co = module.out_channels
        return _matmul_step(matrix, module.bias, lambda h: (*h.shape[:3], co))
    if isinstance(module, nn.ConvTranspose2d) and _dense_from_point(module):
        kh, kw = module.kernel_size
        co = module.out_channels
        # weight (C_in, C_out, kh, kw) -> (C_in, kh·kw·C_out): output pixel-major, channels last.
        matrix = module.weight.permute(0, 2, 3, 1).reshape(module.in_channels, kh * kw * co).contiguous()
        bias = module.bias.repeat(kh * kw) if module.bias is not None else None
        dense, general = _matmul_step(matrix, bias, lambda h: (h.shape[0], kh, kw, co)), _module_step(module)
        return lambda h: dense(h) if h.shape[1:3] == (1, 1) else general(h)
    return _module_step(module)


class DecoderMean:
    """μ_φ(z) of one KernelDecoder as a list of prepared steps; build once per sampling call, then call per chunk.

    The prepared matrices are copies of the decoder's weights at construction time: build a new one after
    the decoder changes.
    """

    def __init__(self, decoder: KernelDecoder) -> None:
        with torch.no_grad():
            modules = [*decoder.features, decoder.heads.fc_mu]
            self.steps: list[Step] = [_layer_step(m) for m in modules]
            self._copy_input = isinstance(modules[0], nn.ELU)  # in-place ELU must not write into z

    @torch.no_grad()
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """(n, z_dim) latents -> (n, k, k) decoder means."""
        h = z[:, None, None, :]
        if self._copy_input:
            h = h.clone()
        for step in self.steps:
            h = step(h)
        return h[..., 0]
