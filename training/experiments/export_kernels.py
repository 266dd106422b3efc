"""Write kernel-set files for ``dense_vae.py --kernel-set`` from single source nets (the shipped notMNIST priors' recipe).

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

from pathlib import Path

import click
import torch

from training.training_state import load_tensors, save_tensors
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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--net", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A source-net checkpoint (.safetensors).")
@click.option("--kernel-set", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A build's kernel-set file.")
@click.option("--layer", help="With --net: the conv layer, e.g. features.0.")
@click.option("--kernel-size", type=int, help="With --net: the layer's kernel size.")
@click.option("--part", type=click.Choice(PARTS), help="With --kernel-set: which of its parts to take.")
@click.option("--as", "side", type=click.Choice(PARTS), default="train", show_default=True,
              help="The part of --out they go into.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The kernel-set file to write (new).")
def main(net: Path | None, kernel_set: Path | None, layer: str | None, kernel_size: int | None, part: str | None,
         side: str, out: Path) -> None:
    """Write one conv layer of --net, or one part of --kernel-set, as the --as part of a new kernel-set file --out."""
    if (net is None) == (kernel_set is None):
        raise click.UsageError("give exactly one of --net and --kernel-set")
    if out.exists():
        raise click.UsageError(f"{out} exists already: give a new --out")
    if net:
        if not layer or not kernel_size:
            raise click.UsageError("--net needs --layer and --kernel-size")
        state, _ = load_tensors(net)
        try:
            kernels = layer_kernels(state, layer, kernel_size)
        except (KeyError, ValueError) as e:
            raise click.UsageError(f"{net}: {e}") from None
        source = {"net": str(net), "layer": layer}
    else:
        if not part:
            raise click.UsageError("--kernel-set needs --part")
        kernels = load_tensors(kernel_set)[0][part]
        source = {"kernel_set": str(kernel_set), "kernel_set_part": part}
    export(kernels, side, out, source)
    norms = kernels.flatten(1).norm(dim=1)
    click.echo(f"{out}: {len(kernels)} kernels as {side}, mean norm {norms.mean():.4f}")


if __name__ == "__main__":
    main()
