"""Folders that appear complete or not at all: build beside the destination, then rename into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def ordinary_mode(path: Path) -> None:
    """Give `path` the mode a plain open()/mkdir() would have: mkstemp/mkdtemp and safetensors make them private."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def default_permissions(folder: Path) -> None:
    """`folder` and everything directly in it get ordinary modes (see ordinary_mode)."""
    ordinary_mode(folder)
    for path in folder.iterdir():
        ordinary_mode(path)


@contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside `target`; on success it replaces `target`, on error it is removed.

    The old `target`, if any, is renamed aside before the new one is renamed in and deleted after, so at
    every moment `target` is either the complete old folder or the complete new one.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise OSError(f"cannot write to {target}: {e.strerror or e}") from None
    try:
        yield tmp
        default_permissions(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
