"""The decoder mean μ_φ(z) of eq. 6, evaluated fast for sampling millions of kernels (no autograd, no variance).

Initialising a network decodes one z per kernel, ~1.26M of them for a resnet50, so this is where sampling
spends its time. ``DecoderMean(decoder)(z)`` computes the same function as ``decoder(z)[0]`` (up to float
rounding, < 1e-6) with changes of evaluation order, none of the model:

- activations stay channels-last, so a 1x1 convolution is one matrix product over all pixels of a chunk,
  and a transposed convolution applied to a 1x1 input is one matrix product from the input
  channels to every output pixel; the plan tracks each layer's spatial size, so this is decided once;
- ELU is computed from exp, not PyTorch's CPU ELU, which goes through the unvectorised expm1 (~10x slower);
- an ELU followed by a matrix product is computed shifted, ELU(x) + α = relu(x) + α·exp(min(x, 0)), and the
  product's bias absorbs the shift (b − α·Wᵀ1): one pass over the activations fewer;
- matrix products and ELUs write into buffers kept between calls: with narrow decoders, allocating fresh
  activations for every chunk can cost as much as the arithmetic (fresh pages fault in whenever the
  allocator has handed memory back; decoding the same 1.26M kernels took 1.1-3x longer that way).

Layers it has no faster form for (a transposed convolution on a 3x3 input, say) run as the module itself,
and so does a whole DenseDecoder (its layers are matrix products already).
The variance head is never evaluated.
"""

from __future__ import annotations

import torch
from torch import nn

from .architectures import DenseDecoder, KernelDecoder


def _pointwise(conv: nn.Conv2d) -> bool:
    return (conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
            and conv.dilation == (1, 1) and conv.groups == 1)


def _dense_from_point(conv: nn.ConvTranspose2d) -> bool:
    """True if `conv` maps a 1x1 input to a kh x kw output that is a plain matrix product of the input."""
    return (conv.stride == (1, 1) and conv.padding == (0, 0) and conv.output_padding == (0, 0)
            and conv.dilation == (1, 1) and conv.groups == 1)


class _Workspace:
    """Flat float buffers reused across chunks; `take(i, shape)` is a contiguous view of buffer i."""

    def __init__(self) -> None:
        self.buffers: dict[int, torch.Tensor] = {}

    def take(self, i: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        numel = 1
        for s in shape:
            numel *= s
        buf = self.buffers.get(i)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffers[i] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)


class _MatMul:
    """Channels-last (n, H, W, C_in) -> (n, H', W', C_out) as rows @ matrix + bias."""

    def __init__(self, matrix: torch.Tensor, bias: torch.Tensor, out_hw: tuple[int, int] | None) -> None:
        self.matrix, self.bias = matrix, bias  # (C_in, cols), (cols,)
        self.out_hw = out_hw  # None: keep the input's H, W (1x1 conv); else every output pixel from one input

    def absorb_shift(self, shift: float) -> None:
        """Take an input that is `shift` too large everywhere: W(x' − s·1) + b = Wx' + (b − s·Wᵀ1)."""
        self.bias = self.bias - shift * self.matrix.sum(0)

    def __call__(self, h: torch.Tensor, ws: _Workspace, slot: int) -> torch.Tensor:
        rows = h.reshape(-1, self.matrix.shape[0])
        out = torch.addmm(self.bias, rows, self.matrix, out=ws.take(slot, (rows.shape[0], self.matrix.shape[1]), h))
        if self.out_hw is None:
            return out.view(*h.shape[:3], -1)
        return out.view(h.shape[0], *self.out_hw, -1)


class _ELU:
    """ELU in place as relu(h) + α·exp(min(h, 0)) − α; `shifted` leaves out the − α for the next step to absorb."""

    def __init__(self, alpha: float, shifted: bool) -> None:
        self.alpha, self.shifted = alpha, shifted

    def __call__(self, h: torch.Tensor, ws: _Workspace, slot: int) -> torch.Tensor:
        neg = torch.clamp(h, max=0.0, out=ws.take(slot, tuple(h.shape), h)).exp_()
        if self.alpha != 1.0:
            neg.mul_(self.alpha)
        if not self.shifted:
            neg.sub_(self.alpha)
        return h.clamp_(min=0.0).add_(neg)


