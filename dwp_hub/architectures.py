"""Encoder r(z|w) and decoder p(w|z) networks of the kernel VAEs, and the registry of named architectures.

A prior folder names its architecture (``config.json``); the name is looked up here when the folder is read
or a prior is built. The runtime registers the architectures of the priors it ships or documents:

- ``dwp-vae-KxK`` (K = 7, 5, 3), the paper's convolutional VAEs. The 7x7 and 5x5 networks are those of the
  paper's appendix H.1 (Table 2 gives their parameter counts: 56,004 / 56,674 for 7x7 and 260,040 / 304,194
  for 5x5). Every network ends in two 1x1 convolutions, one for the mean and one for the (unconstrained)
  variance of a diagonal Gaussian.
- ``dwp-dense-KxK`` and ``dwp-dense32-KxK``, fully connected VAEs of width 64 and 32 (ours).

Other architectures (research variants) are added with ``register_architecture`` by the code that fits or
loads them, before it does; a folder naming an architecture nobody registered is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .elu import ELU


class GaussianHeads(nn.Module):
    """Two 1x1 convolutions giving the mean and the raw (pre-softplus) variance."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fc_mu = nn.Conv2d(in_channels, out_channels, 1)
        self.fc_var = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc_mu(h), self.fc_var(h)


class KernelEncoder(nn.Module):
    """r(z|w): (n, 1, k, k) kernels -> mean and raw variance of z, each (n, z_dim)."""

    def __init__(self, features: nn.Sequential, width: int, z_dim: int) -> None:
        super().__init__()
        self.features = features
        self.heads = GaussianHeads(width, z_dim)

    def forward(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw_var = self.heads(self.features(w))
        return mu.flatten(1), raw_var.flatten(1)


class KernelDecoder(nn.Module):
    """p(w|z): (n, z_dim) latents -> mean and raw variance of w, each (n, k, k)."""

    def __init__(self, features: nn.Sequential, width: int) -> None:
        super().__init__()
        self.features = features
        self.heads = GaussianHeads(width, 1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw_var = self.heads(self.features(z[:, :, None, None]))
        return mu[:, 0], raw_var[:, 0]


class DenseEncoder(nn.Module):
    """r(z|w) as a fully connected network on the flattened kernel: (n, 1, k, k) -> mean and raw variance (n, z_dim).

    Two hidden ELU layers of `width`, one linear layer for both heads (mean and raw variance side by side).
    """

    def __init__(self, kernel_size: int, width: int, z_dim: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(1), nn.Linear(kernel_size * kernel_size, width), ELU(),
                                      nn.Linear(width, width), ELU())
        self.heads = nn.Linear(width, 2 * z_dim)

    def forward(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw_var = self.heads(self.features(w)).chunk(2, dim=1)
        return mu, raw_var


class DenseDecoder(nn.Module):
    """p(w|z) as a fully connected network: (n, z_dim) latents -> mean and raw variance of w, each (n, k, k)."""

    def __init__(self, kernel_size: int, width: int, z_dim: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.features = nn.Sequential(nn.Linear(z_dim, width), ELU(), nn.Linear(width, width), ELU())
        self.heads = nn.Linear(width, 2 * kernel_size * kernel_size)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.kernel_size
        mu, raw_var = self.heads(self.features(z)).chunk(2, dim=1)
        return mu.reshape(-1, k, k), raw_var.reshape(-1, k, k)


def _dense(kernel_size: int, width: int) -> tuple[Callable[[int], DenseEncoder], Callable[[int], DenseDecoder]]:
    return (lambda z_dim: DenseEncoder(kernel_size, width, z_dim)), (lambda z_dim: DenseDecoder(kernel_size, width, z_dim))


def _encoder_7x7(z_dim: int) -> KernelEncoder:
    features = nn.Sequential(
        nn.Conv2d(1, 32, 3), ELU(),  # 7 -> 5
        nn.Conv2d(32, 64, 3), ELU(),  # 5 -> 3
        nn.Conv2d(64, 64, 3), ELU(),  # 3 -> 1
    )
    return KernelEncoder(features, 64, z_dim)


def _decoder_7x7(z_dim: int) -> KernelDecoder:
    features = nn.Sequential(
        nn.ConvTranspose2d(z_dim, 64, 3), ELU(),  # 1 -> 3
        nn.ConvTranspose2d(64, 64, 3), ELU(),  # 3 -> 5
        nn.ConvTranspose2d(64, 32, 3), ELU(),  # 5 -> 7
    )
    return KernelDecoder(features, 32)


def _encoder_5x5(z_dim: int, w: int = 64) -> KernelEncoder:
    """Appendix H.1's 5x5 encoder at its width `w` = 64 (the training tree registers narrower ones)."""
    features = nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1), ELU(),  # 5 -> 5
        nn.Conv2d(w, w, 3, padding=1), ELU(),  # 5 -> 5
        nn.Conv2d(w, 2 * w, 3), ELU(),  # 5 -> 3
        nn.Conv2d(2 * w, 2 * w, 3), ELU(),  # 3 -> 1
    )
    return KernelEncoder(features, 2 * w, z_dim)


def _decoder_5x5(z_dim: int, w: int = 64) -> KernelDecoder:
    """Appendix H.1's 5x5 decoder at its width `w` = 64."""
    features = nn.Sequential(
        nn.Conv2d(z_dim, 2 * w, 1), ELU(),  # 1 -> 1
        nn.ConvTranspose2d(2 * w, 2 * w, 3), ELU(),  # 1 -> 3
        nn.ConvTranspose2d(2 * w, 2 * w, 3), ELU(),  # 3 -> 5
        nn.Conv2d(2 * w, w, 1), ELU(),  # 5 -> 5
    )
    return KernelDecoder(features, w)


def _encoder_3x3(z_dim: int) -> KernelEncoder:
    features = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), ELU(),  # 3 -> 3
        nn.Conv2d(32, 64, 3, padding=1), ELU(),  # 3 -> 3
        nn.Conv2d(64, 64, 3), ELU(),  # 3 -> 1
    )
    return KernelEncoder(features, 64, z_dim)


