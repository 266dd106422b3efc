"""Split the installed fonts into a light and a heavy half by stroke weight (the font-half source nets of notmnist-5x5).

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

import csv
import json
from pathlib import Path

import click
import numpy as np

from training import fonts

HALVES = ("light", "heavy")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for light/, heavy/, fonts.csv and split.json.")
@click.option("--font-dir", "font_dirs", multiple=True, help="Font folder (repeatable; default: the system's).")
def main(out: Path, font_dirs: tuple[str, ...]) -> None:
    """Split the usable fonts at the median ink fraction into OUT/light and OUT/heavy (folders of links)."""
    taken = [d for d in (*(out / h for h in HALVES), out / "fonts.csv", out / "split.json") if d.exists()]
    if taken:
        raise click.UsageError(f"{', '.join(map(str, taken))} exists already: give a new --out")
    dirs = list(font_dirs) or list(fonts.DEFAULT_FONT_DIRS)
    faces, rejected = fonts.find_fonts(dirs)
    if len(faces) < 4:
        raise click.UsageError(f"found {len(faces)} usable fonts under {dirs}: too few to split "
                               "(run training/install_fonts.sh)")
    ink = np.array([fonts.ink_fraction(f.path) for f in faces])
    median = float(np.median(ink))
    rows = []
    for i, (face, value) in enumerate(zip(faces, ink)):
        half = HALVES[int(value > median)]
        link = out / half / f"{i:05d}" / face.path.name
        link.parent.mkdir(parents=True)
        link.symlink_to(face.path.resolve())
        rows.append({"font": face.path.name, "family": face.family, "sha1": face.sha1, "ink": round(float(value), 5),
                     "half": half})
    with (out / "fonts.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = {"font_dirs": dirs, "usable_fonts": len(faces), "rejected": rejected, "median_ink": round(median, 5),
               "fonts": {h: sum(r["half"] == h for r in rows) for h in HALVES},
               "families": {h: len({r["family"] for r in rows if r["half"] == h}) for h in HALVES},
               "mean_ink": {h: round(float(np.mean([r["ink"] for r in rows if r["half"] == h])), 5) for h in HALVES}}
    (out / "split.json").write_text(json.dumps(summary, indent=1) + "\n")
    click.echo(json.dumps(summary))


if __name__ == "__main__":
    main()
