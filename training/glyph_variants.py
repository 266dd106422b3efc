"""Source nets trained on altered notMNIST-style renders: part of the shipped notmnist-5x5 prior's recipe.

    python -m training.glyph_variants VARIANT EPOCHS SEED [--out DIR]

The shipped 5x5 prior pools the second-layer kernels of source nets trained on several variants of the build's
notMNIST-style renders (training/rebuild_notmnist.sh lists them). VARIANT says what each net sees:

- ``base``: the renders as they are (all installed fonts, 6 jittered renders a glyph, glyphs 20-28 pixels on
  their long side);
- a number S: each image cropped to its ink and scaled to S pixels on its long side, centred (``28``: glyphs that
  fill the box, as in notMNIST; ``20``: MNIST's digit box);
- ``shiftK``: each render moved by a random whole-pixel offset in [-K, K] along each axis, ink pushed past the
  border dropped (offsets drawn once per split, so every epoch sees the same images);
- ``invertP``: a fixed random P percent of the renders turned into dark glyphs on a white box (x -> 1 - x);
- ``labelsP``: the renders, with a fixed random P percent of the training labels redrawn uniformly from the ten
  (test labels untouched), as a noisy data set would have;
- ``standard``: the renders standardised with the training split's pixel mean and std, as a pipeline that
  normalises its inputs would feed them.

The net is the paper's source protocol at widths 32/64 (Xavier init, Adam 1e-3 decaying linearly to 0, batch 256,
L2 1e-3 on the conv layers), for EPOCHS epochs, torch seed SEED, on one CPU thread. It writes every second-layer
kernel as the kernel-set file ``glyph-<NAME>-5x5.safetensors`` under --out and the first layer's as
``glyph-<NAME>-7x7.safetensors`` (NAME is VARIANT, or ``VARIANT-s<SEED>`` for SEED > 0), for
``dense_vae --kernel-set``, and adds the net's record to ``glyph-nets.json`` there, for ``dense_vae --sources``
(the prior's provenance and card name the nets it was fitted to).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dwp_hub.atomic import write_text_atomic

from .datasets import notmnist_style
from .fonts import DEFAULT_FONT_DIRS
from .loops import l2_parameters
from .source_nets import build_source_net
from .training_state import save_tensors

SIDE = 28
WIDTHS = (32, 64)
BATCH = 256
LR = 1e-3
L2 = 1e-3
RECORDS = "glyph-nets.json"
_VARIANT = re.compile(r"base|standard|\d+|(shift|invert|labels)\d+")
_ALTERED = {"shift": "notmnist-style, renders moved by up to {} px", "invert": "notmnist-style, {}% of renders inverted",
            "labels": "notmnist-style, {}% of training labels redrawn"}


def check_variant(variant: str) -> str:
    """`variant` if it is one this module knows (see the module docstring), else a ValueError naming them."""
    if not _VARIANT.fullmatch(variant) or (variant.isdigit() and not 1 <= int(variant) <= SIDE):
        raise ValueError(f"unknown glyph variant {variant!r}: use base, standard, a glyph size 1-{SIDE}, shiftK, "
                         "invertP or labelsP")
    return variant


def describe(variant: str) -> str:
    """What a variant's net was trained on, in words (the 'dataset' of its record)."""
    if variant.isdigit():
        return f"notmnist-style, glyphs rescaled to {variant} px"
    for kind, words in _ALTERED.items():
        if variant.startswith(kind):
            return words.format(variant[len(kind):])
    return {"base": "notmnist-style", "standard": "notmnist-style, inputs standardised"}[variant]


