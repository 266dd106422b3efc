"""Fig. 3 and Fig. 4 across prior domains: which domain's kernels to start a network from, for which data.

    python -m training.experiments.natural --out build/runs/natural                    # photos: both models
    python -m training.experiments.natural --task mnist --out build/runs/natural-mnist  # digits: the MNIST CNN
    python -m training.experiments.natural --out DIR --quick                           # seconds: one seed, tiny data
    python -m training.experiments.natural --report DIR                                # the markdown summary of DIR

Tasks (``--task``), one per results folder (settings.json records it, and a folder of another task is refused):

* ``photo-heldout`` (the default; training/photo_tiles.py) — which of the held-out source's photographs a
  32×32 tile comes from. No source network saw those photos, nor any photo of that source. Models: the CIFAR
  ResNet of training/source_nets.py (widths 16/32/64) and timm's ``resnet18`` at 32×32.
* ``mnist`` — MNIST digits with the paper's MNIST CNN (``mnist-cnn``: training/experiments/nets.py's
  classifier, a 7×7 and a 5×5 conv then a linear layer), on the data of the MNIST Fig. 3 page: a stratified
  draw of 4,000 of the official 60,000 training images (seed 0), tested on the official 10,000 test images
  (training/experiments/data.py's ``mnist`` target; ``--quick`` draws 200 + 200 from MNIST-5k instead).

Inits, the same for every model:

* ``own`` — the model's own initialisation (timm's / PyTorch's defaults);
* ``xavier`` — Xavier-normal kernels in every k×k conv with k > 1;
* ``dwp:SPEC`` — `init_from_prior(model, SPEC)` with its default per-layer rescale (``match``: each layer keeps
  the RMS of the model's own init, so only the kernels' shapes differ from ``own``), e.g. ``dwp:photo``,
  ``dwp:notmnist``, ``dwp:face``, ``dwp:text`` (``dwp-hub list`` shows each domain's kernel sizes). Convs
  whose kernel size the domain lacks keep the model's own init, and the printed line of each run says which.
  A domain with none of the model's kernel sizes (``dwp:face``, 3×3 only, on ``mnist-cnn``) would leave the
  model at ``own``: that pair is not run, and the report lists it as not applicable (skipped.csv).

Fig. 3 (random feature extraction): every conv stays at its initial kernels; batch-norm statistics (where
the model has batch norm) are recomputed on the training images, the features the model's last linear layer
sees are standardised, and only a new linear classifier on them is trained. Fig. 4 (convergence): the whole
network is trained with Adam and tested every `eval_every` steps. Each seed draws its own init and batch
order; the data split is fixed, so the comparisons are paired. Fig. 3 runs 10 seeds (as the paper), Fig. 4
three. Both tasks use the same schedules, so a domain's standing can be read across the two reports.
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
from torch.utils.data import TensorDataset

from dwp_hub.atomic import write_text_atomic
from dwp_hub.init import dwp_table, init_from_prior

from training.cli_options import CONTEXT, list_option
from training.image_data import ImageData

from .records import append_rows

INITS = ("dwp:photo", "dwp:notmnist", "own", "xavier")
MODELS = ("resnet-cifar", "resnet18")
TASK_MODELS = {"photo-heldout": MODELS, "mnist": ("mnist-cnn",)}  # the first task is the default
MNIST_TRAIN = 4000  # as the MNIST Fig. 3 page: a stratified draw of the official training images
MNIST_QUICK = (200, 200)  # --quick: training and test images drawn from MNIST-5k
FIG3_COLUMNS = ["model", "init", "seed", "accuracy", "nll", "seconds"]
FIG4_COLUMNS = ["model", "init", "seed", "step", "accuracy", "nll", "seconds"]
SKIPPED_COLUMNS = ["model", "init", "reason"]
NOT_APPLICABLE = "not applicable: no prior of that domain for this model's kernel sizes"


@dataclass
class Settings:
    task: str = "photo-heldout"
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
    """``mnist-cnn`` (the paper's MNIST CNN), ``resnet-cifar`` (training/source_nets.py) or a timm model name."""
    if name == "mnist-cnn":
        from training.experiments.nets import classifier

        return classifier(num_classes=num_classes)
    if name == "resnet-cifar":
        from training.source_nets import ResNetCIFAR

        return ResNetCIFAR((16, 32, 64), num_classes=num_classes)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def mnist_data(data_root: Path, quick: bool) -> ImageData:
    """MNIST as on the MNIST Fig. 3 page: a stratified draw of 4,000 of the official training images (seed 0),
    tested on the official 10,000 (converted once into `data_root`/data). `quick`: 200 + 200 from MNIST-5k,
    which needs no download."""
    from training.experiments.data import load_target

    target = load_target("mnist-5k" if quick else f"mnist:{data_root / 'data'}")
    n, max_test = MNIST_QUICK if quick else (MNIST_TRAIN, None)
    train, test = target.split(n, seed=0, max_test=max_test)
    provenance = (f"{target.provenance}; a stratified draw of {len(train):,} training images (seed 0), "
                  f"{len(test):,} test images")
    return ImageData(TensorDataset(*target.tensors(train)), TensorDataset(*target.tensors(test)),
                     target.num_classes, provenance, {"train_images": len(train), "test_images": len(test)})


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
        kept = sorted({f"{r.kernel_size[0]}x{r.kernel_size[1]}" for r in report.skipped}, reverse=True)
        return report.summary() + (f" ({', '.join(kept)} kernels)" if kept else "")
    raise ValueError(f"unknown init {init!r}: own, xavier or dwp:SPEC")


def not_applicable(model: nn.Module, init: str) -> str | None:
    """Why `init` would leave every conv of `model` at its own init (its prior domain lacks all of the model's
    kernel sizes), or None when it applies. Raises ValueError for a SPEC that names no deep weight prior."""
    if not init.startswith("dwp:"):
        return None
    covered = set(dwp_table(init[4:]))
    sizes = {m.kernel_size[0] for m in model.modules() if isinstance(m, nn.Conv2d)
             and m.kernel_size[0] == m.kernel_size[1]}
    if covered & sizes:
        return None
    covers, has = (", ".join(f"{k}x{k}" for k in sorted(ks, reverse=True)) or "none" for ks in (covered, sizes))
    return f"{init[4:]} covers {covers}, the model's square kernels are {has}"


def head(model: nn.Module) -> nn.Linear:
    """The model's last linear layer: timm's classifier, or the last nn.Linear among its modules."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's last linear layer (`head`), taken by a forward pre-hook: any model works."""
    seen: list[torch.Tensor] = []
    hook = head(model).register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        model(x)
    finally:
        hook.remove()
    return seen[-1]


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, x: torch.Tensor, batch: int = 500) -> None:
    """Batch-norm running statistics of the frozen network, averaged over all of `x` (nothing to do without BN)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        model.eval()
        return
    for m in norms:
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


def check_out(out: Path, task: str) -> None:
    """Refuse a results folder whose settings.json names another task: resuming would mix two tasks' rows.

    A settings.json without a task is from before there was a choice: photo-heldout.
    """
    path = out / "settings.json"
    if not path.is_file():
        return
    try:
        held = json.loads(path.read_text()).get("task", next(iter(TASK_MODELS)))
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{path} is not a settings object: give another --out, or remove that folder") from None
    if held != task:
        raise ValueError(f"{out} holds --task {held} results (its settings.json): give another --out for --task {task}")


def _skipped(path: Path) -> dict[tuple[str, str], str]:
    if not path.is_file():
        return {}
    return {(r["model"], r["init"]): r["reason"] for r in _read(path)}


def run_all(out: Path, s: Settings, data) -> None:
    """Every (model, init, seed) of both figures; rows already in the CSVs are skipped, so reruns resume.

    A (model, init) pair that would not change the model's init (see `not_applicable`) is not run for any seed;
    it is recorded in skipped.csv for the report. Raises ValueError for a folder of another task (`check_out`).
    """
    check_out(out, s.task)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "settings.json", json.dumps(asdict(s), indent=1, default=list) + "\n")
    torch.set_num_threads(s.threads)
    skipped_path = out / "skipped.csv"
    skip = {}
    for name in s.models:
        for init in s.inits:
            reason = not_applicable(build_model(name, data.num_classes), init)
            if reason:
                skip[(name, init)] = reason
                print(f"skipping {name} {init} for every seed, {NOT_APPLICABLE} ({reason})", flush=True)
    new = [dict(model=m, init=i, reason=r) for (m, i), r in skip.items() if (m, i) not in _skipped(skipped_path)]
    if new:
        append_rows(skipped_path, SKIPPED_COLUMNS, new)
    for fig, columns in (("fig3", FIG3_COLUMNS), ("fig4", FIG4_COLUMNS)):
        path = out / f"{fig}.csv"
        for name in s.models:
            for seed in s.fig3_seeds if fig == "fig3" else s.seeds:
                for init in s.inits:
                    if (name, init) in skip or (name, init, str(seed)) in _done(path):
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
    """Markdown tables: Fig. 3 final accuracy, Fig. 4 mean accuracy over the curve and final accuracy, paired.

    Rows follow the order of --inits in settings.json (inits it does not name come after, as first recorded);
    the (model, init) pairs of skipped.csv are listed under the tables as not applicable.
    """
    settings = out / "settings.json"
    given = json.loads(settings.read_text()).get("inits", []) if settings.is_file() else []
    rank = {init: i for i, init in enumerate(given)}
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
                inits = sorted(scores, key=lambda i: rank.get(i, len(rank)))
                title = {"fig3": "Fig. 3, frozen random features", "fig4": "Fig. 4, convergence"}[fig]
                lines += [f"**{title} — {model}, {metric}** (seeds {sorted(next(iter(scores.values())))})", "",
                          "| init | mean | " + " | ".join(f"vs {b}" for b in inits[1:]) + " |",
                          "|---|---|" + "---|" * (len(inits) - 1)]
                for a in inits:
                    cells = [_paired(scores, a, b) if a != b else "" for b in inits[1:]]
                    lines.append(f"| {a} | {np.mean(list(scores[a].values())):.4f} | " + " | ".join(cells) + " |")
                lines.append("")
    skipped = _skipped(out / "skipped.csv")
    if skipped:
        lines += [f"Not run, {NOT_APPLICABLE}:", ""]
        lines += [f"- {model}, {init}: {reason}" for (model, init), reason in skipped.items()]
        lines.append("")
    return "\n".join(lines)


@click.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (fig3.csv, fig4.csv, settings.json).")
@click.option("--report", "report_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Print the markdown summary of a results folder and stop.")
@click.option("--task", type=click.Choice(list(TASK_MODELS)), default=next(iter(TASK_MODELS)), show_default=True,
              help="The data: held-out photo tiles, or MNIST digits (the official split).")
@click.option("--quick", is_flag=True, help="One seed, a few steps, tiny data: a smoke test.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Folder holding photos/, and data/mnist.npz for --task mnist (both fetched "
                                      "if absent).")
@list_option("--models", help="Models (comma-separated, repeatable) [default: resnet-cifar,resnet18 for "
                              "photo-heldout, mnist-cnn for mnist].")
@list_option("--inits", default=INITS, help="Inits (comma-separated, repeatable).")
@list_option("--seeds", convert=int, help="Fig. 4 seeds [default: 0,1,2].")
@list_option("--fig3-seeds", convert=int, help="Fig. 3 seeds [default: 0 to 9].")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True, help="Torch threads.")
def main(out: Path | None, report_dir: Path | None, task: str, quick: bool, data_root: Path,
         models: tuple[str, ...], inits: tuple[str, ...], seeds: tuple[int, ...], fig3_seeds: tuple[int, ...],
         threads: int) -> None:
    """Fig. 3 and Fig. 4 on unseen photos or on MNIST: which prior domain to start a network from (resumable)."""
    if report_dir:
        click.echo(report(report_dir))
        return
    if not out:
        raise click.UsageError("give --out or --report")
    models = models or TASK_MODELS[task]
    if task == "mnist" and set(models) != {"mnist-cnn"}:
        raise click.UsageError(f"--task mnist trains mnist-cnn only (1×28×28 digits), "
                               f"got --models {','.join(models)}")
    if task != "mnist" and "mnist-cnn" in models:
        raise click.UsageError("mnist-cnn takes 1×28×28 digits: use it with --task mnist")
    try:
        check_out(out, task)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    s = Settings(task=task, models=models, inits=inits, threads=threads, **(QUICK if quick else {}))
    if seeds:
        s.seeds = seeds
    if fig3_seeds:
        s.fig3_seeds = fig3_seeds
    if task == "mnist":
        data = mnist_data(data_root, quick)
    else:
        from training.datasets import load_image_data

        data = load_image_data("photo-heldout", data_root / "cache", data_root=data_root, tiny=quick)
    s.data = {"provenance": data.provenance, "classes": data.num_classes}
    click.echo(f"data: {data.provenance}")
    run_all(out, s, data)
    click.echo(report(out))


if __name__ == "__main__":
    main()
