"""What a source-file reader returns: the k×k kernels of each layer it took, and a record of every layer it saw.

The ONNX, PyTorch state-dict and kernel-array readers (``training/onnx_kernels.py``,
``training/state_dict_kernels.py``, ``training/array_kernels.py``) all hand their 4-D weights to one
``LayerCollector``, so they count kernels and give reasons for skipping a layer the same way: a weight of shape
(out, in/groups, kh, kw) holds out·in/groups kernels, depthwise and grouped convolutions included, and its
kernels are taken when kh = kw = k, the values are floating point and finite.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data` (readers hash the very bytes they parse, so the record names what was read)."""
    return hashlib.sha256(data).hexdigest()


def read_source_file(path: Path, what: str) -> tuple[bytes, str]:
    """The bytes of `path` and their SHA-256; ValueError naming `what` the file should be when it can't be read."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what}: {e.strerror}") from None
    return data, sha256_bytes(data)


def check_pin(path: Path, digest: str, pinned: str | None) -> None:
    """Refuse a file whose SHA-256 is not the one a recipe pins (no pin: nothing to check)."""
    if pinned is not None and digest != pinned.lower():
        raise ValueError(f"{path}: SHA-256 is {digest}, the recipe pins {pinned}; refusing a file that is not the "
                         f"pinned one (fetch it again)")


@dataclass(frozen=True)
class SourceKernels:
    """The kernels of one source file and how they were found.

    `layers` maps a layer name to its (n, k, k) float32 kernels, in file order, as
    ``training.source_checkpoints.conv_kernels`` does for safetensors; `taken` and `skipped` hold one record
    per layer (name, weight shape, groups where the format stores them, kernels kept; or the reason skipped).
    """

    path: Path
    sha256: str
    format: str  # "onnx", "pytorch-state-dict" or "numpy"
    kernel_size: int
    layers: dict[str, torch.Tensor]
    taken: tuple[dict[str, Any], ...]
    skipped: tuple[dict[str, Any], ...]
    kernels_by_shape: dict[str, int]  # "3x3" -> kernels of every conv weight read, taken or not
    notes: tuple[str, ...] = ()

    @property
    def kernels(self) -> int:
        return sum(len(v) for v in self.layers.values())

    def record(self) -> dict[str, Any]:
        """JSON-ready provenance of this file: what it is, its hash, and every layer taken or skipped."""
        return {"file": self.path.name, "sha256": self.sha256, "format": self.format,
                "kernel_size": self.kernel_size, "kernels": self.kernels, "kernels_by_shape": self.kernels_by_shape,
                "layers_taken": list(self.taken), "layers_skipped": list(self.skipped), "notes": list(self.notes)}


@dataclass
class LayerCollector:
    """Gathers the k×k kernels of the 4-D weights a reader finds, with a record for each (see the module doc)."""

    kernel_size: int
    layers: dict[str, torch.Tensor] = field(default_factory=dict)
    taken: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    by_shape: Counter = field(default_factory=Counter)

    def skip(self, name: str, shape: tuple[int, ...] | None, reason: str, **extra: Any) -> None:
        self.skipped.append({"name": name, "shape": list(shape) if shape is not None else None, "reason": reason,
                             **extra})

    def add(self, name: str, weight: np.ndarray, groups: int | None, shape: tuple[int, ...] | None = None,
            **extra: Any) -> None:
        """Take the kernels of `weight` (out, in/groups, kh, kw) if they are k×k, else record why not.

        `shape` is the shape to record when the file stored another (e.g. (n, k, k) arrays); `extra` goes into
        the layer's record (an ONNX node name, where the weight came from).
        """
        shown = tuple(int(s) for s in (shape if shape is not None else weight.shape))
        if weight.ndim != 4:
            return self.skip(name, shown, f"{weight.ndim}-D weight, not a 2-D convolution's (out, in, kh, kw)",
                             **extra)
        out, per_group, kh, kw = (int(s) for s in weight.shape)
        if groups is not None and (groups < 1 or out % groups):
            return self.skip(name, shown, f"group {groups} does not divide the {out} output channels", **extra)
        if name in self.layers:
            return self.skip(name, shown, "a second layer of the same name", **extra)
        self.by_shape[f"{kh}x{kw}"] += out * per_group
        k = self.kernel_size
        if kh != kw:
            return self.skip(name, shown, f"non-square {kh}x{kw} kernels", **extra)
        if (kh, kw) != (k, k):
            return self.skip(name, shown, f"{kh}x{kw} kernels, not {k}x{k}", **extra)
        if weight.dtype.kind != "f":
            return self.skip(name, shown, f"{weight.dtype} values, not floating point (quantised?)", **extra)
        kernels = torch.from_numpy(np.array(weight, dtype=np.float32)).reshape(-1, k, k)  # a copy: writable
        bad = int((~torch.isfinite(kernels)).sum())
        if bad:
            return self.skip(name, shown, f"{bad} non-finite values", **extra)
        self.layers[name] = kernels
        self.taken.append({"name": name, "shape": list(shown), "groups": groups, "kernels": len(kernels), **extra})

    def result(self, path: Path, digest: str, fmt: str, notes: tuple[str, ...] = ()) -> SourceKernels:
        return SourceKernels(path, digest, fmt, self.kernel_size, dict(self.layers), tuple(self.taken),
                             tuple(self.skipped), dict(sorted(self.by_shape.items())), notes)
