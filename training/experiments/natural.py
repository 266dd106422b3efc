"""Fig. 3 and Fig. 4 on natural images: which kernels to start an RGB network from.

    python -m training.experiments.natural --out build/runs/natural            # 3 seeds, both models, all inits
    python -m training.experiments.natural --out DIR --quick                   # seconds: one seed, tiny schedules
    python -m training.experiments.natural --report DIR                        # the markdown summary of DIR

Task: ``photo-heldout`` (training/photo_tiles.py) — which of the held-out source's photographs a 32×32 tile
comes from. No source network saw those photos, nor any photo of that source. Models: the CIFAR ResNet of
training/source_nets.py (widths 16/32/64) and timm's ``resnet18`` at 32×32. Inits, the same for both:

* ``own`` — the model's own initialisation (timm's / PyTorch's defaults);
* ``xavier`` — Xavier-normal kernels in every k×k conv with k > 1;
* ``dwp:SPEC`` — `init_from_prior(model, SPEC)` with its default per-layer rescale (``match``: each layer keeps
  the RMS of the model's own init, so only the kernels' shapes differ from ``own``), e.g. ``dwp:photo`` and
  ``dwp:notmnist``.

Fig. 3 (random feature extraction): every conv stays at its initial kernels; batch-norm statistics are
recomputed on the training tiles, the pooled features standardised, and only a linear classifier is
trained. Fig. 4 (convergence): the whole network is trained with Adam and tested every `eval_every` steps.
Each seed draws its own init and batch order; the data split is fixed, so the comparisons are paired. Fig. 3
runs 10 seeds (as the paper), Fig. 4 three.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dwp_hub.init import init_from_prior

from training.cli_options import CONTEXT, list_option

from .records import append_rows

INITS = ("dwp:photo", "dwp:notmnist", "own", "xavier")
MODELS = ("resnet-cifar", "resnet18")
FIG3_COLUMNS = ["model", "init", "seed", "accuracy", "nll", "seconds"]
FIG4_COLUMNS = ["model", "init", "seed", "step", "accuracy", "nll", "seconds"]


@dataclass
class Settings:
    seeds: tuple[int, ...] = (0, 1, 2)  # Fig. 4
    fig3_seeds: tuple[int, ...] = tuple(range(10))  # Fig. 3 is cheap: the paper's 10 seeds
    models: tuple[str, ...] = MODELS
    inits: tuple[str, ...] = INITS
    fig3_steps: int = 1000
    fig3_lr: float = 1e-2
    fig4_steps: int = 300
    fig4_lr: float = 1e-3
    batch_size: int = 64
    eval_every: int = 25
    threads: int = 2
    data: dict = field(default_factory=dict)


QUICK = dict(seeds=(0,), fig3_seeds=(0,), fig3_steps=20, fig4_steps=6, eval_every=3, batch_size=16)


def build_model(name: str, num_classes: int) -> nn.Module:
    if name == "resnet-cifar":
        from training.source_nets import ResNetCIFAR

        return ResNetCIFAR((16, 32, 64), num_classes=num_classes)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def initialise(model: nn.Module, init: str, seed: int) -> str:
    """Apply `init` in place (see the module docstring); returns a one-line summary."""
    if init == "own":
        return "own init"
    if init == "xavier":
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]
        for m in convs:
            nn.init.xavier_normal_(m.weight)
        return f"xavier in {len(convs)} convs"
    if init.startswith("dwp:"):
        report = init_from_prior(model, init[4:], generator=torch.Generator().manual_seed(seed), progress=False)
        return report.summary()
    raise ValueError(f"unknown init {init!r}: own, xavier or dwp:SPEC")


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's last linear layer (timm models, or training/source_nets.py's)."""
    if hasattr(model, "forward_head"):  # timm
        return model.forward_head(model.forward_features(x), pre_logits=True)
    trunk = model.features if hasattr(model, "features") else nn.Sequential(model.stem, model.blocks)
    return model.classifier[:-1](trunk(x))


