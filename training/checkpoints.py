"""Source networks given as trained checkpoints instead of trained here: the kernels of any safetensors model.

A checkpoint is named as

- a ``.safetensors`` file, or a folder holding some (timm's ``save_for_hf`` layout, ``dwp-hub init`` output,
  a sharded ``model-0000x-of-0000y.safetensors`` set, the source nets of a build);
- a Hub repo id ``ORG/NAME[@REV]`` (or ``hf-hub:ORG/NAME[@REV]``), e.g. ``timm/resnet18.a1_in1k``: its
  ``*.safetensors`` files are fetched at one commit through the Hugging Face cache.

Only safetensors are read, so no checkpoint can run code; a folder or repo with weights only in pickle
formats (``.bin``, ``.pth``, ...) is refused. No model code is needed either: every 4-D tensor whose last two
dimensions are k×k and whose name ends in ``weight`` is a layer of k×k kernels (convolutions of timm and
torchvision models, depthwise and grouped ones included).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from dwp_hub.hub import HUB_PREFIX, split_revision
from dwp_hub.prior_folder import sha256_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


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
    hub = spec.startswith(HUB_PREFIX)
    text = spec[len(HUB_PREFIX):] if hub else spec
    path = Path(text).expanduser()
    if not hub and path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"checkpoint {spec!r}: only .safetensors files are read")
        return Checkpoint(spec, (path,), "local")
    if not hub and path.is_dir():
        return Checkpoint(spec, _safetensors_in(path, spec), "local")
    from huggingface_hub import snapshot_download

    repo_id, revision = split_revision(text, None)
    if repo_id.count("/") != 1:
        raise ValueError(f"checkpoint {spec!r}: not a file, a folder or a Hub repo id (ORG/NAME)")
    folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                    allow_patterns=["*.safetensors", "config.json"]))
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