def to_side(images: np.ndarray, side: int) -> np.ndarray:
    """Each 28×28 uint8 image cropped to its ink, scaled (aspect kept) to `side` pixels on its long side, centred."""
    out = np.zeros_like(images)
    for i, image in enumerate(images):
        ys, xs = np.nonzero(image)
        if len(ys) == 0:
            continue
        crop = Image.fromarray(image[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        scale = side / max(crop.size)
        size = (max(1, min(SIDE, round(crop.size[0] * scale))), max(1, min(SIDE, round(crop.size[1] * scale))))
        small = np.asarray(crop.resize(size, Image.LANCZOS))
        y0, x0 = (SIDE - size[1]) // 2, (SIDE - size[0]) // 2
        out[i, y0:y0 + size[1], x0:x0 + size[0]] = small
    return out


def shifted(data: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Each (1, 28, 28) image moved by a random offset in [-k, k] on each axis; what leaves the box is dropped."""
    rng = np.random.default_rng(seed)
    out = torch.zeros_like(data)
    for i, (dy, dx) in enumerate(rng.integers(-k, k + 1, size=(len(data), 2))):
        ys, yd = (slice(0, SIDE - dy), slice(dy, SIDE)) if dy >= 0 else (slice(-dy, SIDE), slice(0, SIDE + dy))
        xs, xd = (slice(0, SIDE - dx), slice(dx, SIDE)) if dx >= 0 else (slice(-dx, SIDE), slice(0, SIDE + dx))
        out[i, :, yd, xd] = data[i, :, ys, xs]
    return out


def variant_images(data: torch.Tensor, variant: str, seed: int) -> torch.Tensor:
    """The (n, 1, 28, 28) images in [0, 1] of `variant`: as rendered (``base``, ``labelsP``, ``standard``), moved by
    `shifted` or partly inverted (offsets and inverted images drawn with `seed`), or rescaled by `to_side`."""
    if variant in ("base", "standard") or variant.startswith("labels"):
        return data
    if variant.startswith("shift"):
        return shifted(data, int(variant[5:]), seed)
    if variant.startswith("invert"):
        flip = torch.from_numpy(np.random.default_rng(seed).random(len(data)) < int(variant[6:]) / 100)
        return torch.where(flip[:, None, None, None], 1 - data, data)
    raw = (data[:, 0] * 255).round().to(torch.uint8).numpy()  # the renders' exact bytes
    return torch.from_numpy(to_side(raw, int(variant))).float().div(255)[:, None]


def noisy_labels(labels: torch.Tensor, percent: int, seed: int) -> torch.Tensor:
    """`labels` with a fixed random `percent` of them replaced by a class drawn uniformly from the ten."""
    rng = np.random.default_rng(seed)
    hit = torch.from_numpy(rng.random(len(labels)) < percent / 100)
    drawn = torch.from_numpy(rng.integers(0, 10, size=len(labels))).to(labels.dtype)
    return torch.where(hit, drawn, labels)


def variant_data(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                 variant: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) of `variant` from the renders' splits (train drawn with seed 0, test 1)."""
    xtr, ytr = variant_images(train[0], variant, 0), train[1]
    xte, yte = variant_images(test[0], variant, 1), test[1]
    if variant.startswith("labels"):
        ytr = noisy_labels(ytr, int(variant[6:]), 0)
    if variant == "standard":
        mean, std = xtr.mean(), xtr.std()
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    return xtr, ytr, xte, yte


def train_net(xtr: torch.Tensor, ytr: torch.Tensor, epochs: int, seed: int) -> torch.nn.Module:
    """The 32/64 fconv-mnist source net trained by the paper's protocol (see the module docstring)."""
    torch.manual_seed(seed)
    net = build_source_net("fconv-mnist", WIDTHS, 10, (1, SIDE, SIDE), init="xavier")
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    steps = max(1, epochs * (len(xtr) // BATCH))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=order)
        for i in range(0, len(xtr) - BATCH + 1, BATCH):
            idx = perm[i:i + BATCH]
            penalty = sum(p.pow(2).sum() for p in l2_parameters(net, "features"))
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx]) + L2 * penalty
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net


def net_record(variant: str, epochs: int, seed: int, accuracy: float, seconds: float) -> dict[str, Any]:
    """The source-net record of one variant's net, in the form ``dense_vae --sources`` reads."""
    return {"arch": "fconv-mnist", "dataset": describe(variant), "epochs": epochs, "init": "xavier", "l2": L2,
            "l2_on": "features", "seed": seed, "test_accuracy": round(accuracy, 4), "train_seconds": round(seconds),
            "widths": list(WIDTHS)}


def run_variant(variant: str, epochs: int, seed: int, out: Path, data_dir: Path,
                font_dirs: list[str | Path] | None = None) -> dict[str, Any]:
    """Train one variant's net, write its kernel-set files and its record under `out`; return the record."""
    check_variant(variant)
    data = notmnist_style(data_dir, font_dirs, progress=False)
    xtr, ytr, xte, yte = variant_data(data.train.tensors, data.test.tensors, variant)
    t0 = time.monotonic()
    net = train_net(xtr, ytr, epochs, seed)
    seconds = time.monotonic() - t0
    with torch.no_grad():
        accuracy = (net(xte).argmax(1) == yte).float().mean().item()
    name = f"glyph-{variant}" if seed == 0 else f"glyph-{variant}-s{seed}"
    meta = {"made_by": "training/glyph_variants.py", "variant": variant, "epochs": str(epochs), "seed": str(seed),
            "test_accuracy": f"{accuracy:.4f}"}
    out.mkdir(parents=True, exist_ok=True)
    for layer, k in ((3, 5), (0, 7)):
        w = net.features[layer].weight.detach().reshape(-1, k, k)
        save_tensors(out / f"{name}-{k}x{k}.safetensors", {"train": w, "heldout": torch.zeros(0, k, k)}, meta)
    records_path = out / RECORDS
    records = json.loads(records_path.read_text()) if records_path.is_file() else {}
    records[name] = net_record(variant, epochs, seed, accuracy, seconds)
    write_text_atomic(records_path, json.dumps(records, indent=1, sort_keys=True) + "\n")
    return records[name]


def _variant(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_variant(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("variant", callback=_variant)
@click.argument("epochs", type=click.IntRange(1))
@click.argument("seed", type=click.IntRange(0))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("build/glyph-variants"),
              show_default=True, help="Folder for the kernel-set files and glyph-nets.json.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("build/paper3/work/data"),
              show_default=True, help="Render cache of `python -m training build` (rendered on first use).")
@click.option("--font-dir", "font_dirs", multiple=True, type=click.Path(file_okay=False),
              help=f"Font folder (repeatable; default the system font folders: {', '.join(DEFAULT_FONT_DIRS)}).")
def main(variant: str, epochs: int, seed: int, out: Path, data_dir: Path, font_dirs: tuple[str, ...]) -> None:
    """Train the 32/64 source net of glyph VARIANT for EPOCHS epochs with torch seed SEED; write its kernels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core a net: several variants train side by side
    try:
        record = run_variant(variant, epochs, seed, out, data_dir, list(font_dirs) or None)
    finally:
        torch.set_num_threads(threads)
    click.echo(f"{variant} epochs {epochs} seed {seed}: test accuracy {record['test_accuracy']:.4f}, "
               f"{record['train_seconds']} s → {out}")


if __name__ == "__main__":
    main()
