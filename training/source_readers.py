"""One entry point for the source files read as data: ONNX models, PyTorch state dicts and kernel arrays.

The reader is chosen by the file's suffix; safetensors checkpoints have their own reader
(``training/source_checkpoints.py``). Every reader returns a ``SourceKernels``: layer name → (n, k, k)
kernels and a provenance record of every layer taken or skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from .array_kernels import read_array_kernels
from .onnx_kernels import read_onnx_kernels
from .source_layers import SourceKernels
from .state_dict_kernels import read_state_dict_kernels

ONNX_SUFFIXES = (".onnx",)
STATE_DICT_SUFFIXES = (".pt", ".pth")
ARRAY_SUFFIXES = (".npy", ".npz")
SOURCE_SUFFIXES = ONNX_SUFFIXES + STATE_DICT_SUFFIXES + ARRAY_SUFFIXES


def read_source_kernels(path: str | os.PathLike, kernel_size: int, sha256: str | None = None,
                        trust_unpinned_pickle: bool = False) -> SourceKernels:
    """The k×k kernels of the source file at `path`, by its suffix (.onnx, .pt/.pth, .npy/.npz).

    `sha256` is a recipe's pin of the file; `trust_unpinned_pickle` lets an unpinned .pt/.pth be read
    (weights only). Raises ValueError with one line for a file refused or of another kind.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return read_onnx_kernels(path, kernel_size, sha256)
    if suffix in STATE_DICT_SUFFIXES:
        return read_state_dict_kernels(path, kernel_size, sha256, trust_unpinned_pickle)
    if suffix in ARRAY_SUFFIXES:
        return read_array_kernels(path, kernel_size, sha256)
    raise ValueError(f"{path}: not a source file these readers take ({', '.join(SOURCE_SUFFIXES)})")
