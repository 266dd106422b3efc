"""Which pretext label the photo source nets learn from: measured by how well their features transfer.

    python -m training.experiments.pretext --out build/runs/pretext

For each pretext of training/photo_tiles.py (``photo-id``, ``rotation``) and each source architecture of the
photo recipes, one source net is trained for the same number of steps with the build's own loop, then
frozen, and a linear classifier on its pooled features is trained on the held-out photo task
(``photo-heldout``, Fig. 3's protocol in training/experiments/natural.py). Better transfer means the
kernels carry more of what photographs share. Results append to ``pretext.csv``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch
from accelerate import Accelerator

from training import loops
from training.cli_options import CONTEXT, list_option
from training.datasets import load_image_data
from training.recipes import PHOTO_CIFARNET, PHOTO_RESNET
from training.source_nets import build_source_net

from .natural import Settings, fig3
from .records import append_rows

PRETEXT_DATA = ("photo-id", "photo-rotation")
COLUMNS = ["arch", "pretext", "steps", "seed", "pretext_test_accuracy", "probe_accuracy", "probe_nll", "seconds"]


@click.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of pretext.csv (rows are appended) and the nets' partial checkpoints.")
@click.option("--steps", type=click.IntRange(1), default=600, show_default=True,
              help="Training steps per source net (batch 128).")
@list_option("--seeds", convert=int, default=(0,), help="Seeds of the source nets (comma-separated, repeatable).")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Folder holding photos/ (fetched if absent) and the data cache.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Torch threads.")
def main(out: Path, steps: int, seeds: tuple[int, ...], data_root: Path, threads: int) -> None:
    """Train one source net per photo pretext and architecture; score its frozen features on unseen photos."""
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pretext.csv"
    target = load_image_data("photo-heldout", data_root / "cache", data_root=data_root, progress=False)
    for recipe in (PHOTO_RESNET, PHOTO_CIFARNET):
        for name in PRETEXT_DATA:
            data = load_image_data(name, data_root / "cache", data_root=data_root, progress=False)
            epochs = max(1, round(steps * recipe.batch_size / len(data.train)))
            for seed in seeds:
                t0 = time.monotonic()
                torch.manual_seed(seed)
                net = build_source_net(recipe.arch, recipe.widths, data.num_classes, data.image_shape)
                spec = loops.LoopSpec(epochs, recipe.batch_size, recipe.lr, seed, f"{recipe.arch} {name}")
                ckpt = out / f"{recipe.arch}-{name}-{seed}.partial.safetensors"
                loops.run_training(Accelerator(cpu=True), net, data.train.tensors, spec, ckpt,
                                   loops.classifier_loss(recipe.l2), progress=False)
                ckpt.unlink(missing_ok=True)
                pre = loops.accuracy(Accelerator(cpu=True), net, data.test)
                acc, nll = fig3(net, target, Settings(), seed)
                row = dict(arch=recipe.arch, pretext=name, steps=epochs * -(-len(data.train) // recipe.batch_size),
                           seed=seed, pretext_test_accuracy=round(pre, 4), probe_accuracy=round(acc, 4),
                           probe_nll=round(nll, 4), seconds=round(time.monotonic() - t0))
                append_rows(path, COLUMNS, [row])
                click.echo(row)


if __name__ == "__main__":
    main()
