"""Fig. 3: random feature extraction — convolutions frozen at their initial kernels, only the classifier trained.

For each init (DWP samples, real source kernels, Xavier) and width scale k, the paper's MNIST net with
round(32k) and round(128k) filters is initialised (conv biases set to zero, so only the kernels differ)
and frozen; its features of every target image are computed once. The linear classifier is trained on
the features of a stratified draw of ``train_size`` images and tested on the rest. Features are
standardised with the training images' mean and std first: a linear classifier can represent the same
functions either way, and this keeps the kernels' overall scale (a DWP sample's is its source nets',
Xavier's is set by fan-in and fan-out) from acting through the optimiser instead of through what the
kernels extract.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from dwp_hub.vi import accuracy, nll

from .context import RunContext, adam
from .kernels import initialise, parse_init
from .nets import classifier
from .settings import Fig3Settings

NAME = "fig3"
COLUMNS = ["init", "scale", "width1", "width2", "seed", "n_train", "n_test", "accuracy", "nll", "seconds"]


def plan(s: Fig3Settings) -> list[tuple[str, dict]]:
    for init in s.inits:
        parse_init(init)
    return [(f"fig3/{init}/k{scale:g}/s{seed}", dict(init=init, scale=scale, seed=seed))
            for scale in s.scales for seed in s.seeds for init in s.inits]


@torch.no_grad()
def features(net: torch.nn.Module, ctx: RunContext, batch: int = 1000) -> torch.Tensor:
    """The frozen conv features of every target image, (n, d), on the run's device."""
    idx = torch.arange(len(ctx.target.y)).numpy()
    return torch.cat([net.features(ctx.target.tensors(idx[i:i + batch], ctx.device)[0])
                      for i in range(0, len(idx), batch)])


def run(params: dict, s: Fig3Settings, ctx: RunContext, run_id: str) -> list[dict]:
    init, scale, seed = params["init"], params["scale"], params["seed"]
    t0 = time.monotonic()
    train_idx, test_idx = ctx.target.split(s.train_size, seed, s.max_test)
    torch.manual_seed(seed)
    net = classifier(scale, num_classes=ctx.target.num_classes)
    with ctx.run_log(run_id) as log:
        report = initialise(net, init, ctx.priors, torch.Generator().manual_seed(seed))
        log(f"{run_id}: init {report}")
        for m in net.features:
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.zeros_(m.bias)
        net.to(ctx.device).eval().requires_grad_(False)
        feats = features(net, ctx)
        y = torch.from_numpy(ctx.target.y).to(ctx.device)
        tr, te = torch.from_numpy(train_idx).to(ctx.device), torch.from_numpy(test_idx).to(ctx.device)
        mean, std = feats[tr].mean(0), feats[tr].std(0).clamp_min(1e-8)
        feats = (feats - mean) / std
        head = net.classifier.requires_grad_(True).train()
        opt = adam(head.parameters(), ctx.device, lr=s.lr)
        order = torch.Generator().manual_seed(seed)
        batch = min(s.batch_size, len(train_idx))
        for step in range(s.steps):
            opt.param_groups[0]["lr"] = s.lr * (1.0 - step / s.steps)
            pick = tr[torch.randint(len(train_idx), (batch,), generator=order).to(ctx.device)]
            loss = F.cross_entropy(head(feats[pick]), y[pick])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            probs = F.softmax(head(feats[te]), -1)
            acc, test_nll = accuracy(probs, y[te]), nll(probs, y[te])
        log(f"final train loss {loss.item():.4f}; test accuracy {acc:.4f}, NLL {test_nll:.4f}")
    w1, w2 = (m.out_channels for m in net.features if isinstance(m, torch.nn.Conv2d))
    return [dict(init=init, scale=scale, width1=w1, width2=w2, seed=seed, n_train=len(train_idx),
                 n_test=len(test_idx), accuracy=acc, nll=test_nll, seconds=time.monotonic() - t0)]
