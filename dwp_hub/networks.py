"""Networks by name (timm, or torchvision as ``torchvision:NAME``) and checkpoint folders in timm's own layout.

A checkpoint folder is ``model.safetensors`` + ``config.json`` as timm's ``save_for_hf`` writes them, so
``timm.create_model("local-dir:DIR", pretrained=True)`` and
``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file="DIR/model.safetensors"))`` load
it. torchvision networks get the same two files; their config.json names the architecture and arguments.
Folders are built beside their destination and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import difflib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from safetensors.torch import save_file
from torch import nn

from .atomic import staged_folder

TORCHVISION_PREFIX = "torchvision:"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def create_network(name: str, num_classes: int | None = None, in_chans: int | None = None) -> nn.Module:
    """A randomly initialised network: a timm model name, or ``torchvision:NAME`` for a torchvision classifier."""
    args = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision

        tv_name = name[len(TORCHVISION_PREFIX):]
        known = torchvision.models.list_models(module=torchvision.models)
        if tv_name not in known:
            raise ValueError(f"unknown torchvision classification model {tv_name!r}{_did_you_mean(tv_name, known)}")
        if in_chans not in (None, 3):
            raise ValueError("--in-chans needs a timm model; torchvision classifiers take 3 input channels")
        args.pop("in_chans", None)
        return torchvision.models.get_model(tv_name, weights=None, **args)
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}{_did_you_mean(name, timm.list_models())} "
                         f"(torchvision models: torchvision:NAME)")
    try:
        return timm.create_model(name, pretrained=False, **args)
    except TypeError as e:
        raise ValueError(f"timm cannot create {name!r} with {args}: {e}") from None


def _check_destination(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise OSError(f"{target} exists and is not a folder; choose another output folder")
    if target.is_dir():
        foreign = sorted(p.name for p in target.iterdir() if p.name not in (WEIGHTS_FILE, CONFIG_FILE))
        if foreign:
            raise OSError(f"{target} holds other files ({', '.join(foreign[:3])}); refusing to replace it, "
                          f"choose a new or empty output folder")


@contextmanager
def staged_checkpoint(target: str | os.PathLike) -> Iterator[Path]:
    """staged_folder for a checkpoint: `target` may be missing, empty, or an earlier checkpoint folder
    (only model.safetensors and config.json); anything else is refused before any work is done."""
    _check_destination(Path(target))
    with staged_folder(target) as tmp:
        yield tmp


def save_checkpoint(model: nn.Module, name: str, folder: str | os.PathLike, extra: dict[str, Any],
                    num_classes: int | None = None) -> None:
    """Write `model` into `folder` as model.safetensors + config.json; `extra` goes into config.json as is.

    timm models are saved by timm's own ``save_for_hf`` (its config.json: architecture, num_classes,
    model_args, pretrained_cfg); torchvision ones get ``{"architecture": "torchvision:NAME", "model_args": …}``.
    """
    folder = Path(folder)
    if name.startswith(TORCHVISION_PREFIX):
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, folder / WEIGHTS_FILE, metadata={"format": "pt"})
        config = {"architecture": name, "model_args": {"num_classes": num_classes} if num_classes else {}, **extra}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return
    from timm.models import save_for_hf

    save_for_hf(model, str(folder), model_config=dict(extra), safe_serialization=True)


def load_instructions(name: str, folder: str | os.PathLike, num_classes: int | None = None,
                      in_chans: int | None = None) -> str:
    """The Python line that loads a checkpoint folder written by save_checkpoint."""
    weights = str(Path(folder) / WEIGHTS_FILE)
    if name.startswith(TORCHVISION_PREFIX):
        args = f", num_classes={num_classes}" if num_classes else ""
        return (f"torchvision.models.get_model({name[len(TORCHVISION_PREFIX):]!r}{args}).load_state_dict("
                f"safetensors.torch.load_file({weights!r}))")
    args = "".join(f", {k}={v}" for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None)
    overlay = f"file={weights!r}" + (f", num_classes={num_classes}" if num_classes is not None else "")
    return (f"timm.create_model({name!r}, pretrained=True{args}, pretrained_cfg_overlay=dict({overlay}))  "
            f"# or timm.create_model('local-dir:{folder}', pretrained=True)")