def head(model: nn.Module) -> nn.Linear:
    return model.get_classifier() if hasattr(model, "get_classifier") else model.classifier[-1]


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, x: torch.Tensor, batch: int = 500) -> None:
    """Batch-norm running statistics of the frozen network, averaged over all of `x`."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for i in range(0, len(x), batch):
        model(x[i:i + batch])
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> tuple[float, float]:
    model.eval()
    logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def fig3(model: nn.Module, data, s: Settings, seed: int) -> tuple[float, float]:
    xtr, ytr = data.train.tensors
    xte, yte = data.test.tensors
    model.requires_grad_(False)
    recalibrate_batch_norm(model, xtr)
    with torch.no_grad():
        ftr = torch.cat([pooled_features(model, xtr[i:i + 500]) for i in range(0, len(xtr), 500)])
        fte = torch.cat([pooled_features(model, xte[i:i + 500]) for i in range(0, len(xte), 500)])
    mean, std = ftr.mean(0), ftr.std(0).clamp_min(1e-8)
    ftr, fte = (ftr - mean) / std, (fte - mean) / std
    linear = nn.Linear(ftr.shape[1], data.num_classes)
    opt = torch.optim.Adam(linear.parameters(), lr=s.fig3_lr)
    order = torch.Generator().manual_seed(seed)
    for step in range(s.fig3_steps):
        opt.param_groups[0]["lr"] = s.fig3_lr * (1 - step / s.fig3_steps)
        pick = torch.randint(len(ftr), (s.batch_size,), generator=order)
        loss = F.cross_entropy(linear(ftr[pick]), ytr[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return evaluate(linear, fte, yte)


def fig4(model: nn.Module, data, s: Settings, seed: int) -> list[tuple[int, float, float]]:
    xtr, ytr = data.train.tensors
    xte, yte = data.test.tensors
    opt = torch.optim.Adam(model.parameters(), lr=s.fig4_lr)
    order = torch.Generator().manual_seed(seed)
    curve = [(0, *evaluate(model, xte, yte))]
    for step in range(1, s.fig4_steps + 1):
        model.train()
        pick = torch.randint(len(xtr), (s.batch_size,), generator=order)
        loss = F.cross_entropy(model(xtr[pick]), ytr[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % s.eval_every == 0 or step == s.fig4_steps:
            curve.append((step, *evaluate(model, xte, yte)))
    return curve


def _done(path: Path) -> set[tuple[str, str, str]]:
    if not path.is_file():
        return set()
    with path.open() as f:
        return {(r["model"], r["init"], r["seed"]) for r in csv.DictReader(f)}


def run_all(out: Path, s: Settings, data) -> None:
    """Every (model, init, seed) of both figures; rows already in the CSVs are skipped, so reruns resume."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(asdict(s), indent=1, default=list) + "\n")
    torch.set_num_threads(s.threads)
    for fig, columns in (("fig3", FIG3_COLUMNS), ("fig4", FIG4_COLUMNS)):
        path = out / f"{fig}.csv"
        for name in s.models:
            for seed in s.fig3_seeds if fig == "fig3" else s.seeds:
                for init in s.inits:
                    if (name, init, str(seed)) in _done(path):
                        continue
                    t0 = time.monotonic()
                    torch.manual_seed(seed)
                    model = build_model(name, data.num_classes)
                    summary = initialise(model, init, seed)
                    if fig == "fig3":
                        acc, nll = fig3(model, data, s, seed)
                        rows = [dict(model=name, init=init, seed=seed, accuracy=acc, nll=nll)]
                    else:
                        rows = [dict(model=name, init=init, seed=seed, step=st, accuracy=a, nll=n)
                                for st, a, n in fig4(model, data, s, seed)]
                    for r in rows:
                        r["seconds"] = round(time.monotonic() - t0, 1)
                    append_rows(path, columns, rows)
                    print(f"{fig} {name} {init} seed {seed}: accuracy {rows[-1]['accuracy']:.4f} "
                          f"({rows[-1]['seconds']:.0f} s; {summary})", flush=True)


