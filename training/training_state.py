"""Safetensors checkpoints of a training run (model + Adam state + JSON metadata), written atomically.

A run that stops part-way leaves its last complete epoch on disk; the next run loads it and goes on
from there. Nothing is pickled: optimizer state is flattened to named tensors, hyper-parameters are
rebuilt by the caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dwp_hub.atomic import staged_file


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write `tensors` with `meta` (as JSON under metadata key 'meta') to `path`, atomically (dwp_hub.atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(path) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"meta": json.dumps(meta, sort_keys=True)})
    return path


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata written by save_tensors."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    return load_file(str(path)), meta


def read_meta(path: str | Path) -> dict[str, Any]:
    """Only the metadata of a save_tensors file (cheap: tensors are not read)."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("meta", "{}"))


def save_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        meta: dict[str, Any]) -> Path:
    """Checkpoint model weights ('model.*') and per-parameter Adam state ('opt.<i>.<key>')."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"opt.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return save_tensors(path, tensors, meta)


def load_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore a save_training_state checkpoint into `model` and `optimizer`; return its metadata."""
    tensors, meta = load_tensors(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    sd = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    return meta
