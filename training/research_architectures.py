"""Kernel-VAE architectures studied in training but not shipped by the runtime, registered when imported.

``dwp_hub`` knows only the architectures of the priors it ships or documents (``dwp_hub.architectures``). The
code that fits or loads the priors below (``training/experiments/dense_vae.py``, the experiments' prior sets,
the benchmarks) imports this module first, which adds them to the registry:

- ``dwp-shell-KxK``: ``dwp-dense-KxK`` whose decoder means all lie at one fixed norm (``ShellDecoder``), an
  ablation.
- ``dwp-vae8-5x5`` and ``dwp-vae16-5x5``: the paper's convolutional 5x5 VAE with every layer 8/64 and 16/64 as wide,
  to see whether its gain over the dense VAE in Fig. 2 survives at a cost nearer the dense one's.
"""

from __future__ import annotations

import torch

from dwp_hub.architectures import (Architecture, DenseDecoder, DenseEncoder, _decoder_5x5, _encoder_5x5,
                                   register_architecture)

# (kernel size, default latent size), as for the runtime's families
KERNEL_SIZES = ((7, 2), (5, 4), (3, 2))


class ShellDecoder(DenseDecoder):
    """A DenseDecoder whose mean lies on a sphere of a fixed radius: μ(z) = radius·h(z)/‖h(z)‖.

    A VAE fitted to kernels of many norms maps z = 0 to a near-zero kernel with its smallest variance, so the
    prior is densest at the zero kernel and a KL-dominated posterior shrinks its kernels towards it. The
    authors' 5x5 prior decodes z = 0 to a kernel of norm 0.08 and every z to a norm near its kernels'; this
    decoder holds that by construction and leaves the spread of norms to the decoder's variance. ``radius`` is
    a buffer, set before fitting (to the training kernels' median norm) and saved with the weights: learnt
    with the rest, it shrinks to zero and the latent goes unused. An ablation, not shipped: with our 5x5
    kernels DWP-VI keeps the layer's kernels at the radius and loses 0.09-0.18 in accuracy.
    """

    def __init__(self, kernel_size: int, width: int, z_dim: int) -> None:
        super().__init__(kernel_size, width, z_dim)
        self.register_buffer("radius", torch.tensor(1.0))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw_var = super().forward(z)
        return self.radius * mu / mu.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None], raw_var


def _shell(k: int, z: int) -> Architecture:
    return Architecture(f"dwp-shell-{k}x{k}", k, z, lambda z_dim: DenseEncoder(k, 64, z_dim),
                        lambda z_dim: ShellDecoder(k, 64, z_dim),
                        f"Research, {k}x{k}: dwp-dense-{k}x{k}, every decoder mean at one fixed norm (ShellDecoder).")


RESEARCH_ARCHITECTURES: tuple[Architecture, ...] = tuple(
    register_architecture(_shell(k, z)) for k, z in KERNEL_SIZES)


def _narrow_conv_5x5(w: int) -> Architecture:
    """``dwp-vae-5x5`` (appendix H.1) with its width 64 scaled to `w`."""
    return Architecture(f"dwp-vae{w}-5x5", 5, 4, lambda z_dim: _encoder_5x5(z_dim, w),
                        lambda z_dim: _decoder_5x5(z_dim, w), f"Research, 5x5: dwp-vae-5x5 at width {w}/64.")


NARROW_CONV_ARCHITECTURES: tuple[Architecture, ...] = tuple(register_architecture(_narrow_conv_5x5(w)) for w in (8, 16))
