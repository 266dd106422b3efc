"""Results on disk: one CSV per experiment, appended and flushed run by run, so a killed job keeps what finished.

Every row carries ``run_id`` (which run), ``protocol`` (the setting's hash), ``run_seconds`` (the run's
wall time, data loading and evaluation included) and ``device`` (where it ran); a run counts as done when a
row with its id and protocol is in the file. A run writes all its rows in one append, so a run is either
wholly recorded or not at all (a line cut off by a kill is ignored on reading).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable


KEYS = ("run_id", "protocol", "run_seconds", "device")  # written by the runner into every row of a run


class ResultsFile:
    """`DIR/<experiment>.csv` with a fixed column list."""

    def __init__(self, path: str | os.PathLike, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = [*KEYS, *[c for c in columns if c not in KEYS]]

    def rows(self) -> list[dict[str, str]]:
        """Every complete row in the file (empty if there is none)."""
        if not self.path.is_file():
            return []
        with self.path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return [r for r in reader if None not in r and all(v is not None for v in r.values())]

    def done(self, protocol: str) -> set[str]:
        """Ids of the runs recorded under `protocol`."""
        return {r["run_id"] for r in self.rows() if r["protocol"] == protocol}

    def append(self, rows: Iterable[dict]) -> None:
        """Append `rows` (dicts over the columns) in one write, then flush to disk."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="raise", lineterminator="\n")
        new = not self.path.is_file() or self.path.stat().st_size == 0
        if new:
            writer.writeheader()
        else:
            self.check_header()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="", encoding="utf-8") as f:
            if not new:
                self._end_partial_line(f)
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def check_header(self) -> None:
        """Raise if the file on disk was written with other columns (e.g. by an older version)."""
        with self.path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if header != self.columns:
            raise ValueError(f"{self.path}: its columns {header} are not {self.columns}; "
                             "write to a fresh --out folder (or move this file away)")

    def _end_partial_line(self, f) -> None:
        """If a kill left the last line unterminated, end it so the new rows start on their own line."""
        with self.path.open("rb") as r:
            r.seek(-1, os.SEEK_END)
            if r.read(1) != b"\n":
                f.write("\n")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def append_rows(path: str | os.PathLike, columns: list[str], rows: Iterable[dict]) -> None:
    """Append `rows` to a plain CSV (header written with the first rows), for the scripts without run ids."""
    path = Path(path)
    new = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)
