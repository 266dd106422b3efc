"""The k×k kernels of a PyTorch state dict (``.pt``/``.pth``), read with ``torch.load(weights_only=True)`` only.

A ``.pt`` file is a pickle, and a full unpickle runs whatever functions the file names. ``weights_only=True``
rebuilds tensors and plain containers only and refuses any other global; it still parses an untrusted pickle,
so a file is read only when its SHA-256 is the one a recipe pins, or when the caller passes
``trust_unpinned_pickle=True`` (the command line's ``--trust-unpinned-pickle``). A file whose pickle asks for
anything but tensors is refused with one line, without running it.

Accepted: a mapping name → tensor, or a mapping holding one such mapping (``{"state_dict": {...}}``,
``{"model": {...}}``). Every 4-D tensor named ``…weight`` is a convolution's (out, in/groups, kh, kw) weight;
the layer name drops the ``.weight`` suffix, as ``training.source_checkpoints.conv_kernels`` does. A state
dict does not store ``groups``: the records give the weight's shape only.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .source_layers import LayerCollector, SourceKernels, check_pin, read_source_file

PREFERRED_KEYS = ("state_dict", "model_state_dict", "model")  # of a checkpoint holding several state dicts
TRUST_FLAG = "--trust-unpinned-pickle"


def _refusal(path: Path, error: Exception) -> str:
    """One line saying why weights-only loading refused `path` (torch's message spans a paragraph)."""
    text = str(error)
    wanted = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if wanted:
        return (f"{path}: refused: its pickle calls {wanted.group(1)}, which is code, not tensors; only plain "
                f"state dicts are read (never a full unpickle)")
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    reason = detail.group(1).strip() if detail else type(error).__name__
    return f"{path}: refused: weights-only loading failed ({reason}); only plain state dicts are read"


def _tensors(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The name → tensor mapping of a loaded file, and the key it sat under (None: top level)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict (a mapping name -> tensor)")
    top = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if top:
        return top, None
    nested = {str(k): v for k, v in obj.items()
              if isinstance(v, Mapping) and any(isinstance(t, torch.Tensor) for t in v.values())}
    key = next((k for k in PREFERRED_KEYS if k in nested), None) or (next(iter(nested)) if len(nested) == 1 else None)
    if key is None:
        found = ", ".join(map(repr, nested)) or "none"
        raise ValueError(f"{path}: no state dict found (mappings of tensors under keys: {found}); expected name -> "
                         f"tensor, or one of them under {', '.join(PREFERRED_KEYS)}")
    return {str(k): v for k, v in nested[key].items() if isinstance(v, torch.Tensor)}, key


def read_state_dict_kernels(path: str | os.PathLike, kernel_size: int, sha256: str | None = None,
                            trust_unpinned_pickle: bool = False) -> SourceKernels:
    """The k×k kernels of every convolution weight in the PyTorch state dict at `path` (see the module doc).

    `sha256` is the recipe's pin: the file must match it. Without a pin the file is read only with
    `trust_unpinned_pickle`. Raises ValueError with one line when refused; nothing is written.
    """
    path = Path(path)
    data, digest = read_source_file(path, "state dict")
    if sha256 is None and not trust_unpinned_pickle:
        raise ValueError(f"{path}: a pickle-format PyTorch file (SHA-256 {digest}) that no recipe pins; pass "
                         f"{TRUST_FLAG} to read it anyway (weights only, but an untrusted pickle is still parsed)")
    check_pin(path, digest, sha256)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(_refusal(path, e)) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: not a readable PyTorch file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    tensors, key = _tensors(obj, path)
    found = LayerCollector(kernel_size)
    for name, tensor in tensors.items():
        if tensor.dim() != 4:
            continue
        if not name.endswith("weight"):
            found.skip(name, tuple(tensor.shape), "4-D tensor not named ...weight")
            continue
        values = tensor.detach().float() if tensor.is_floating_point() else tensor.detach()
        found.add(name.removesuffix(".weight"), values.numpy(), None)
    notes = (f"state dict under key {key!r}",) if key is not None else ()
    return found.result(path, digest, "pytorch-state-dict", notes)
