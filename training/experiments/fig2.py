"""Fig. 2 (and appendix C): variational inference on N stratified MNIST training images with different priors.

The paper's Bayesian MNIST net (32 7×7 → 128 5×5 → linear): both convolutions get a fully factorised
Gaussian posterior (local reparameterisation) under the prior being compared; the linear layer stays a
point estimate, as in the paper. ``deterministic`` trains the same net without any prior. Every method uses
the same μ init (by default samples of the configured 7x7 and 5x5 deep weight priors, as the paper's code
does for every method, or of other priors given as ``--init-prior7/5``; ``init="xavier"`` is the recorded
variant; both from the split seed), the same batches, steps and learning-rate schedule (Fig2Settings) and
the same KL estimator: for every prior the entropy of q is exact and the rest of the KL is estimated on the
same number of random kernels per layer (``bayesianize(subsample=)``, ``dwp_hub.SubsampledKL``). The test set
is the target's: MNIST's official 10,000 test images by default.

With a photo target (data.PhotoTarget: the held-out photos' tiles) the same protocol makes the paper's second
panel: the net is appendix H.3's Bayesian CIFAR net (nets.CIFARClassifier: all three convs Bayesian, the 7×7
under the 7x7 prior and both 5×5 under the 5x5 prior; the linear layers point estimates), scaled by
``width_scale``; sizes count tiles per class. Its rows (NATURAL_COLUMNS) also say which priors were used:
``prior`` is the domain of the priors in the method's KL ("photo", "notmnist": the DWP, or the source kernels
mv-gaussian is fitted to), empty for normal, log-uniform and deterministic, whose KL has no domain;
``init_prior`` is the domain whose DWP samples started μ, for every method. So the runs of both prior domains
can share one CSV and the report can pair each DWP run with the baselines that started from the same μ.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from dwp_hub import (DWPBound, LogUniformPrior, NormalPrior, SubsampledKL, bayesianize, elbo_loss, evaluate,
                     init_from_prior, kl, parameter_groups)
from dwp_hub.bayes_conv import bayes_layers

from .context import RunContext, RunLog, adam
from .data import ALL, Target
from .nets import cifar_classifier, classifier, xavier_
from .settings import Fig2Settings

NAME = "fig2"
COLUMNS = ["method", "n_train", "seed", "n_test", "accuracy", "nll", "ece", "accuracy_mean_net", "kl",
           "sigma_conv1", "sigma_conv2", "steps", "batch_size", "seconds", "ms_per_step"]
NATURAL_COLUMNS = ["method", "prior", "init_prior", "n_train", "train_images", "seed", "n_test", "accuracy", "nll",
                   "ece", "accuracy_mean_net", "kl", "sigma_conv1", "sigma_conv2", "sigma_conv3", "width_scale", "steps",
                   "batch_size", "seconds", "ms_per_step"]
METHODS = ("dwp", "normal", "log-uniform", "mv-gaussian", "deterministic")
DOMAIN_METHODS = ("dwp", "mv-gaussian")  # methods whose KL depends on the prior domain
INITS = ("prior", "prior-noise", "xavier")


def plan(s: Fig2Settings) -> list[tuple[str, dict]]:
    for m in s.methods:
        if m not in METHODS:
            raise ValueError(f"unknown fig2 method {m!r}; known: {METHODS}")
    if s.init not in INITS:
        raise ValueError(f"unknown fig2 init {s.init!r}; known: {INITS}")
    return [(f"fig2/{m}/N{'all' if n == ALL else n}/s{seed}", dict(method=m, n_train=n, seed=seed))
            for n in s.sizes for seed in s.seeds for m in s.methods]


def columns(target: Target) -> list[str]:
    """The CSV columns for runs on `target`: the MNIST panel's, or the natural panel's with its prior columns."""
    return NATURAL_COLUMNS if target.kind == "photo" else COLUMNS


def build_net(target: Target, s: Fig2Settings) -> torch.nn.Module:
    """The paper's MNIST net for a digit target, its Bayesian CIFAR net for a photo target; widths × width_scale."""
    if target.kind == "photo":
        return cifar_classifier(s.width_scale, num_classes=target.num_classes)
    return classifier(s.width_scale, num_classes=target.num_classes)


