"""Kernels given as NumPy arrays (``.npy``, or several arrays in one ``.npz``), read with ``allow_pickle=False``.

Each array is one layer, named by the file's stem (``.npy``) or its key in the ``.npz``. Accepted shapes:
(n, k, k) and (n, 1, k, k), n kernels; (out, in, k, k), a convolution's weight, out·in kernels. Arrays of
another rank or kernel size are skipped with the reason. An object-dtype array (which only a pickle could
rebuild) or one with NaN or infinite values refuses the whole file with one line.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from .source_layers import LayerCollector, SourceKernels, check_pin, read_source_file


def _arrays(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """The arrays of a .npy or .npz file's bytes, by layer name; never unpickles."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {path.stem: loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise ValueError(f"{path}: refused: holds an object-dtype array or pickled data, which only a pickle "
                             f"could rebuild; save the kernels as a numeric array") from None
        raise ValueError(f"{path}: not a .npy/.npz array file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a .npy/.npz array file ({type(e).__name__})") from None


def read_array_kernels(path: str | os.PathLike, kernel_size: int, sha256: str | None = None) -> SourceKernels:
    """The k×k kernels of the arrays in the ``.npy``/``.npz`` file at `path` (see the module docstring).

    `sha256`, when a recipe pins the file, must match it. Raises ValueError with one line when refused.
    """
    path = Path(path)
    data, digest = read_source_file(path, "array file")
    check_pin(path, digest, sha256)
    arrays = _arrays(data, path)
    found = LayerCollector(kernel_size)
    for name, array in arrays.items():
        if array.dtype.kind == "O":
            raise ValueError(f"{path}: refused: array {name!r} has object dtype; save the kernels as a numeric array")
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise ValueError(f"{path}: refused: array {name!r} holds {bad} NaN or infinite values")
        weight = array[:, None] if array.ndim == 3 else array
        found.add(name, weight, None, shape=array.shape)
    return found.result(path, digest, "numpy")
