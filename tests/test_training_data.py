"""Data of the training subtree: CIFAR's binary format, notMNIST-style rendering and its font split, MNIST-5k."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from training import fonts
from training.datasets import cifar_binary, mnist_5k, notmnist_style, read_cifar_binary


def write_cifar_records(path, labels: np.ndarray, images: np.ndarray) -> None:
    """Records in CIFAR's binary layout: label byte(s), then 1,024 R, 1,024 G, 1,024 B bytes."""
    labels = labels.reshape(len(labels), -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.concatenate([labels, images.reshape(len(images), -1)], axis=1).astype(np.uint8).tofile(path)


def random_cifar(rng, n, label_bytes, classes):
    labels = np.stack([rng.integers(0, 20, n), rng.integers(0, classes, n)], 1)[:, -label_bytes:]
    return labels, rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def test_cifar100_binary_reader_returns_fine_labels_and_rgb_planes(tmp_path):
    rng = np.random.default_rng(0)
    labels, images = random_cifar(rng, 7, 2, 100)
    images[3, 0], images[3, 1], images[3, 2] = 10, 20, 30  # one image with constant R, G, B planes
    write_cifar_records(tmp_path / "train.bin", labels, images)
    x, y = read_cifar_binary(tmp_path / "train.bin", label_bytes=2, label_index=1)
    assert x.shape == (7, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, labels[:, 1])
    np.testing.assert_array_equal(x, images)
    assert (x[3, 0] == 10).all() and (x[3, 1] == 20).all() and (x[3, 2] == 30).all()
    _, coarse = read_cifar_binary(tmp_path / "train.bin", label_bytes=2, label_index=0)
    np.testing.assert_array_equal(coarse, labels[:, 0])


def test_cifar_reader_rejects_a_file_that_is_not_whole_records(tmp_path):
    path = tmp_path / "test_batch.bin"
    np.zeros(3073 * 2 + 1, dtype=np.uint8).tofile(path)
    with pytest.raises(ValueError, match="test_batch.bin"):
        read_cifar_binary(path, label_bytes=1, label_index=0)


def test_cifar10_loader_reads_all_batches_and_standardises(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-bin"
    n_per = [5, 6, 7, 8, 9]
    for i, n in enumerate(n_per, 1):
        write_cifar_records(folder / f"data_batch_{i}.bin", *random_cifar(rng, n, 1, 10))
    test_labels, test_images = random_cifar(rng, 4, 1, 10)
    write_cifar_records(folder / "test_batch.bin", test_labels, test_images)
    data = cifar_binary("cifar10", tmp_path, download=False)
    assert len(data.train) == sum(n_per) and len(data.test) == 4 and data.num_classes == 10
    x = data.train.tensors[0]
    assert x.shape[1:] == (3, 32, 32)
    np.testing.assert_allclose(x.mean((0, 2, 3)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_array_equal(data.test.tensors[1].numpy(), test_labels[:, 0])
    assert "binary version" in data.provenance


def test_cifar_without_files_and_without_download_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-binary"):
        cifar_binary("cifar100", tmp_path, download=False)


@pytest.fixture(scope="module")
def mpl_faces():
    faces, _ = fonts.find_fonts([fonts.matplotlib_font_dir()])
    return faces


def test_matplotlib_fonts_give_usable_faces_and_reject_fonts_without_letters():
    faces, rejected = fonts.find_fonts([fonts.matplotlib_font_dir()])
    names = {f.path.name for f in faces}
    assert "DejaVuSans.ttf" in names and "DejaVuSerif-Bold.ttf" in names
    assert "STIXNonUni.ttf" not in names and "STIXSizOneSymReg.ttf" not in names  # no A-J in their cmaps
    assert "LastResortHE-Regular.ttf" not in names  # maps A-J, but draws one placeholder shape for all
    assert rejected["no A-J"] >= 2 and rejected["bad glyphs"] >= 1
    assert len({f.sha1 for f in faces}) == len(faces)


def test_font_split_is_by_family_and_disjoint(mpl_faces):
    train, test = fonts.split_by_family(mpl_faces, test_fraction=0.3, seed=0)
    assert test and train
    assert {f.path for f in train}.isdisjoint({f.path for f in test})
    assert {f.family for f in train}.isdisjoint({f.family for f in test})
    assert {f.path for f in train} | {f.path for f in test} == {f.path for f in mpl_faces}
    again = fonts.split_by_family(list(reversed(mpl_faces)), test_fraction=0.3, seed=0)[1]
    assert {f.path for f in again} == {f.path for f in test}


def test_rendering_is_deterministic_and_independent_of_other_fonts(mpl_faces):
    x1, y1 = fonts.render_fonts(mpl_faces[:3], 2, seed=5, progress=False)
    x2, _ = fonts.render_fonts(mpl_faces[:3], 2, seed=5, progress=False)
    x3, _ = fonts.render_fonts(mpl_faces[:3], 2, seed=6, progress=False)
    x4, _ = fonts.render_fonts(mpl_faces[1:3], 2, seed=5, progress=False)
    assert x1.shape == (3 * 10 * 2, 28, 28) and x1.dtype == np.uint8
    np.testing.assert_array_equal(y1[:20], np.repeat(np.arange(10), 2))
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, x3)
    np.testing.assert_array_equal(x1[20:], x4)
    assert (x1.reshape(len(x1), -1).max(1) > 200).all()  # every glyph has ink


def test_notmnist_style_records_an_unseen_test_font_list_and_caches(tmp_path):
    data = notmnist_style(tmp_path, [fonts.matplotlib_font_dir()], seed=0, renders_per_glyph=1, test_fraction=0.3,
                          progress=False)
    info = data.info
    assert set(info["train_fonts"]).isdisjoint(info["test_fonts"])
    assert info["num_fonts"] == len(info["train_fonts"]) + len(info["test_fonts"])
    assert len(data.train) == 10 * len(info["train_fonts"]) and len(data.test) == 10 * len(info["test_fonts"])
    assert f"{info['num_fonts']} font files" in data.provenance
    cache = tmp_path / info["cache"]
    stamp = cache.stat().st_mtime_ns
    again = notmnist_style(tmp_path, [fonts.matplotlib_font_dir()], seed=0, renders_per_glyph=1, test_fraction=0.3,
                           progress=False)
    assert cache.stat().st_mtime_ns == stamp
    assert (again.train.tensors[0] == data.train.tensors[0]).all()


def test_mnist_5k_is_real_and_class_balanced():
    data = mnist_5k(test_per_class=100, seed=0)
    assert len(data.train) == 4000 and len(data.test) == 1000
    counts = np.bincount(data.test.tensors[1].numpy(), minlength=10)
    np.testing.assert_array_equal(counts, 100)
    x = data.train.tensors[0]
    assert x.shape[1:] == (1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert 0.1 < float(x.mean()) < 0.2  # MNIST's mean intensity is ~0.13


def test_mnist_5k_without_a_test_split_keeps_every_digit_for_training():
    data = mnist_5k(test_per_class=0, seed=0)
    assert len(data.train) == 5000 and len(data.test) == 0


def test_ink_fraction_ranks_bold_above_regular_and_refuses_an_unusable_font():
    d = fonts.matplotlib_font_dir()
    regular, bold = fonts.ink_fraction(d / "DejaVuSans.ttf"), fonts.ink_fraction(d / "DejaVuSans-Bold.ttf")
    assert 0.05 < regular < bold < 0.6
    with pytest.raises(ValueError, match="not a usable font"):
        fonts.ink_fraction(d / "LastResortHE-Regular.ttf")


def test_font_split_links_each_font_into_one_half_that_renders_as_the_original(tmp_path, mpl_faces):
    from training.experiments import font_split

    split = ["--out", str(tmp_path), "--font-dir", str(fonts.matplotlib_font_dir())]
    assert CliRunner().invoke(font_split.main, split).exit_code == 0
    rows = list(csv.DictReader((tmp_path / "fonts.csv").open()))
    assert sorted(r["font"] for r in rows) == sorted(f.path.name for f in mpl_faces)
    median = json.loads((tmp_path / "split.json").read_text())["median_ink"]
    for r in rows:
        assert (r["half"] == "heavy") == (float(r["ink"]) > median)
    halves = {h: fonts.find_fonts([tmp_path / h])[0] for h in font_split.HALVES}
    assert {f.path.name for f in halves["heavy"]} == {r["font"] for r in rows if r["half"] == "heavy"}
    assert {f.sha1 for f in halves["light"]}.isdisjoint({f.sha1 for f in halves["heavy"]})
    linked = halves["light"][0]
    original = next(f for f in mpl_faces if f.sha1 == linked.sha1)
    np.testing.assert_array_equal(fonts.render_fonts([linked], 1, seed=3, progress=False)[0],
                                  fonts.render_fonts([original], 1, seed=3, progress=False)[0])
    again = CliRunner().invoke(font_split.main, split)  # never writes into an existing split
    assert again.exit_code == 2 and "exists already" in again.output
