"""Files and folders that appear complete or not at all: written beside the destination, then renamed into place.

Every writer in the package goes through `staged_file` (or `write_bytes_atomic` / `write_text_atomic`) for
single files and `staged_folder` for folders, so a failed or interrupted write never leaves a half-written
destination or a temporary file behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

# How often staged_folder retries the final rename when another process renamed a folder in first.
_RENAME_ATTEMPTS = 10


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


def _through_link(path: Path) -> Path:
    """Where a write to `path` lands: the file or folder a symbolic link points at (the link itself stays)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _naming(e: OSError, shown: str | os.PathLike, internal: str | os.PathLike | None = None) -> OSError:
    """`e` re-made to name `shown` (the path the caller gave) instead of a temporary path.

    With `internal`, only an error that named `internal` (or no file) is re-made; without, every error is.
    """
    if e.errno is None:
        return e
    if internal is not None and os.fspath(e.filename or "") not in (os.fspath(internal), ""):
        return e
    return type(e)(e.errno, e.strerror, os.fspath(shown))


@contextmanager
def staged_file(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary path in `path`'s folder; on success it replaces `path`, on error it is removed.

    The temporary file is created with mkstemp (unique, so concurrent writers never share it) and ends
    with `suffix` (for writers that pick a format by extension). On a clean exit it gets the mode a plain
    open() would give (an existing file's mode, else the umask's) and is renamed onto `path`, so readers
    see the old file or the new one, never a mix. A `path` that is a symbolic link is written through: the
    file it points at is replaced and the link stays a link. OSErrors name `path`, never the temporary file.
    """
    shown = Path(path)
    dest = _through_link(shown)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    except OSError as e:
        raise _naming(e, shown) from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
            if dest.exists():
                tmp.chmod(dest.stat().st_mode & 0o7777)
            else:
                ordinary_mode(tmp)
            os.replace(tmp, dest)
        except OSError as e:
            raise _naming(e, shown, tmp) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through `staged_file`: the old contents or the new, never a mix."""
    with staged_file(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through `staged_file`: the old contents or the new, never a mix."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _set_aside(target: Path) -> Path | None:
    """Move `target` into a fresh hidden holder folder beside it and return the holder (None if it vanished).

    The holder's name comes from mkdtemp, so a holder left behind by a killed process never blocks this one.
    """
    holder = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    try:
        target.rename(holder / target.name)
    except FileNotFoundError:
        holder.rmdir()
        return None
    return holder


@contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside `target`; on success it replaces `target`, on error it is removed.

    The old `target`, if any, is moved aside before the new one is renamed in and deleted after, so at
    every moment `target` is either the complete old folder or the complete new one. A `target` that is a
    symbolic link is written through: the folder it points at is replaced and the link stays a link. When
    another process renames its own folder in between, the rename is retried; the last writer wins.
    """
    shown = Path(target)
    target = _through_link(shown)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise OSError(f"cannot write to {shown}: {e.strerror or e}") from None
    holders: list[Path] = []
    try:
        yield tmp
        default_permissions(tmp)
        for attempt in range(_RENAME_ATTEMPTS):
            if os.path.lexists(target):
                holder = _set_aside(target)
                if holder is not None:
                    holders.append(holder)
            try:
                tmp.rename(target)
                break
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == _RENAME_ATTEMPTS - 1:
                    raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if holders and not os.path.lexists(target):
            with suppress(OSError):
                (holders[-1] / target.name).rename(target)
        raise
    finally:
        for holder in holders:
            shutil.rmtree(holder, ignore_errors=True)
