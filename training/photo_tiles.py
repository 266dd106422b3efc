"""32×32 RGB tiles of real photographs (training/photos.py), labelled by a pretext task, as `ImageData`.

Photographs have no class labels, but two labels come with them for free:

* ``photo-id`` — which training photo a tile was cut from (one class per photo, like CIFAR-100's many
  classes). A random eighth of each photo's tiles forms the test split, so train and test tiles of a class
  never overlap, though they come from the same photo.
* ``rotation`` — a tile rotated by k·90°, label k (Gidaris et al., 2018). Train tiles come from the training
  photos, test tiles from the test photos, so the test split is made of unseen photographs.

``photo-heldout`` is the evaluation task of the experiments (Fig. 3 and 4 on natural images): photo identity
over the photos of the held-out source (`photos.HELDOUT_SOURCE`), which no source network has seen; a random
quarter of each photo's tiles is its test split.

Each photo is resized so that its shorter side is 256 and then 128 pixels (a two-level pyramid) and cut into
non-overlapping 32×32 tiles, so every photo gives about the same number of tiles whatever its resolution.
Tiles are standardised per channel with the train split's statistics and cached as uint8 safetensors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .image_data import ImageData, load_array_cache, save_array_cache, standardise
from .photos import Photo, fetch_photos, load_photo

TILE = 32
SHORT_SIDES = (256, 128)
PRETEXTS = ("photo-id", "rotation", "photo-heldout")
TEST_FRACTION = {"photo-id": 1 / 8, "photo-heldout": 1 / 4}
SPLITS = {"photo-id": ("train",), "rotation": ("train", "test"), "photo-heldout": ("heldout-domain",)}


def photo_tiles(image: Image.Image, short_sides: tuple[int, ...] = SHORT_SIDES, tile: int = TILE) -> np.ndarray:
    """Non-overlapping tile×tile crops of `image` at each pyramid level, as uint8 (n, 3, tile, tile)."""
    out = []
    for side in short_sides:
        scale = side / min(image.size)
        w, h = max(tile, round(image.width * scale)), max(tile, round(image.height * scale))
        a = np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))
        rows, cols = h // tile, w // tile
        a = a[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile, 3).transpose(0, 2, 4, 1, 3)
        out.append(a.reshape(-1, 3, tile, tile))
    return np.concatenate(out)


def _tiles_by_photo(root: Path, photos: list[Photo]) -> list[np.ndarray]:
    return [photo_tiles(load_photo(root, p)) for p in photos]


def build_pretext(pretext: str, root: Path, photos: list[Photo], seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """Tiles and labels of one pretext task (uint8 images, int64 labels) and facts about them."""
    if pretext not in PRETEXTS:
        raise ValueError(f"unknown photo pretext {pretext!r}; known: {', '.join(PRETEXTS)}")
    rng = np.random.default_rng(seed)
    picked = {s: sorted((p for p in photos if p.split == s), key=lambda p: p.id) for s in ("train", "test", "heldout-domain")}
    arrays: dict[str, list[np.ndarray]] = {"xtr": [], "ytr": [], "xte": [], "yte": []}
    if pretext == "rotation":
        for split, (xk, yk) in (("train", ("xtr", "ytr")), ("test", ("xte", "yte"))):
            for tiles in _tiles_by_photo(root, picked[split]):
                k = rng.integers(0, 4, len(tiles))
                arrays[xk].append(np.stack([np.rot90(t, int(r), axes=(1, 2)) for t, r in zip(tiles, k)]))
                arrays[yk].append(k)
        classes = 4
        used = picked["train"] + picked["test"]
    else:
        used = picked[SPLITS[pretext][0]]
        for label, tiles in enumerate(_tiles_by_photo(root, used)):
            test = rng.permutation(len(tiles))[: max(1, round(len(tiles) * TEST_FRACTION[pretext]))]
            mask = np.zeros(len(tiles), bool)
            mask[test] = True
            arrays["xtr"].append(tiles[~mask]), arrays["ytr"].append(np.full((~mask).sum(), label))
            arrays["xte"].append(tiles[mask]), arrays["yte"].append(np.full(mask.sum(), label))
        classes = len(used)
    out = {k: np.concatenate(v).astype(np.int64 if k.startswith("y") else np.uint8) for k, v in arrays.items()}
    sources = sorted({p.source for p in used})
    info = {"pretext": pretext, "classes": classes, "photos": len(used), "sources": sources,
            "photos_per_source": {s: sum(p.source == s for p in used) for s in sources},
            "licences": sorted({p.licence for p in used}), "train_images": len(out["ytr"]),
            "test_images": len(out["yte"]), "tile": TILE, "short_sides": list(SHORT_SIDES), "seed": seed,
            "photo_sha256": hashlib.sha256("".join(p.sha256 for p in used).encode()).hexdigest(),
            "photo_list": [dict(id=p.id, package=p.package, version=p.version, licence=p.licence, sha256=p.sha256,
                                split=p.split) for p in used]}
    return out, info


def describe(info: dict) -> str:
    """One line for provenance: what the tiles are and where they come from."""
    what = {"photo-id": f"label = which of {info['classes']} training photos a tile is from",
            "rotation": "label = the tile's rotation by k·90° (train tiles from training photos, test tiles from "
                        "test photos)",
            "photo-heldout": f"label = which of the {info['classes']} held-out-domain photos a tile is from"}[info["pretext"]]
    return (f"{info['train_images']} train / {info['test_images']} test 32x32 RGB tiles of {info['photos']} real "
            f"photographs ({', '.join(f'{s}: {n}' for s, n in info['photos_per_source'].items())}; licences "
            f"{', '.join(info['licences'])}), pyramid levels with shorter side {'/'.join(map(str, info['short_sides']))} "
            f"px; {what}; standardised per channel with train statistics")


def photo_data(pretext: str, photo_root: str | Path, cache_dir: str | Path, seed: int = 0, progress: bool = True,
               photos: list[Photo] | None = None) -> ImageData:
    """The tiles of pretext task `pretext`, fetching the photographs into `photo_root` on first use.

    `photos` overrides the catalog (the tiny test builds pass one photo shipped with matplotlib).
    """
    root = Path(photo_root)
    photos = photos if photos is not None else fetch_photos(root, progress=progress)
    key = hashlib.sha256(json.dumps([pretext, seed, TILE, SHORT_SIDES, sorted(p.sha256 + p.split for p in photos)])
                         .encode()).hexdigest()[:12]
    cache = Path(cache_dir) / f"photos-{pretext}-{key}.safetensors"
    if cache.is_file():
        arrays, info = load_array_cache(cache)
    else:
        arrays, info = build_pretext(pretext, root, photos, seed)
        save_array_cache(cache, arrays, info)
    train, test, stats = standardise(arrays["xtr"], arrays["ytr"], arrays["xte"], arrays["yte"])
    info = {**info, "standardise": stats}
    return ImageData(train, test, info["classes"], describe(info), info)