def prior_spec(method: str, ctx: RunContext):
    """The `priors` argument of bayesianize for `method` (None for the deterministic net).

    bayesianize's `subsample` gives every one of them the same KL estimator (the DWP bound's).
    """
    if method == "deterministic":
        return None
    if method == "normal":
        return NormalPrior()
    if method == "log-uniform":
        return LogUniformPrior()
    if method == "dwp":
        return {k: ctx.priors.dwp(k) for k in (7, 5)}
    if method == "mv-gaussian":
        return {k: ctx.priors.mv_gaussian(k) for k in (7, 5)}
    raise ValueError(f"unknown method {method!r}")


DWP_ESTIMATORS = ("subsample", "sag", "saga")


def train_vi(method: str, train_idx: np.ndarray, s: Fig2Settings, seed: int, ctx: RunContext, log: RunLog,
             desc: str = "") -> tuple[torch.nn.Module, dict]:
    """Train the target's net on `train_idx` by VI under `method`'s prior (or deterministically); the protocol is `s`."""
    device = ctx.device
    torch.manual_seed(seed)
    net = build_net(ctx.target, s)
    xavier_(net, torch.Generator().manual_seed(seed))
    if s.init.startswith("prior"):  # the paper's protocol: μ of both convs are samples of the DWPs, every method
        init_from_prior(net, {k: ctx.priors.init_dwp(k) for k in (7, 5)}, rescale="none",
                        generator=torch.Generator().manual_seed(seed), progress=False, noise=s.init == "prior-noise")
    net.to(device)
    if s.dwp_estimator not in DWP_ESTIMATORS:
        raise ValueError(f"fig2.dwp_estimator={s.dwp_estimator!r}: known: {', '.join(DWP_ESTIMATORS)}")
    stored = None if s.dwp_estimator == "subsample" or method != "dwp" else s.dwp_estimator
    spec = prior_spec(method, ctx)
    lrs = {"mean": s.lr, "other": s.lr, "reverse": s.lr, "log_sigma2": s.lr_log_sigma2}
    if spec is not None:
        report = bayesianize(net, priors=spec, init_log_sigma2=s.init_log_sigma2, subsample=s.kl_subsample,
                             stored_gradients=stored)
        log(f"bayesianize:\n{report}")
        groups = parameter_groups(net)
    else:
        groups = {"other": [p for p in net.parameters() if p.requires_grad]}
    opt = adam([{"params": g, "lr": lrs[role], "base_lr": lrs[role]} for role, g in groups.items() if g], device)
    x, y = ctx.target.tensors(train_idx, device)
    n = len(train_idx)
    batch = min(n, s.batch_size)
    order = torch.Generator().manual_seed(10_007 * seed + 1)
    perm, pos = torch.randperm(n, generator=order), 0
    every = max(1, s.steps // 20)
    bar = ctx.bar(s.steps, desc)
    net.train()
    t0 = time.monotonic()
    for step in range(s.steps):
        for g in opt.param_groups:  # linear decay to 0 over the run
            g["lr"] = g["base_lr"] * (1.0 - step / s.steps)
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=order), 0
        idx = perm[pos:pos + batch].to(device)
        pos += batch
        logits = net(x[idx])
        if spec is None:
            kl_term = torch.zeros((), device=device)
            loss = F.cross_entropy(logits, y[idx])
        else:
            kl_term = kl(net)
            loss = elbo_loss(logits, y[idx], kl_term, dataset_size=n)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update()
        if step % every == 0 or step == s.steps - 1:
            log(f"step {step:6d}  loss {loss.item():.5g}  kl {kl_term.item():.5g}  "
                f"train acc {(logits.argmax(1) == y[idx]).float().mean().item():.3f}  {sigma_summary(net)}")
    bar.close()
    seconds = time.monotonic() - t0
    return net, {"seconds": seconds, "ms_per_step": 1000 * seconds / max(1, s.steps), "batch_size": batch,
                 "kl": full_kl(net) if spec is not None else 0.0}


