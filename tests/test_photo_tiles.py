"""Tiling photographs into pretext-labelled 32x32 sets (training/photo_tiles.py), on the photo matplotlib ships."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.datasets import matplotlib_photo_dir, tiny_photos
from training.photo_tiles import build_pretext, photo_tiles


def test_tiles_are_exact_crops_of_each_pyramid_level():
    image = Image.open(matplotlib_photo_dir() / "grace_hopper.jpg").convert("RGB")  # 512 x 600
    tiles = photo_tiles(image, short_sides=(256, 128))
    # shorter side 256: 256 wide x 300 high -> 9 rows of 8 tiles; 128: 128 x 150 -> 4 rows of 4
    assert tiles.shape == (8 * 9 + 4 * 4, 3, 32, 32) and tiles.dtype == np.uint8
    level = np.asarray(image.resize((256, 300), Image.Resampling.LANCZOS))
    assert np.array_equal(tiles[0].transpose(1, 2, 0), level[:32, :32])
    assert np.array_equal(tiles[8 + 2].transpose(1, 2, 0), level[32:64, 64:96])  # row 1, column 2


def test_rotation_labels_rotate_the_tile_and_photo_id_splits_each_photo():
    photos = tiny_photos()
    arrays, info = build_pretext("rotation", matplotlib_photo_dir(), photos, seed=0)
    image = Image.open(matplotlib_photo_dir() / "grace_hopper.jpg")
    plain = photo_tiles(image)
    for tile, k, original in zip(arrays["xtr"], arrays["ytr"], plain):
        assert np.array_equal(tile, np.rot90(original, int(k), axes=(1, 2)))
    assert set(arrays["ytr"]) == {0, 1, 2, 3} and info["classes"] == 4

    arrays, info = build_pretext("photo-id", matplotlib_photo_dir(), photos[:1], seed=0)
    n = len(plain)
    assert len(arrays["xte"]) == round(n / 8) and len(arrays["xtr"]) == n - round(n / 8)
    train = {t.tobytes() for t in arrays["xtr"]}
    assert not any(t.tobytes() in train for t in arrays["xte"])  # a tile is in one split only
    with pytest.raises(ValueError, match="unknown photo pretext"):
        build_pretext("jigsaw", matplotlib_photo_dir(), photos, seed=0)
