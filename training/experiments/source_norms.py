"""How source-net training sets the scale of the kernels a prior learns (issue #12's first suspect).

    python -m training.experiments.source_norms --out build/runs/source-norms --l2 1e-3 1e-4 0 --epochs 6

One notMNIST-style source net (training/recipes.py's ``notmnist-fconv`` recipe: the paper's 7×7 → 5×5 net,
Adam with a linear decay, cross-entropy + l2·Σw²) per L2 value, the same seed and batch order for each;
``--widths``, ``--init``, ``--lr``, ``--batch-size`` and ``--l2-on`` change the recipe's.
After every epoch (and at init) it records test accuracy and the L2 norms of the 7×7 (first layer) and
5×5 (second layer) kernels: mean, median and quartiles, and the fraction kept by the kernel-set threshold
(training/kernel_sets.py) with the mean norm of those kept. The authors' priors sample 7×7 kernels of mean norm
0.949 and 5×5 kernels of 0.121 (python -m training.compare_priors); ours 0.218 and 0.038.
Rows append to ``norms.csv``; a rerun skips the (l2, l2_on, init, lr, batch size, epoch, widths) rows already there.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from training.datasets import load_image_data
from training.kernel_sets import choose_threshold
from training.loops import L2_SCOPES, classifier_loss
from training.recipes import NOTMNIST_FCONV
from training.source_nets import SOURCE_INITS, build_source_net

from .records import append_rows

COLUMNS = ["l2", "l2_on", "init", "lr", "batch_size", "epoch", "widths", "test_accuracy", "layer", "mean_norm", "q25",
           "median", "q75", "kept_fraction", "mean_norm_kept", "seconds"]


def kernel_norms(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    return {f"{c.kernel_size[0]}x{c.kernel_size[0]}": c.weight.detach().flatten(2).norm(dim=-1).flatten() for c in convs}


@torch.no_grad()
def test_accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    pred = torch.cat([net(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    net.train()
    return float((pred == y).float().mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.experiments.source_norms", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--l2", type=float, nargs="+", default=[1e-3, 1e-4, 0.0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--widths", type=int, nargs=2, default=list(NOTMNIST_FCONV.widths))
    p.add_argument("--init", choices=SOURCE_INITS, default=NOTMNIST_FCONV.init)
    p.add_argument("--lr", type=float, default=NOTMNIST_FCONV.lr)
    p.add_argument("--batch-size", type=int, default=NOTMNIST_FCONV.batch_size)
    p.add_argument("--l2-on", choices=L2_SCOPES, default=NOTMNIST_FCONV.l2_on,
                   help="what the L2 term covers: every weight, or the conv layers only (the original train-net.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-cache", type=Path, default=Path("build/work/data"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "norms.csv"
    done = set()
    if path.is_file():
        with path.open() as f:
            done = {(float(r["l2"]), r["l2_on"], r["init"], float(r["lr"]), int(r["batch_size"]), int(r["epoch"]),
                     r["widths"]) for r in csv.DictReader(f)}
    data = load_image_data(NOTMNIST_FCONV.dataset, args.data_cache, seed=args.seed, progress=False)
    x, y = data.train.tensors
    xte, yte = data.test.tensors
    widths = "x".join(map(str, args.widths))
    run = (args.l2_on, args.init, args.lr, args.batch_size)
    batch = args.batch_size
    steps_per_epoch = -(-len(x) // batch)
    for l2 in args.l2:
        if (l2, *run, args.epochs, widths) in done:
            continue
        torch.manual_seed(args.seed)
        net = build_source_net(NOTMNIST_FCONV.arch, tuple(args.widths), data.num_classes, data.image_shape, args.init)
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
        loss_fn = classifier_loss(l2, args.l2_on)
        total, t0 = args.epochs * steps_per_epoch, time.monotonic()
        for epoch in range(args.epochs + 1):
            if epoch > 0:
                order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch))
                for i in range(steps_per_epoch):
                    step = (epoch - 1) * steps_per_epoch + i
                    opt.param_groups[0]["lr"] = args.lr * (1 - step / total)
                    idx = order[i * batch:(i + 1) * batch]
                    loss = loss_fn(net, (x[idx], y[idx]))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            acc = test_accuracy(net, xte, yte)
            rows = []
            for layer, n in kernel_norms(net).items():
                q = torch.quantile(n, torch.tensor([0.25, 0.5, 0.75]))
                kept = n[n >= choose_threshold(n.numpy()).value]
                rows.append(dict(l2=l2, l2_on=args.l2_on, init=args.init, lr=args.lr, batch_size=batch, epoch=epoch,
                                 widths=widths, test_accuracy=round(acc, 4), layer=layer,
                                 mean_norm=round(float(n.mean()), 4), q25=round(float(q[0]), 4),
                                 median=round(float(q[1]), 4), q75=round(float(q[2]), 4),
                                 kept_fraction=round(len(kept) / len(n), 4),
                                 mean_norm_kept=round(float(kept.mean()), 4),
                                 seconds=round(time.monotonic() - t0)))
            if (l2, *run, epoch, widths) not in done:
                append_rows(path, COLUMNS, rows)
            print(f"l2 {l2:g} on {args.l2_on} init {args.init} lr {args.lr:g} batch {batch} widths {widths} "
                  f"epoch {epoch}: test accuracy {acc:.4f}; " +
                  "; ".join(f"{r['layer']} mean norm {r['mean_norm']} (kept {r['kept_fraction']:.1%}: "
                            f"{r['mean_norm_kept']})" for r in rows), flush=True)


if __name__ == "__main__":
    main()
