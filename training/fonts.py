"""notMNIST-style glyphs: letters A–J rendered from real font files as 28×28 grayscale images.

notMNIST (Bulatov, 2011) was made by taking the letters A–J from thousands of public fonts and fitting
each glyph into a 28×28 box. It cannot be downloaded on these machines, so this module makes the same
kind of data from whatever fonts are installed (training/install_fonts.sh installs a few hundred Debian
font files; the tests use the fonts matplotlib ships). Each (font, letter) is rendered several times with
light augmentation — small rotation, aspect and scale jitter, sub-box shift — from a random generator
seeded by (seed, font file name), so a render does not depend on which other fonts are installed.

A font is used if its cmap maps all of A–J and it draws ten distinct, non-empty shapes for them. Symbol
fonts that map A–J to distinct non-letter shapes (math extension fonts, dingbats) pass this filter, as
dingbat faces are part of the original notMNIST too.

Fonts are split into train and test **by family** (every weight and style of a family goes to the same
side), so test letters come from typefaces the source networks never saw.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LETTERS = "ABCDEFGHIJ"
IMAGE_SIZE = 28
FONT_SUFFIXES = {".ttf", ".otf"}
DEFAULT_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
_RENDER_PX = 64  # glyphs are drawn at this size, cropped to their ink, then fitted into the 28×28 box


@dataclass(frozen=True)
class FontFace:
    """One usable font file: where it is, its family (the unit of the train/test split), its file hash."""

    path: Path
    family: str
    sha1: str


def matplotlib_font_dir() -> Path:
    """The folder of TrueType fonts matplotlib ships (DejaVu, STIX, Computer Modern)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _family_and_letters(path: Path) -> tuple[str, bool]:
    """(family name, whether the cmap maps every letter A–J) read with fontTools; raises on a bad file."""
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True, fontNumber=0) as font:
        cmap = font.getBestCmap() or {}
        family = font["name"].getBestFamilyName() or path.stem
    return family, all(ord(c) in cmap for c in LETTERS)


def _draw_glyph(font: ImageFont.FreeTypeFont, letter: str) -> Image.Image | None:
    """The letter's ink, cropped to its bounding box, white on black; None if it draws nothing."""
    canvas = Image.new("L", (_RENDER_PX * 3, _RENDER_PX * 3), 0)
    ImageDraw.Draw(canvas).text((_RENDER_PX, _RENDER_PX), letter, fill=255, font=font)
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


def _fit(glyph: Image.Image, rng: np.random.Generator | None) -> np.ndarray:
    """Fit a cropped glyph into the 28×28 box; with `rng`, jitter rotation, aspect, scale and position."""
    if rng is not None:
        glyph = glyph.rotate(float(rng.uniform(-8, 8)), resample=Image.BICUBIC, expand=True)
        glyph = glyph.crop(glyph.getbbox() or (0, 0, *glyph.size))
        aspect, side = float(rng.uniform(0.85, 1.15)), float(rng.uniform(20, 28))
    else:
        aspect, side = 1.0, 26.0
    w, h = glyph.size[0] * aspect, glyph.size[1]
    scale = side / max(w, h)
    size = (max(1, min(IMAGE_SIZE, round(w * scale))), max(1, min(IMAGE_SIZE, round(h * scale))))
    small = glyph.resize(size, Image.LANCZOS)
    free_x, free_y = IMAGE_SIZE - size[0], IMAGE_SIZE - size[1]
    x = int(rng.integers(0, free_x + 1)) if rng is not None else free_x // 2
    y = int(rng.integers(0, free_y + 1)) if rng is not None else free_y // 2
    out = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    out.paste(small, (x, y))
    return np.asarray(out, dtype=np.uint8)


def _usable_glyphs(path: Path) -> list[Image.Image] | None:
    """The ten cropped glyphs if the font draws ten distinct, non-empty letters A–J, else None.

    Fonts that map A–J to one 'missing glyph' box, or draw nothing, are rejected here.
    """
    try:
        font = ImageFont.truetype(str(path), _RENDER_PX)
        glyphs = [_draw_glyph(font, c) for c in LETTERS]
    except (OSError, ValueError):
        return None
    if any(g is None or max(g.size) < 8 for g in glyphs):
        return None
    plain = np.stack([_fit(g, None) for g in glyphs]).astype(np.float32) / 255.0
    dist = np.abs(plain[:, None] - plain[None]).mean((2, 3))
    if (dist[np.triu_indices(len(LETTERS), 1)] < 0.02).any():
        return None
    return glyphs


def ink_fraction(path: Path) -> float:
    """Mean intensity (0-1) of the font's letters A-J drawn centred in the 28×28 box without jitter.

    A measure of stroke weight: light text faces score low, bold and display faces high.
    """
    glyphs = _usable_glyphs(path)
    if glyphs is None:
        raise ValueError(f"{path}: not a usable font (it must draw ten distinct letters A-J)")
    return float(np.mean([_fit(g, None) for g in glyphs]) / 255.0)


def find_fonts(dirs: list[str | Path]) -> tuple[list[FontFace], dict[str, int]]:
    """Usable fonts under `dirs`, sorted by file name, duplicates (same bytes) removed; plus reject counts."""
    files = sorted({p for d in dirs if Path(d).is_dir() for p in Path(d).rglob("*") if p.suffix.lower() in FONT_SUFFIXES},
                   key=lambda p: (p.name, str(p)))
    faces: list[FontFace] = []
    seen: set[str] = set()
    rejected = {"duplicate": 0, "unreadable": 0, "no A-J": 0, "bad glyphs": 0}
    for path in files:
        sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
        if sha1 in seen:
            rejected["duplicate"] += 1
            continue
        seen.add(sha1)
        try:
            family, has_letters = _family_and_letters(path)
        except Exception:  # fontTools raises many types on malformed files; any of them means "unusable"
            rejected["unreadable"] += 1
            continue
        if not has_letters:
            rejected["no A-J"] += 1
            continue
        if _usable_glyphs(path) is None:
            rejected["bad glyphs"] += 1
            continue
        faces.append(FontFace(path, family, sha1))
    return faces, rejected


def split_by_family(faces: list[FontFace], test_fraction: float, seed: int) -> tuple[list[FontFace], list[FontFace]]:
    """Deterministic train/test split of fonts with whole families on one side (at least one test family)."""
    families = sorted({f.family for f in faces})
    if len(families) < 2:
        raise ValueError(f"need fonts of at least 2 families to split by font, found {len(families)}: {families}")
    order = np.random.default_rng(seed).permutation(len(families))
    n_test = min(len(families) - 1, max(1, round(test_fraction * len(families))))
    test_families = {families[i] for i in order[:n_test]}
    return [f for f in faces if f.family not in test_families], [f for f in faces if f.family in test_families]


def render_fonts(faces: list[FontFace], renders_per_glyph: int, seed: int,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) uint8 and labels (n,) int64 (0 = 'A' … 9 = 'J') for every font × letter × render."""
    from tqdm.auto import tqdm

    images, labels = [], []
    for face in tqdm(faces, desc="render glyphs", unit="font", disable=not progress):
        glyphs = _usable_glyphs(face.path)
        if glyphs is None:
            raise ValueError(f"{face.path}: font no longer renders A-J (was it changed since it was listed?)")
        rng = np.random.default_rng([seed, zlib.crc32(face.path.name.encode())])
        for label, glyph in enumerate(glyphs):
            for _ in range(renders_per_glyph):
                images.append(_fit(glyph, rng))
                labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)
