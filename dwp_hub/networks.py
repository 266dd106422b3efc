"""Networks by name (timm, or torchvision as ``torchvision:NAME``) and checkpoint folders in timm's own layout.

A checkpoint folder is ``model.safetensors`` + ``config.json`` as timm's ``save_for_hf`` writes them (its
``pretrained_cfg`` describing the DWP initialisation, not timm's pretrained weights) + a model card ``README.md``, so
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
CARD_FILE = "README.md"
CHECKPOINT_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
# pretrained_cfg keys that describe the architecture and its input, kept from timm's default config; the rest
# (tag, url, hf_hub_id, licence, paper, test-time sizes) describe timm's pretrained weights, which were not used.
INPUT_CFG_KEYS = ("architecture", "input_size", "fixed_input_size", "interpolation", "crop_pct", "crop_mode", "mean",
                  "std", "num_classes", "pool_size", "first_conv", "classifier")
DWP_TAG = "dwp_init"


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
        foreign = sorted(p.name for p in target.iterdir() if p.name not in CHECKPOINT_FILES)
        if foreign:
            raise OSError(f"{target} holds other files ({', '.join(foreign[:3])}); refusing to replace it, "
                          f"choose a new or empty output folder")


@contextmanager
def staged_checkpoint(target: str | os.PathLike) -> Iterator[Path]:
    """staged_folder for a checkpoint: `target` may be missing, empty, or an earlier checkpoint folder
    (only model.safetensors, config.json and README.md); anything else is refused before any work is done."""
    _check_destination(Path(target))
    with staged_folder(target) as tmp:
        yield tmp


def dwp_pretrained_cfg(model: nn.Module, record: dict[str, Any]) -> dict[str, Any]:
    """timm's pretrained_cfg for a DWP-initialised `model`: its input config, and what initialised its weights."""
    base = getattr(model, "pretrained_cfg", None) or {}
    cfg = {k: base[k] for k in INPUT_CFG_KEYS if k in base}
    priors = ", ".join(f"{label} ({info.get('revision') or 'sha256:' + info.get('sha256', '')[:16]})"
                       for label, info in record.get("priors", {}).items())
    cfg.update(tag=DWP_TAG, paper_ids="arXiv:1810.06943",
               description=f"Random initialisation: conv kernels sampled from deep weight priors {priors} "
                           f"(rescale={record.get('rescale')}, seed {record.get('seed')}); not trained.")
    return cfg


def model_card(name: str, folder: str | os.PathLike, record: dict[str, Any], num_classes: int | None = None,
               in_chans: int | None = None) -> str:
    """README.md of an init checkpoint: what it is (untrained, DWP-initialised), the priors used, how to load it."""
    from huggingface_hub import ModelCard, ModelCardData

    library = "timm" if not name.startswith(TORCHVISION_PREFIX) else "pytorch"
    data = ModelCardData(library_name=library, tags=["image-classification", library, "dwp-hub", "deep-weight-prior"],
                         license="apache-2.0")
    rows = "\n".join(f"| `{label}` | {info.get('origin', '')} | `{info.get('revision') or info.get('sha256')}` |"
                      for label, info in record.get("priors", {}).items())
    layers, skipped = record.get("layers", []), record.get("skipped", [])
    body = (
        f"# {name}, initialised from deep weight priors\n\n"
        f"An **untrained** `{name}` whose convolution kernels were sampled from deep weight priors "
        f"([Atanov et al., ICLR 2019](https://arxiv.org/abs/1810.06943)) by `dwp-hub init` "
        f"(dwp-hub {record.get('dwp_hub_version')}, seed {record.get('seed')}, rescale `{record.get('rescale')}`): "
        f"{len(layers)} conv layers ({sum(r['kernels'] for r in layers):,} kernels) from the priors below; "
        f"{len(skipped)} other conv layers and every other weight keep the model's own initialisation. "
        "The per-layer record is `dwp_init` in `config.json`.\n\n"
        "| prior | from | revision or SHA-256 of model.safetensors |\n|---|---|---|\n" + rows + "\n\n"
        "## Load\n\n```python\n" + load_instructions(name, folder, num_classes=num_classes, in_chans=in_chans)
        + "\n```\n"
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def save_checkpoint(model: nn.Module, name: str, folder: str | os.PathLike, record: dict[str, Any],
                    num_classes: int | None = None, in_chans: int | None = None,
                    destination: str | os.PathLike | None = None) -> None:
    """Write `model` into `folder` as model.safetensors + config.json + README.md; `record` is the init report.

    `destination` is where the folder will live (the card's loading line names it; default `folder`).
    timm models are saved by timm's own ``save_for_hf`` (its config.json: architecture, num_classes,
    model_args, and a pretrained_cfg describing the DWP init); torchvision ones get
    ``{"architecture": "torchvision:NAME", "model_args": …}``. Either config keeps `record` under "dwp_init".
    """
    folder = Path(folder)
    card = model_card(name, destination or folder, record, num_classes, in_chans)
    (folder / CARD_FILE).write_text(card, encoding="utf-8")
    if name.startswith(TORCHVISION_PREFIX):
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, folder / WEIGHTS_FILE, metadata={"format": "pt"})
        config = {"architecture": name, "model_args": {"num_classes": num_classes} if num_classes else {},
                  "dwp_init": record}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return
    from timm.models import save_for_hf

    model.pretrained_cfg = dwp_pretrained_cfg(model, record)
    save_for_hf(model, str(folder), model_config={"dwp_init": record}, safe_serialization=True)


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
