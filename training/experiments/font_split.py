"""Split the installed fonts into a light and a heavy half by stroke weight (issue #12's font-selection ablation).

    python -m training.experiments.font_split --out build/font-split

Real notMNIST was drawn from fonts found on the web, and our notMNIST-style data from Debian's font packages, so
the two sets of letters may differ in what kind of face dominates. This measures each usable font's ink fraction
(training/fonts.py ``ink_fraction``: mean intensity of its ten letters drawn centred, without jitter) and splits
the fonts at the median into ``OUT/light`` and ``OUT/heavy``: folders of symbolic links to the font files, one
sub-folder per file, so the file names (which seed each font's renders) stay as they are. Each folder is a
``--font-dir`` for ``python -m training build``, which renders and splits it by family as it does the full set.
``fonts.csv`` records every font's ink fraction and half; ``split.json`` the median and the counts.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from training import fonts

HALVES = ("light", "heavy")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.experiments.font_split", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for light/, heavy/, fonts.csv and split.json")
    p.add_argument("--font-dir", action="append", default=[], help="font folders (default: the system's)")
    a = p.parse_args(argv)
    taken = [d for d in (*(a.out / h for h in HALVES), a.out / "fonts.csv", a.out / "split.json") if d.exists()]
    if taken:
        p.error(f"{', '.join(map(str, taken))} exists already: give a new --out")
    dirs = a.font_dir or list(fonts.DEFAULT_FONT_DIRS)
    faces, rejected = fonts.find_fonts(dirs)
    if len(faces) < 4:
        p.error(f"found {len(faces)} usable fonts under {dirs}: too few to split (run training/install_fonts.sh)")
    ink = np.array([fonts.ink_fraction(f.path) for f in faces])
    median = float(np.median(ink))
    rows = []
    for i, (face, value) in enumerate(zip(faces, ink)):
        half = HALVES[int(value > median)]
        link = a.out / half / f"{i:05d}" / face.path.name
        link.parent.mkdir(parents=True)
        link.symlink_to(face.path.resolve())
        rows.append({"font": face.path.name, "family": face.family, "sha1": face.sha1, "ink": round(float(value), 5),
                     "half": half})
    with (a.out / "fonts.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = {"font_dirs": dirs, "usable_fonts": len(faces), "rejected": rejected, "median_ink": round(median, 5),
               "fonts": {h: sum(r["half"] == h for r in rows) for h in HALVES},
               "families": {h: len({r["family"] for r in rows if r["half"] == h}) for h in HALVES},
               "mean_ink": {h: round(float(np.mean([r["ink"] for r in rows if r["half"] == h])), 5) for h in HALVES}}
    (a.out / "split.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
