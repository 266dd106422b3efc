"""Fig. 4: convergence from different initial kernels — MNIST CNN test accuracy and conv-VAE test ELBO by step.

Both models train every parameter with Adam at a constant learning rate (the paper's "default
hyper-parameters") on a stratified draw of ``train_size`` target images and are evaluated on the rest at
roughly log-spaced steps. Inits (see kernels.py): Xavier, real source kernels, and DWP samples with each
``rescale`` option of ``init_from_prior`` — which is how this experiment picks that option's default.
In the VAE every 7×7 and 5×5 kernel is initialised, transposed convolutions included; its other layers
keep PyTorch's default init, identical across inits for a given seed.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .context import RunContext, adam
from .kernels import initialise, parse_init
from .nets import ConvVAE, classifier
from .settings import Fig4Settings

NAME = "fig4"
COLUMNS = ["model", "init", "seed", "step", "metric", "value", "train_loss", "seconds"]
MODELS = ("cnn", "vae")


def plan(s: Fig4Settings) -> list[tuple[str, dict]]:
    for init in s.inits:
        parse_init(init)
    return [(f"fig4/{model}/{init}/s{seed}", dict(model=model, init=init, seed=seed))
            for model in MODELS for seed in s.seeds for init in s.inits]


def eval_steps(total: int, points: int) -> list[int]:
    """Step 0, the last step, and roughly log-spaced steps between (at most `points` in all)."""
    if total < 1:
        return [0]
    inner = np.geomspace(1, total, max(2, points - 1))
    return sorted({0, total, *(int(round(v)) for v in inner)})


@torch.no_grad()
def evaluate(model: torch.nn.Module, kind: str, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """CNN: test accuracy; VAE: mean test ELBO in nats per image (one z sample per image)."""
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        if kind == "cnn":
            total += (model(xb).argmax(1) == y[i:i + batch]).float().sum().item()
        else:
            total += model.elbo(xb).sum().item()
    model.train()
    return total / len(x)


def run(params: dict, s: Fig4Settings, ctx: RunContext, run_id: str) -> list[dict]:
    kind, init, seed = params["model"], params["init"], params["seed"]
    steps = s.cnn_steps if kind == "cnn" else s.vae_steps
    train_idx, test_idx = ctx.target.split(s.train_size, seed, s.max_test)
    torch.manual_seed(seed)
    model = classifier(num_classes=ctx.target.num_classes) if kind == "cnn" else ConvVAE(s.vae_z_dim)
    rows = []
    with ctx.run_log(run_id) as log:
        report = initialise(model, init, ctx.priors, torch.Generator().manual_seed(seed))
        log(f"{run_id}: init {report}")
        model.to(ctx.device).train()
        x, y = ctx.target.tensors(train_idx, ctx.device)
        xt, yt = ctx.target.tensors(test_idx, ctx.device)
        opt = adam(model.parameters(), ctx.device, lr=s.lr)
        order = torch.Generator().manual_seed(seed)
        batch = min(s.batch_size, len(train_idx))
        checkpoints = eval_steps(steps, s.eval_points)
        metric = "test_accuracy" if kind == "cnn" else "test_elbo"
        t0, last_loss = time.monotonic(), None
        for step in range(steps + 1):
            if step in checkpoints:
                value = evaluate(model, kind, xt, yt)
                loss_value = float("nan") if last_loss is None else last_loss.item()
                rows.append(dict(model=kind, init=init, seed=seed, step=step, metric=metric, value=value,
                                 train_loss=loss_value, seconds=time.monotonic() - t0))
                log(f"step {step:6d}  {metric} {value:.4f}  train loss {loss_value:.4f}")
            if step == steps:
                break
            pick = torch.randint(len(train_idx), (batch,), generator=order).to(ctx.device)
            if kind == "cnn":
                loss = F.cross_entropy(model(x[pick]), y[pick])
            else:
                loss = -model.elbo(x[pick]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last_loss = loss.detach()  # read only at checkpoints: no device sync per step
    return rows
