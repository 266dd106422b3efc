"""Initial kernels for Fig. 3 and Fig. 4: DWP samples, real source kernels ("filters") or Xavier.

An init is written ``SOURCE[:RESCALE]``: SOURCE is ``dwp`` (decoder means at z ~ N(0, I), one z per kernel,
as the paper does), ``filters`` (kernels drawn from the prior's shipped source-kernel set) or ``xavier``
(Glorot-uniform). RESCALE multiplies each layer's new kernels by one scalar, the options of
``dwp_hub.init_from_prior``:

- ``none``: raw kernels, in the scale of the source networks they come from;
- ``match``: the layer's root-mean-square becomes what the model's own init gave it (PyTorch's default);
- ``fan_in``: the layer's root-mean-square becomes √2/√fan_in (Kaiming/He for ReLU-like nets).

These are exactly ``init_from_prior``'s definitions (tests/test_experiments.py checks that both give the
same weights); this module exists because the experiments also initialise transposed convolutions (the
VAE's decoder) and draw real source kernels, which ``init_from_prior`` does not. Layers whose kernel
size has no prior keep their weights (and are reported so).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .nets import conv_layers
from .priors import PriorSet

SOURCES = ("xavier", "filters", "dwp")
RESCALES = ("none", "match", "fan_in")


def parse_init(spec: str) -> tuple[str, str]:
    """'dwp:match' -> ('dwp', 'match'); the rescale defaults to 'none'; xavier takes none."""
    source, _, rescale = spec.partition(":")
    rescale = rescale or "none"
    if source not in SOURCES or rescale not in RESCALES or (source == "xavier" and rescale != "none"):
        raise ValueError(f"unknown init {spec!r}: use one of {SOURCES} with an optional ':' + one of {RESCALES} "
                         "(xavier has no rescale)")
    return source, rescale


def rms(w: torch.Tensor) -> float:
    """Root-mean-square of a tensor's entries."""
    return w.double().pow(2).mean().sqrt().item()


def draw_kernels(source: str, k: int, n: int, priors: PriorSet, generator: torch.Generator) -> torch.Tensor:
    """`n` k×k kernels (CPU) from the DWP or from the shipped source kernels (without replacement if enough)."""
    if source == "dwp":
        return priors.dwp(k).sample(n, generator=generator)
    pool = priors.source_kernels(k)
    if n <= len(pool):
        idx = torch.randperm(len(pool), generator=generator)[:n]
    else:
        idx = torch.randint(len(pool), (n,), generator=generator)
    return pool[idx]


@torch.no_grad()
def initialise(model: nn.Module, spec: str, priors: PriorSet, generator: torch.Generator) -> list[dict]:
    """Re-initialise every (transposed) conv of `model` by `spec`; return one record per layer."""
    source, rescale = parse_init(spec)
    report = []
    for name, m in conv_layers(model):
        w = m.weight
        kh, kw = w.shape[-2:]
        if source == "xavier":
            nn.init.xavier_uniform_(w, generator=generator)
            report.append(dict(layer=name, kernel=kh, init="xavier", scale=1.0))
            continue
        if kh != kw or kh not in priors.names:
            report.append(dict(layer=name, kernel=kh, init="kept", scale=1.0))
            continue
        new = draw_kernels(source, kh, w.shape[0] * w.shape[1], priors, generator).reshape(w.shape)
        scale = 1.0
        if rescale == "match":
            scale = rms(w) / rms(new)
        elif rescale == "fan_in":
            scale = math.sqrt(2.0) / math.sqrt(w[0].numel()) / rms(new)
        w.copy_(new.to(w) * scale)
        report.append(dict(layer=name, kernel=kh, init=spec, scale=scale))
    return report