@torch.no_grad()
def full_kl(net: torch.nn.Module) -> float:
    """Σ_layers KL (or the DWP bound, eq. 7) on every kernel rather than a subsample: one estimate."""
    total = 0.0
    for _, layer in bayes_layers(net):
        prior = layer.prior
        if isinstance(prior, DWPBound):
            total += prior.kl(layer.weight, layer.log_sigma2, subsample=layer.num_kernels).item()
        else:
            exact = prior.prior if isinstance(prior, SubsampledKL) else prior
            total += exact.kl(layer.weight, layer.log_sigma2).item()
    return total


def sigma_summary(net: torch.nn.Module) -> str:
    return "  ".join(f"median σ[{name}] {v:.4g}" for name, v in layer_sigmas(net).items())


def layer_sigmas(net: torch.nn.Module) -> dict[str, float]:
    """Median posterior std of each Bayesian layer."""
    return {name: (0.5 * layer.log_sigma2.detach()).exp().median().item() for name, layer in bayes_layers(net)}


def test_metrics(net: torch.nn.Module, test_idx: np.ndarray, s: Fig2Settings, ctx: RunContext) -> dict:
    """10-sample ensemble accuracy / NLL / ECE and the mean network's accuracy on the test images."""
    bayesian = any(True for _ in bayes_layers(net))
    batches = [ctx.target.tensors(test_idx[i:i + s.eval_batch], ctx.device)
               for i in range(0, len(test_idx), s.eval_batch)]
    ens = evaluate(net, batches, num_samples=s.eval_samples if bayesian else 0)
    mean = evaluate(net, batches, num_samples=0) if bayesian else ens
    return {"accuracy": ens["accuracy"], "nll": ens["nll"], "ece": ens["ece"], "accuracy_mean_net": mean["accuracy"]}


def run(params: dict, s: Fig2Settings, ctx: RunContext, run_id: str) -> list[dict]:
    method, n, seed = params["method"], params["n_train"], params["seed"]
    train_idx, test_idx = ctx.target.split(n, seed, s.max_test)
    with ctx.run_log(run_id) as log:
        log(f"{run_id}: {method}, N={n}, split seed {seed}, {len(test_idx)} test images, settings {s}")
        net, info = train_vi(method, train_idx, s, seed, ctx, log, desc=run_id)
        metrics = test_metrics(net, test_idx, s, ctx)
        log(f"test: {metrics}")
    sigmas = list(layer_sigmas(net).values())
    if ctx.target.kind == "photo":
        sig = sigmas or [0.0, 0.0, 0.0]
        prior = ctx.priors.domain() if method in DOMAIN_METHODS else ""
        init_prior = ctx.priors.domain(init=True) if s.init.startswith("prior") else s.init
        return [dict(method=method, prior=prior, init_prior=init_prior, n_train="all" if n == ALL else n,
                     train_images=len(train_idx), seed=seed, n_test=len(test_idx), **metrics, kl=info["kl"],
                     sigma_conv1=sig[0], sigma_conv2=sig[1], sigma_conv3=sig[2], width_scale=s.width_scale,
                     steps=s.steps, batch_size=info["batch_size"], seconds=info["seconds"],
                     ms_per_step=info["ms_per_step"])]
    sig = sigmas or [0.0, 0.0]
    return [dict(method=method, n_train=n, seed=seed, n_test=len(test_idx), **metrics, kl=info["kl"],
                 sigma_conv1=sig[0], sigma_conv2=sig[1], steps=s.steps, batch_size=info["batch_size"],
                 seconds=info["seconds"], ms_per_step=info["ms_per_step"])]
