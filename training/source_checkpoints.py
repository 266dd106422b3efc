"""Source networks given as trained checkpoints instead of trained here: the kernels of any safetensors model.

A checkpoint is named as

- a ``.safetensors`` file, or a folder holding some (timm's ``save_for_hf`` layout, ``dwp-hub init`` output,
  a sharded ``model-0000x-of-0000y.safetensors`` set, the source nets of a build);
- a Hub repo id ``ORG/NAME[@REV]`` (or ``hf-hub:ORG/NAME[@REV]``), e.g. ``timm/resnet18.a1_in1k``: its
  ``*.safetensors`` files are fetched at one commit through the Hugging Face cache.

Names are parsed by ``dwp_hub.names.PriorName`` and fetched by ``dwp_hub.hub.fetch_snapshot``, as prior
names are, so they share the grammar, the offline handling and the one-line errors. Only safetensors are
read, so no checkpoint can run code; a folder or repo with weights only in pickle formats
(``dwp_hub.prior_folder.PICKLE_SUFFIXES``) is refused. No model code is needed either: every 4-D tensor whose last two
dimensions are k×k and whose name ends in ``weight`` is a layer of k×k kernels (convolutions of timm and
torchvision models, depthwise and grouped ones included).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from dwp_hub.hub import fetch_snapshot
from dwp_hub.names import PriorName
from dwp_hub.prior_folder import PICKLE_SUFFIXES, sha256_file


@dataclass(frozen=True)
class Checkpoint:
    """One source network: its safetensors files and where they came from."""

    spec: str
    files: tuple[Path, ...]
    origin: str  # "local" or "hub"
    revision: str | None = None  # Hub commit

    def record(self) -> dict:
        return {"checkpoint": self.spec, "origin": self.origin, "revision": self.revision,
                "files": {f.name: sha256_file(f) for f in self.files}}


def _safetensors_in(folder: Path, spec: str) -> tuple[Path, ...]:
    files = tuple(sorted(folder.glob("*.safetensors")))
    if not files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        hint = f" (only pickle-format weights: {', '.join(pickles[:3])}; they are never read)" if pickles else ""
        raise ValueError(f"checkpoint {spec!r}: no .safetensors files in {folder}{hint}")
    return files


def resolve_checkpoint(spec: str, cache_dir: str | os.PathLike | None = None) -> Checkpoint:
    """The safetensors files a checkpoint spec names (see the module docstring)."""
    name = PriorName.parse(spec)
    if name.path is not None:
        if name.path.is_dir():
            return Checkpoint(spec, _safetensors_in(name.path, spec), "local")
        if name.path.suffix != ".safetensors":
            raise ValueError(f"checkpoint {spec!r}: only .safetensors files are read")
        return Checkpoint(spec, (name.path,), "local")
    if name.repo.count("/") != 1:
        raise ValueError(f"checkpoint {spec!r}: not a file, a folder or a Hub repo id (ORG/NAME)")
    folder = fetch_snapshot(name.repo, name.revision, allow_patterns=["*.safetensors", "config.json"], name=spec,
                            what="checkpoint", cache_dir=cache_dir)
    return Checkpoint(spec, _safetensors_in(folder, spec), "hub", folder.name)


def conv_kernels(checkpoint: Checkpoint, kernel_size: int) -> dict[str, torch.Tensor]:
    """Layer name -> its (n, k, k) float32 kernels, for every k×k kernel tensor of the checkpoint, in file order."""
    k = kernel_size
    layers: dict[str, torch.Tensor] = {}
    for path in checkpoint.files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                if not name.endswith("weight"):
                    continue
                shape = f.get_slice(name).get_shape()
                if len(shape) == 4 and tuple(shape[2:]) == (k, k):
                    w = f.get_tensor(name)
                    if w.is_floating_point():
                        layers[name.removesuffix(".weight")] = w.float().reshape(-1, k, k)
    return layers
