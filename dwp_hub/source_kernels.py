"""``kernels.safetensors``: the samples of source kernels a prior folder may carry, read and checked."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import KERNELS_NAME
from .errors import PriorFormatError

KERNEL_SETS = ("train", "heldout")
MAX_KERNEL_SAMPLES = 4096


def read_kernel_sets(path: str | os.PathLike, kernel_size: int | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a kernels file, checked: only "train"/"heldout", each finite float (n, k, k), n ≤ 4,096.

    Raises PriorFormatError naming `path` and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise PriorFormatError(f"{path}: missing")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise PriorFormatError(f"{path}: not a readable safetensors file ({e})") from None
    expected = " and/or ".join(KERNEL_SETS)
    if not tensors:
        raise PriorFormatError(f"{path}: holds no tensors; expected {expected}")
    unknown = sorted(tensors.keys() - set(KERNEL_SETS))
    if unknown:
        raise PriorFormatError(f"{path}: unexpected tensor(s) {unknown}; expected {expected}")
    for name, t in tensors.items():
        k = kernel_size or (t.shape[-1] if t.dim() == 3 else 0)
        if t.dim() != 3 or tuple(t.shape[1:]) != (k, k) or t.shape[0] < 1:
            raise PriorFormatError(f"{path}: tensor {name} has shape {tuple(t.shape)}, expected (n, {k}, {k}) "
                                   "with n >= 1")
        if t.shape[0] > MAX_KERNEL_SAMPLES:
            raise PriorFormatError(f"{path}: tensor {name} holds {t.shape[0]} kernels, at most "
                                   f"{MAX_KERNEL_SAMPLES} are allowed")
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise PriorFormatError(f"{path}: tensor {name} must be floating point and finite")
    return {name: t.float() for name, t in tensors.items()}


def load_source_kernels(folder_or_file: str | os.PathLike, split: str = "train",
                        kernel_size: int | None = None) -> torch.Tensor:
    """The (n, k, k) source kernels under `split` of a kernels file, or of a prior folder's kernels.safetensors."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / KERNELS_NAME
    if not path.is_file():
        raise PriorFormatError(f"{path}: missing; this prior ships no source kernels ({split!r} kernels are "
                               "needed here)")
    tensors = read_kernel_sets(path, kernel_size)
    if split not in tensors:
        raise PriorFormatError(f"{path}: no tensor {split!r} (has {sorted(tensors)})")
    return tensors[split]
