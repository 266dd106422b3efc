"""How far training moved source nets' kernels from their random init: is a prior learning training or init?

    python -m training.experiments.kernel_drift build/work/sources/photo-cifarnet-wide-xavier --out DIR/kernel-drift.csv

Each source net of a build (training/build.py) is re-created at its init — the same seed, architecture and
widths as its training, read from the net's metadata and the folder's data.json — and every k×k conv layer
(k > 1) of the trained net is compared with it, kernel by kernel: the cosine between trained and initial
kernel, the relative change ‖w − w₀‖ / ‖w₀‖ and the mean L2 norms. Behind batch norm a layer's scale does not
change the function, so the norm alone says nothing about how much a layer learnt; the cosine does.
One row per (net, layer); a rerun replaces the file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
import torch

from dwp_hub.atomic import staged_file
from training.training_state import load_tensors
from training.cli_options import CONTEXT
from training.source_nets import build_source_net, conv_layers

COLUMNS = ["source", "net", "seed", "layer", "kernel_size", "kernels", "cosine_median", "cosine_q10",
           "relative_change_median", "norm_mean", "init_norm_mean"]


def _init_of(meta: dict, classes: int, side: int, trained: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The net of `meta` at its init: seeded as training/build.py's _train_source_net seeds it before building."""
    for channels in (1, 3):  # grey glyphs or RGB photos: the one whose shapes match the trained net
        torch.manual_seed(meta["seed"])
        net = build_source_net(meta["arch"], tuple(meta["widths"]), classes, (channels, side, side),
                               meta.get("init", "default"))  # nets saved before the init field were "default"
        if all(trained[k].shape == v.shape for k, v in net.state_dict().items() if k in trained):
            return net
    raise ValueError(f"no input channel count rebuilds the net of {meta}")


def drift_rows(folder: Path) -> list[dict]:
    """The rows of COLUMNS for every net-*.safetensors in source folder `folder`."""
    info = json.loads((folder / "data.json").read_text())["info"]
    rows = []
    for path in sorted(folder.glob("net-*.safetensors")):
        if path.name.endswith(".partial.safetensors"):
            continue
        tensors, meta = load_tensors(path)
        init = _init_of(meta, int(info["classes"]), int(info["tile"]), tensors)
        for name, conv in conv_layers(init).items():
            k = conv.kernel_size[0]
            if k == 1:
                continue
            w0 = conv.weight.detach().reshape(-1, k * k)
            w = tensors[f"{name}.weight"].reshape(-1, k * k)
            cos = torch.nn.functional.cosine_similarity(w, w0, dim=1)
            rows.append({"source": folder.name, "net": path.name, "seed": meta["seed"], "layer": name,
                         "kernel_size": k, "kernels": len(w), "cosine_median": round(cos.median().item(), 4),
                         "cosine_q10": round(cos.quantile(0.1).item(), 4),
                         "relative_change_median": round(((w - w0).norm(dim=1) / w0.norm(dim=1)).median().item(), 4),
                         "norm_mean": round(w.norm(dim=1).mean().item(), 4),
                         "init_norm_mean": round(w0.norm(dim=1).mean().item(), 4)})
    return rows


@click.command(context_settings=CONTEXT)
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV to write.")
def main(folders: tuple[Path, ...], out: Path) -> None:
    """How far training moved the kernels of the source nets in FOLDERS (<build>/work/sources/<name>) from their init."""
    rows = [row for folder in folders for row in drift_rows(folder)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(out) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        click.echo(f"{r['source']} {r['net']} {r['layer']} {r['kernel_size']}x{r['kernel_size']}: cosine to init "
              f"{r['cosine_median']} (q10 {r['cosine_q10']}), change {r['relative_change_median']:.0%}, "
              f"norm {r['norm_mean']} (init {r['init_norm_mean']})")


if __name__ == "__main__":
    main()
