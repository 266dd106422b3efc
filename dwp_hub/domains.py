"""Which bundled domain `dwp-hub init` uses for a model when no prior is named.

Chosen by measurement (training/results/natural: Fig. 3 and 4 of every shipped domain on unseen photos and on
MNIST): for RGB models the photo priors, for grayscale ones the glyph priors; face and text kernels led nowhere
beyond noise. Kept free of torch imports so that ``dwp-hub --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

DEFAULT_DOMAINS = {1: "notmnist", 3: "photo"}  # input channels -> domain


def default_domain(model: Any) -> str:
    """The domain for `model`: by the input channels of its first convolution (photo unless grayscale)."""
    from torch import nn

    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first.in_channels if first is not None else 3
    return DEFAULT_DOMAINS.get(channels, DEFAULT_DOMAINS[3])
