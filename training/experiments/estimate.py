"""Timing probe: a few steps of every kind of run, extrapolated to the full suite's duration.

``python -m training.experiments estimate [--device cuda] [--workers W]`` measures, on the device in use,
the time per training step of each Fig. 2 method (by differencing a short and a longer run, so set-up and
warm-up cancel), the test evaluation, the appendix-B IWAE pass, and one Fig. 3 / Fig. 4 run of each kind;
then multiplies by the full setting's run counts. With ``--workers W > 1`` it also runs W Fig. 2 step
timings at once in W processes, which is how the runner shares one GPU, and reports the aggregate speed-up.

With a photo target it times Fig. 2's natural-image panel instead (``estimate_natural``): the step of every
method and the test evaluation at each candidate ``width_scale``, and the whole grid's time (every method once,
plus the DWP once more per further prior domain), so that the width can be chosen to fit the time available.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context

import torch

from dwp_hub.bayes_conv import bayes_layers

from . import appendix_b, fig2, fig3, fig4, runner
from .context import RunContext
from .data import ALL
from .settings import FULL, Fig2Settings


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of fn()."""
    _sync(device)
    w, c = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - w, time.process_time() - c


def per_step(run, ctx: RunContext, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step of run(n_steps): a warm-up call, then the difference of two lengths."""
    run(2)  # loads priors, builds kernels' caches, initialises the device
    short = _clock(lambda: run(2), ctx.device)
    long = _clock(lambda: run(2 + steps), ctx.device)
    return (long[0] - short[0]) / steps, (long[1] - short[1]) / steps


def step_seconds(method: str, ctx: RunContext, steps: int = 20, s=None) -> tuple[float, float]:
    """(wall, CPU) seconds per Fig. 2 training step of `method` at N = 1000 (setting `s`, default the full one)."""
    s = s or FULL["fig2"]
    train_idx, _ = ctx.target.split(1000, 0)
    with ctx.run_log(f"estimate-{method}") as log:
        return per_step(lambda n: fig2.train_vi(method, train_idx, replace(s, steps=n), 0, ctx, log), ctx, steps)


def _worker_steps(method: str, steps: int) -> float:
    return step_seconds(method, runner._CTX, steps)[0]


def estimate(ctx: RunContext, workers: int = 1, steps: int = 20, say=print) -> dict[str, float]:
    """Print and return the estimated seconds of each experiment's full setting in one process.

    On a CPU the estimates use process CPU time (what the run costs on a dedicated core, whatever else the
    machine is doing); on a GPU, wall time.
    """
    dev = ctx.device
    pick = 0 if dev.type == "cuda" else 1
    s2, sg, s3, s4 = FULL["fig2"], FULL["gap"], FULL["fig3"], FULL["fig4"]
    step = {}
    for m in s2.methods:
        step[m] = step_seconds(m, ctx, steps)
        say(f"fig2 {m:14s} {1000 * step[m][0]:7.1f} ms/step wall, {1000 * step[m][1]:7.1f} ms CPU")
    exact = step_seconds("dwp", ctx, max(2, steps // 4), replace(s2, kl_subsample=None))
    say(f"fig2 dwp, exact KL (all 4,128 kernels each step; not in the suite) {1000 * exact[0]:7.1f} ms/step wall, "
        f"{1000 * exact[1]:7.1f} ms CPU")
    train_idx, test_idx = ctx.target.split(1000, 0, s2.max_test)
    log = ctx.run_log("estimate-eval")
    net, _ = fig2.train_vi("normal", train_idx, replace(s2, steps=2), 0, ctx, log)
    ev = _clock(lambda: fig2.test_metrics(net, test_idx, s2, ctx), dev)
    say(f"fig2 evaluation of {len(test_idx)} test images: {ev[0]:.2f} s wall, {ev[1]:.2f} s CPU")
    n_test = {n: len(ctx.target.split(n, 0, s2.max_test)[1]) for n in s2.sizes}
    fig2_total = sum(s2.steps * step[m][pick] + ev[pick] * n_test[n] / len(test_idx)
                     for m in s2.methods for n in s2.sizes) * len(s2.seeds)

    dwp_net, _ = fig2.train_vi("dwp", train_idx, replace(s2, steps=2), 0, ctx, log)
    layers = dict(bayes_layers(dwp_net))
    k_probe = min(sg.iwae_samples, 1000)
    iwae = _clock(lambda: appendix_b.approximation_gap(dwp_net, num_samples=k_probe, max_kernels=8), dev)
    iwae_run = iwae[pick] * (sg.iwae_samples / k_probe) * (sg.max_kernels / 8)
    prior_r = _clock(lambda: [appendix_b.prior_r_bound(layer, sg.prior_z_samples, 8) for layer in layers.values()], dev)
    gap_run = sg.vi.steps * step["dwp"][pick] + ev[pick] + iwae_run + prior_r[pick] * sg.max_kernels / 8
    gap_total = gap_run * len(sg.sizes) * len(sg.seeds)
    say(f"gap IWAE pass (K={sg.iwae_samples:,}, {sg.max_kernels} kernels/layer): ~{iwae_run:.1f} s")
    log.close()

    t3 = {k: _clock(lambda: fig3.run(dict(init="dwp", scale=k, seed=0), s3, ctx, f"estimate-fig3-{k}"), dev)[pick]
          for k in (min(s3.scales), max(s3.scales))}
    fig3_total = sum(t3[min(t3)] + (t3[max(t3)] - t3[min(t3)]) * k for k in s3.scales) * len(s3.inits) * len(s3.seeds)
    say(f"fig3 one run: {t3[min(t3)]:.2f} s at k={min(t3):g}, {t3[max(t3)]:.2f} s at k={max(t3):g}")

    fig4_total = 0.0
    for model, total_steps in (("cnn", s4.cnn_steps), ("vae", s4.vae_steps)):
        def run4(n: int, evals: int = 2) -> None:
            probe = replace(s4, cnn_steps=n, vae_steps=n, eval_points=evals)
            fig4.run(dict(model=model, init="dwp", seed=0), probe, ctx, f"estimate-fig4-{model}")

        t = per_step(run4, ctx, steps)[pick]
        ev4 = _clock(lambda: run4(0, 1), dev)[pick]  # set-up and one evaluation
        fig4_total += (t * total_steps + ev4 * s4.eval_points) * len(s4.inits) * len(s4.seeds)
        say(f"fig4 {model}: {1000 * t:.1f} ms/step, {ev4:.2f} s per evaluation")

    totals = {"fig2": fig2_total, "gap": gap_total, "fig3": fig3_total, "fig4": fig4_total}
    for name, sec in totals.items():
        say(f"estimated {name}: {sec / 60:6.1f} min in one process")
    say(f"estimated suite: {sum(totals.values()) / 60:.1f} min in one process")
    if workers > 1:
        single = step["dwp"][0], step["normal"][0]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=runner._init_worker,
                                 initargs=(str(dev), 1, ctx.target, ctx.priors.names, ctx.priors.init_names,
                                           str(ctx.log_dir))) as pool:
            list(pool.map(_worker_steps, ["normal"] * workers, [2] * workers))  # start-up and warm-up
            for i, m in enumerate(("dwp", "normal")):
                each = list(pool.map(_worker_steps, [m] * workers, [steps * 3] * workers))
                speedup = workers * single[i] / (sum(each) / len(each))
                say(f"{workers} concurrent processes, fig2 {m}: {1000 * sum(each) / len(each):.1f} ms/step each, "
                    f"aggregate speed-up {speedup:.1f}x over one process")
                totals[f"speedup_{m}"] = speedup
    return totals


def estimate_natural(ctx: RunContext, s: Fig2Settings, width_scales: tuple[float, ...], steps: int = 20,
                     dwp_domains: int = 2, say=print) -> dict[float, float]:
    """Print and return, per width scale, the estimated seconds of the natural panel's grid `s` in one process.

    Steps are timed on every training tile (the batch is min(N, batch_size), the same at every grid size of
    32 classes); the grid is `s.methods` plus `dwp_domains` − 1 more DWP runs, at every size and seed. On a CPU
    the estimate is process CPU time (seconds on one dedicated core: halve it for two workers on two cores); on
    a GPU, wall time.
    """
    pick = 0 if ctx.device.type == "cuda" else 1
    train_idx, test_idx = ctx.target.split(ALL, 0, s.max_test)
    runs_per_point = len(s.methods) + (dwp_domains - 1 if "dwp" in s.methods else 0)
    points = len(s.sizes) * len(s.seeds)
    totals = {}
    for width in width_scales:
        sw = replace(s, width_scale=width)
        with ctx.run_log(f"estimate-natural-{width:g}") as log:
            step = {m: per_step(lambda n, m=m: fig2.train_vi(m, train_idx, replace(sw, steps=n), 0, ctx, log), ctx, steps)
                    for m in s.methods}
            net, _ = fig2.train_vi("normal", train_idx, replace(sw, steps=2), 0, ctx, log)
        ev = _clock(lambda: fig2.test_metrics(net, test_idx, sw, ctx), ctx.device)
        params = sum(p.numel() for p in fig2.build_net(ctx.target, sw).parameters())
        for m, t in step.items():
            say(f"natural fig2 width x{width:g} ({params:,} parameters) {m:14s} {1000 * t[0]:7.1f} ms/step wall, "
                f"{1000 * t[1]:7.1f} ms CPU")
        say(f"natural fig2 width x{width:g}: evaluation of {len(test_idx)} test tiles {ev[0]:.2f} s wall, "
            f"{ev[1]:.2f} s CPU")
        per_point = sum(s.steps * t[pick] for t in step.values()) + runs_per_point * ev[pick]
        if "dwp" in s.methods:
            per_point += (dwp_domains - 1) * s.steps * step["dwp"][pick]
        totals[width] = per_point * points
        say(f"estimated natural fig2 grid at width x{width:g}: {runs_per_point * points} runs, "
            f"{totals[width] / 60:.1f} min in one process")
    return totals
