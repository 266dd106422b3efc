"""Kernel grids as PNG images (the paper's Figure 1c), drawn without matplotlib."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from .atomic import staged_file


def kernel_grid(kernels: torch.Tensor, nrow: int | None = None, scale: int = 8, padding: int = 1) -> Image.Image:
    """Tile (n, k, k) kernels into a grayscale image, each kernel min-max normalised on its own."""
    if kernels.dim() != 3:
        raise ValueError(f"expected (n, k, k) kernels, got shape {tuple(kernels.shape)}")
    n = kernels.shape[0]
    nrow = nrow or max(1, int(round(n ** 0.5)))
    flat = kernels.detach().float().cpu().flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    norm = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(kernels)
    big = norm.repeat_interleave(scale, 1).repeat_interleave(scale, 2)[:, None]
    grid = make_grid(big, nrow=nrow, padding=padding * scale // 2 or 1, pad_value=1.0)[0]
    return Image.fromarray((grid * 255).round().to(torch.uint8).numpy(), mode="L")


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PNG atomically (see `staged_file`); the folder holding `path` must exist."""
    path = Path(path)
    with staged_file(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return path