def _decoder_3x3(z_dim: int) -> KernelDecoder:
    features = nn.Sequential(
        nn.Conv2d(z_dim, 32, 1), ELU(),  # 1 -> 1
        nn.ConvTranspose2d(32, 16, 3), ELU(),  # 1 -> 3
    )
    return KernelDecoder(features, 16)


@dataclass(frozen=True)
class Architecture:
    """A named encoder/decoder pair for one kernel size, with its default latent size.

    ``encoder(z_dim)`` builds r(z|w): (n, 1, k, k) kernels -> mean and raw (pre-softplus) variance of z, each
    (n, z_dim); ``decoder(z_dim)`` builds p(w|z): (n, z_dim) -> mean and raw variance of w, each (n, k, k).
    """

    name: str
    kernel_size: int
    default_z_dim: int
    encoder: Callable[[int], nn.Module]
    decoder: Callable[[int], nn.Module]
    note: str


# The registry: name -> Architecture. Read it through get_architecture, extend it through register_architecture.
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "dwp-vae-7x7", 7, 2, _encoder_7x7, _decoder_7x7,
            "Appendix H.1, 7x7: three valid 3x3 convs 32-64-64 / three transposed convs 64-64-32, ELU.",
        ),
        Architecture(
            "dwp-vae-5x5", 5, 4, _encoder_5x5, _decoder_5x5,
            "Appendix H.1, 5x5: convs 64-64(padded)-128-128 / 1x1 128, transposed 128-128, 1x1 64, ELU.",
        ),
        Architecture(
            "dwp-vae-3x3", 3, 2, _encoder_3x3, _decoder_3x3,
            # A 3x3 kernel has 9 numbers. Encoder: the 5x5 design scaled down by one 3x3 stage (two padded
            # convs give every unit the whole kernel before the last valid conv collapses it to 1x1), widths
            # halved. Decoder: one 1 -> 3 transposed conv between a 1x1 conv and the heads, kept narrow
            # because initialising a network decodes one z per kernel (1.26M for a resnet50): ~4.8k
            # multiply-adds and 176 exps per kernel, against ~56k and 928 for a 1x1 64, transposed 64, 1x1 32
            # mirror of the encoder, which fitted the bundled kernel set no better (held-out IWAE 19.37 nats
            # for both). z_dim=2 as for 7x7 keeps the latent plottable (paper Fig. 6).
            "Ours, 3x3: convs 32-64(padded)-64 / 1x1 32, transposed 16, ELU (see source comment).",
        ),
        # Dense VAEs (ours, not the paper's): two hidden layers of 64 on the flattened kernel, ELU. Encoder and
        # decoder forward cost 14k multiply-adds per 5x5 kernel against 3.4M in dwp-vae-5x5 (7x7: 18k / 1.0M;
        # 3x3: 10k / 211k), and that pass is what the exact bound (eq. 7) spends its time on. Not the default
        # of any kernel size; a recipe or caller chooses them by name.
        *(Architecture(f"dwp-dense-{k}x{k}", k, z, *_dense(k, 64),
                       f"Ours, {k}x{k}: fully connected, two hidden ELU layers of 64, both directions.")
          for k, z in ((7, 2), (5, 4), (3, 2))),
        # The same at width 32: 3.3k multiply-adds per 3x3 kernel. Over resnet18's 262,144-kernel 3x3 layers the
        # exact bound's forward and backward took 0.94-0.99 µs a kernel against 1.66 µs at width 64 (2 threads),
        # which brings VI on resnet18 at batch 32 of 224x224 to 1.16-1.30x an N(0,1) step (width 64: 1.35-1.49x).
        *(Architecture(f"dwp-dense32-{k}x{k}", k, z, *_dense(k, 32),
                       f"Ours, {k}x{k}: fully connected, two hidden ELU layers of 32, both directions.")
          for k, z in ((7, 2), (5, 4), (3, 2))),
    )
}