class _Module:
    """Fallback: run `module` on NCHW and return channels-last."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, h: torch.Tensor, ws: _Workspace, slot: int) -> torch.Tensor:
        return self.module(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()


Step = _MatMul | _ELU | _Module


def _plan_step(module: nn.Module, hw: tuple[int, int], channels: int) -> tuple[Step, tuple[int, int], int]:
    """The fastest exact step for `module` on an (n, *hw, channels) activation, and its output's hw and channels."""
    if isinstance(module, nn.ELU):
        return _ELU(module.alpha, shifted=False), hw, channels
    if isinstance(module, nn.Conv2d) and _pointwise(module):
        weight = module.weight
        matrix = weight[:, :, 0, 0].t().contiguous()  # (C_in, C_out)
        bias = module.bias.clone() if module.bias is not None else weight.new_zeros(module.out_channels)
        return _MatMul(matrix, bias, None), hw, module.out_channels
    if isinstance(module, nn.ConvTranspose2d) and hw == (1, 1) and _dense_from_point(module):
        weight = module.weight
        kh, kw = module.kernel_size
        co = module.out_channels
        # weight (C_in, C_out, kh, kw) -> (C_in, kh·kw·C_out): output pixel-major, channels last.
        matrix = weight.permute(0, 2, 3, 1).reshape(module.in_channels, kh * kw * co).contiguous()
        bias = module.bias.repeat(kh * kw) if module.bias is not None else weight.new_zeros(kh * kw * co)
        return _MatMul(matrix, bias, (kh, kw)), (kh, kw), co
    ref = next(module.parameters(), None)
    probe = module(torch.zeros(1, channels, *hw, dtype=ref.dtype if ref is not None else None,
                               device=ref.device if ref is not None else None))
    return _Module(module), tuple(probe.shape[2:]), probe.shape[1]


class DecoderMean:
    """μ_φ(z) of one KernelDecoder as a plan of steps (a DenseDecoder runs as itself); build once per sampling
    run, then call per chunk.

    The plan holds copies of the decoder's weights at construction time (build a new one after the decoder
    changes) and buffers reused from call to call (one DecoderMean per thread).
    """

    def __init__(self, decoder: KernelDecoder | DenseDecoder) -> None:
        self.dense = decoder if isinstance(decoder, DenseDecoder) else None
        if self.dense is not None:  # a few matrix products already: run the module itself
            return
        with torch.no_grad():
            modules = [*decoder.features, decoder.heads.fc_mu]
            first = modules[0]
            channels = first.in_channels if isinstance(first, (nn.Conv2d, nn.ConvTranspose2d)) else None
            if channels is None:
                raise TypeError(f"DecoderMean expects a decoder that starts with a convolution, got {first}")
            hw: tuple[int, int] = (1, 1)
            self.steps: list[Step] = []
            for module in modules:
                step, hw, channels = _plan_step(module, hw, channels)
                prev = self.steps[-1] if self.steps else None
                if isinstance(step, _MatMul) and isinstance(prev, _ELU):
                    prev.shifted = True
                    step.absorb_shift(prev.alpha)
                self.steps.append(step)
            self.out_hw = hw
        self._workspace = _Workspace()

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(n, z_dim) latents -> (n, k, k) decoder means, written into `out` if given ((n, k, k), any dtype/device)."""
        if self.dense is not None:
            mu = self.dense(z)[0]
            return mu if out is None else out.copy_(mu)
        if out is not None and (out.dtype != z.dtype or out.device != z.device or not out.is_contiguous()):
            return out.copy_(self(z))
        if out is None:
            out = torch.empty(z.shape[0], *self.out_hw, dtype=z.dtype, device=z.device)
        h = z[:, None, None, :]
        *body, head = self.steps
        slot = 0
        for step in body:
            if isinstance(step, _ELU):
                h = step(h, self._workspace, 2)  # scratch buffer
            else:
                h = step(h, self._workspace, slot)  # matrix products alternate between buffers 0 and 1
                slot = 1 - slot
        if isinstance(head, _MatMul):
            rows = h.reshape(-1, head.matrix.shape[0])
            torch.addmm(head.bias, rows, head.matrix, out=out.view(rows.shape[0], 1))
        else:
            out.copy_(head(h, self._workspace, slot)[..., 0])
        return out
