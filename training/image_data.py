"""What every image loader returns (ImageData), its safetensors array cache, and per-channel standardisation.

The lowest layer of the data modules: ``datasets`` (the named data sets) and ``photo_tiles`` (the photo pretext
tasks) both build on it, so neither needs the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from torch.utils.data import TensorDataset

from dwp_hub.atomic import staged_file


@dataclass
class ImageData:
    """A train and a test split, the number of classes, and what the data is (for cards and configs)."""

    train: TensorDataset
    test: TensorDataset
    num_classes: int
    provenance: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train.tensors[0].shape[1:])


def save_array_cache(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write `arrays` with `meta` (JSON under metadata key 'info') to the safetensors file `path`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata={"info": json.dumps(meta)})


def load_array_cache(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata written by save_array_cache."""
    with safe_open(str(path), framework="np") as f:
        meta = json.loads(f.metadata()["info"])
    return load_file(str(path)), meta


def standardise(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray,
                yte: np.ndarray) -> tuple[TensorDataset, TensorDataset, dict[str, list[float]]]:
    """uint8 (n, C, H, W) images standardised per channel with the train split's statistics, and those statistics."""
    tr = torch.from_numpy(np.ascontiguousarray(xtr)).float().div_(255.0)
    te = torch.from_numpy(np.ascontiguousarray(xte)).float().div_(255.0)
    mean, std = tr.mean((0, 2, 3), keepdim=True), tr.std((0, 2, 3), keepdim=True).clamp_min(1e-3)
    return (TensorDataset(tr.sub_(mean).div_(std), torch.from_numpy(ytr)),
            TensorDataset(te.sub_(mean).div_(std), torch.from_numpy(yte)),
            {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()})