def register_architecture(arch: Architecture) -> Architecture:
    """Add `arch` to the registry under ``arch.name``, so that priors of that architecture can be built and loaded.

    For research architectures that the runtime does not ship (the training tree registers its own when
    imported). Registering the same object again is a no-op; another architecture under a taken name is
    refused, since folders already written with that name would then load into different networks.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"register_architecture takes an Architecture, got {type(arch).__name__}")
    known = ARCHITECTURES.get(arch.name)
    if known is not None and known is not arch:
        raise ValueError(f"architecture {arch.name!r} is already registered ({known.note}); choose another name")
    ARCHITECTURES[arch.name] = arch
    return arch


def unknown_architecture_message(name: object) -> str:
    """The one-line refusal for an architecture name nobody registered: what is known and what to do."""
    return (f"unknown architecture {name!r}; registered: {', '.join(sorted(ARCHITECTURES))}. A research "
            "architecture must be registered before its priors are built or loaded: "
            "dwp_hub.architectures.register_architecture (the training tree's: import training.research_architectures)")


def get_architecture(name: str) -> Architecture:
    """The registered architecture called `name`; ValueError naming the registered ones if there is none."""
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(unknown_architecture_message(name))
    return ARCHITECTURES[name]


def architecture_for(kernel_size: int) -> Architecture:
    """The default architecture for a kernel size (7, 5 or 3): the paper's convolutional VAE (dwp-vae-KxK)."""
    for arch in ARCHITECTURES.values():
        if arch.kernel_size == kernel_size and arch.name.startswith("dwp-vae-"):
            return arch
    sizes = sorted({a.kernel_size for a in ARCHITECTURES.values()})
    raise ValueError(f"no DWP architecture for {kernel_size}x{kernel_size} kernels; known sizes: {sizes}")