def _read(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _paired(scores: dict[str, dict[int, float]], a: str, b: str) -> str:
    seeds = sorted(set(scores[a]) & set(scores[b]))
    d = np.array([scores[a][k] - scores[b][k] for k in seeds])
    if len(d) < 2:
        return f"{d.mean():+.3f} (1 seed)" if len(d) else "n/a"
    from scipy.stats import ttest_rel

    p = ttest_rel([scores[a][k] for k in seeds], [scores[b][k] for k in seeds]).pvalue
    return f"{d.mean():+.3f} ± {d.std(ddof=1):.3f}, wins {int((d > 0).sum())}/{len(d)}, p = {p:.3f}"


def report(out: Path) -> str:
    """Markdown tables: Fig. 3 final accuracy, Fig. 4 mean accuracy over the curve and final accuracy, paired."""
    lines = []
    for fig, metric_of in (("fig3", {"accuracy": lambda rows: float(rows[-1]["accuracy"])}),
                           ("fig4", {"mean accuracy over the curve": lambda rows: float(np.mean([float(r["accuracy"]) for r in rows])),
                                     "final accuracy": lambda rows: float(rows[-1]["accuracy"])})):
        path = out / f"{fig}.csv"
        if not path.is_file():
            continue
        rows = _read(path)
        for model in dict.fromkeys(r["model"] for r in rows):
            for metric, f in metric_of.items():
                runs: dict[str, dict[int, list[dict]]] = {}
                for r in rows:
                    if r["model"] == model:
                        runs.setdefault(r["init"], {}).setdefault(int(r["seed"]), []).append(r)
                scores = {i: {k: f(v) for k, v in by_seed.items()} for i, by_seed in runs.items()}
                inits = list(scores)
                title = {"fig3": "Fig. 3, frozen random features", "fig4": "Fig. 4, convergence"}[fig]
                lines += [f"**{title} — {model}, {metric}** (seeds {sorted(next(iter(scores.values())))})", "",
                          "| init | mean | " + " | ".join(f"vs {b}" for b in inits[1:]) + " |",
                          "|---|---|" + "---|" * (len(inits) - 1)]
                for a in inits:
                    cells = [_paired(scores, a, b) if a != b else "" for b in inits[1:]]
                    lines.append(f"| {a} | {np.mean(list(scores[a].values())):.4f} | " + " | ".join(cells) + " |")
                lines.append("")
    return "\n".join(lines)


@click.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (fig3.csv, fig4.csv, settings.json).")
@click.option("--report", "report_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Print the markdown summary of a results folder and stop.")
@click.option("--quick", is_flag=True, help="One seed, a few steps, --tiny data: a smoke test.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Folder holding photos/ (fetched if absent).")
@list_option("--models", default=MODELS, help="Models (comma-separated, repeatable).")
@list_option("--inits", default=INITS, help="Inits (comma-separated, repeatable).")
@list_option("--seeds", convert=int, help="Fig. 4 seeds [default: 0,1,2].")
@list_option("--fig3-seeds", convert=int, help="Fig. 3 seeds [default: 0 to 9].")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True, help="Torch threads.")
def main(out: Path | None, report_dir: Path | None, quick: bool, data_root: Path, models: tuple[str, ...],
         inits: tuple[str, ...], seeds: tuple[int, ...], fig3_seeds: tuple[int, ...], threads: int) -> None:
    """Fig. 3 and Fig. 4 on unseen photos: which kernels to start an RGB network from (resumable)."""
    if report_dir:
        click.echo(report(report_dir))
        return
    if not out:
        raise click.UsageError("give --out or --report")
    from training.datasets import load_image_data

    s = Settings(models=models, inits=inits, threads=threads, **(QUICK if quick else {}))
    if seeds:
        s.seeds = seeds
    if fig3_seeds:
        s.fig3_seeds = fig3_seeds
    data = load_image_data("photo-heldout", data_root / "cache", data_root=data_root, tiny=quick)
    s.data = {"provenance": data.provenance, "classes": data.num_classes}
    click.echo(f"data: {data.provenance}")
    run_all(out, s, data)
    click.echo(report(out))


if __name__ == "__main__":
    main()
