"""Source-net records (`nets.json`) for the nets of `glyph_nets.py`, so that priors fitted to their kernels can name
them in their provenance and model card (`dense_vae --sources glyph-size/nets.json`; issue #12, session 33).

    PYTHONPATH=. python training/results/runs/glyph-size/records.py [OUT [NAME ...]]

OUT defaults to ``nets.json`` here; NAMEs (``glyph-base``, ``glyph-shift6``, ...) pick nets, all of them by default, so
that a prior's records name exactly the nets it was fitted to.

Each net's record comes from what `glyph_nets.py` left: the variant, epochs, seed and test accuracy in its 5x5
kernel file's metadata, its training time in its log. The protocol fields are the script's fixed ones (32/64
`fconv-mnist`, Xavier init, L2 1e-3 on the conv layers). The dataset names the render variant, so a card says which
nets saw altered renders; the renders themselves are the build's (`build-e30/data.json` describes them).
"""

import json
import re
import sys
from pathlib import Path

from safetensors import safe_open

HERE = Path(__file__).parent
PLAIN = {"base": "notmnist-style", "standard": "notmnist-style, inputs standardised"}
ALTERED = (("shift", "notmnist-style, renders moved by up to {} px"),
           ("invert", "notmnist-style, {}% of renders inverted"),
           ("labels", "notmnist-style, {}% of training labels redrawn"))


def dataset(variant: str) -> str:
    """What a variant's net was trained on, in words."""
    if variant.isdigit():
        return f"notmnist-style, glyphs rescaled to {variant} px"
    for kind, words in ALTERED:
        if variant.startswith(kind):
            return words.format(variant[len(kind):])
    return PLAIN[variant]


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "nets.json"
    names = sys.argv[2:] or sorted(p.name.removesuffix("-5x5.safetensors")
                                   for p in HERE.glob("glyph-*-5x5.safetensors"))
    nets = {}
    for name in names:
        with safe_open(str(HERE / f"{name}-5x5.safetensors"), "pt") as f:
            meta = json.loads(f.metadata()["meta"])
        log = (HERE / f"{name}.log").read_text()
        seconds = float(re.search(r"acc [0-9.]+ (\d+)s", log).group(1))
        nets[name] = {"arch": "fconv-mnist", "dataset": dataset(meta["variant"]), "epochs": int(meta["epochs"]),
                      "init": "xavier", "l2": 1e-3, "l2_on": "features", "seed": int(meta["seed"]),
                      "test_accuracy": float(meta["test_accuracy"]), "train_seconds": seconds, "widths": [32, 64]}
    out.write_text(json.dumps(nets, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(nets)} records")


if __name__ == "__main__":
    main()
