"""Write kernel-set files for ``dense_vae.py --kernel-set`` from single source nets (issue #12's narrow-net priors).

    python -m training.experiments.export_kernels --net NET.safetensors --layer features.3 --kernel-size 5 --out F
    python -m training.experiments.export_kernels --kernel-set BUILD_SET.safetensors --part heldout --as heldout --out F

A build's kernel set (``training/kernel_sets.py``) pools every source net of one build and holds out its last
nets. To fit a prior to the nets of several builds instead, each net's kernels go into a file of their own, with
all of them on one side ("train" or "heldout", ``--as``) and none on the other; ``dense_vae.py`` pools the files
it is given and drops small-norm kernels at the trough of the pooled histogram, so no threshold is applied here.
The source is either one conv layer of a source-net checkpoint (``--net``, ``--layer``, ``--kernel-size``) or one
part of a build's kernel-set file (``--kernel-set``, ``--part``), e.g. the held-out net of another build as a
common yardstick. The file's metadata names its source. An existing ``--out`` is never overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.checkpoint import load_tensors, save_tensors
from training.kernel_sets import layer_kernels

PARTS = ("train", "heldout")


def export(kernels: torch.Tensor, side: str, out: Path, source: dict[str, str]) -> Path:
    """Write `kernels` (n, k, k) as the `side` part of a kernel-set file at `out`, the other part empty."""
    if side not in PARTS:
        raise ValueError(f"side must be one of {PARTS}, got {side!r}")
    if out.exists():
        raise FileExistsError(f"{out} exists already: give a new --out")
    k = kernels.shape[-1]
    empty = torch.zeros(0, k, k)
    parts = {p: (kernels.float().contiguous() if p == side else empty) for p in PARTS}
    return save_tensors(out, parts, {**source, "part": side, "kernels": len(kernels)})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.experiments.export_kernels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--net", type=Path, help="a source-net checkpoint (.safetensors)")
    src.add_argument("--kernel-set", type=Path, help="a build's kernel-set file")
    p.add_argument("--layer", help="with --net: the conv layer, e.g. features.0")
    p.add_argument("--kernel-size", type=int, help="with --net: the layer's kernel size")
    p.add_argument("--part", choices=PARTS, help="with --kernel-set: which of its parts to take")
    p.add_argument("--as", dest="side", choices=PARTS, default="train", help="the part of --out they go into")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.out.exists():
        p.error(f"{a.out} exists already: give a new --out")
    if a.net:
        if not a.layer or not a.kernel_size:
            p.error("--net needs --layer and --kernel-size")
        state, _ = load_tensors(a.net)
        kernels = layer_kernels(state, a.layer, a.kernel_size)
        source = {"net": str(a.net), "layer": a.layer}
    else:
        if not a.part:
            p.error("--kernel-set needs --part")
        kernels = load_tensors(a.kernel_set)[0][a.part]
        source = {"kernel_set": str(a.kernel_set), "kernel_set_part": a.part}
    export(kernels, a.side, a.out, source)
    norms = kernels.flatten(1).norm(dim=1)
    print(f"{a.out}: {len(kernels)} kernels as {a.side}, mean norm {norms.mean():.4f}")


if __name__ == "__main__":
    main()
