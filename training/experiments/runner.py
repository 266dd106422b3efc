"""Runs the experiments' pending runs, one at a time or in worker processes, streaming results to CSV.

Each run is independent and seeded; the main process appends a run's rows to ``OUT/<experiment>.csv`` as
soon as it finishes (flushed to disk), logs a line to ``OUT/experiments.log`` and moves the progress bar.
Runs already in the CSV under the same protocol hash are skipped, so an interrupted job resumes.
With ``workers > 1`` the runs go to spawned processes that each load the data and priors once and share
the device (one CUDA GPU is shared by time slicing; this net is too small to fill it from one process).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import appendix_b, fig2, fig3, fig4
from .context import RunContext, configure_device
from .data import Target
from .priors import PriorSet
from .records import ResultsFile
from .settings import run_protocol, settings_for

EXPERIMENTS = {m.NAME: m for m in (fig2, appendix_b, fig3, fig4)}
LOG = logging.getLogger("training.experiments")


def protocol(experiment: str, settings, target: Target, priors: PriorSet) -> str:
    """Hash of how each run is done (the setting without its grid), the target's content and the priors' files.

    The grid (sizes, seeds, methods, ...) only says which runs exist; each run's id names its grid point,
    so growing the grid adds runs to the same CSV instead of starting a new protocol.
    """
    h = hashlib.sha1()
    init = {"init_priors": priors.init_names} if priors.init_names else {}  # absent: earlier runs keep their hash
    h.update(json.dumps({"experiment": experiment, "settings": run_protocol(settings), "priors": priors.names,
                         "prior_files": priors.fingerprint(), **init}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(target.x).tobytes())
    h.update(np.ascontiguousarray(target.y).tobytes())
    if target.pool is not None:
        h.update(f"pool {target.pool}".encode())
    return h.hexdigest()[:10]


_CTX: RunContext | None = None
# Experiments whose runs are light enough for a CPU worker beside a GPU: frozen features + a linear head
# (fig3) and small deterministic nets (fig4).
CPU_FRIENDLY = {"fig3", "fig4"}


@dataclass
class Lane:
    """A pool of worker processes on one device, and which runs it takes (None: any)."""

    device: str
    capacity: int
    threads: int
    experiments: set[str] | None
    busy: int = 0
    pool: ProcessPoolExecutor | None = None

    def accepts(self, job) -> bool:
        return self.experiments is None or job[0] in self.experiments


def _init_worker(device: str, threads: int, target: Target, prior_names: dict[int, str],
                 init_names: dict[int, str], log_dir: str) -> None:
    global _CTX
    _CTX = RunContext(configure_device(device, threads), target, PriorSet(dict(prior_names), dict(init_names)),
                      Path(log_dir))


def _run(experiment: str, run_id: str, params: dict, settings) -> tuple[list[dict], float, str | None]:
    """One run; a failure comes back as its traceback so that the other runs go on."""
    t0 = time.monotonic()
    try:
        rows = EXPERIMENTS[experiment].run(params, settings, _CTX, run_id)
    except Exception:  # noqa: BLE001 - reported by the main process, which then carries on
        return [], time.monotonic() - t0, traceback.format_exc()
    return rows, time.monotonic() - t0, None


# Order of the runs: Fig. 2 first, split seed by split seed (a job stopped early still has complete seeds),
# then the convergence and feature experiments, then appendix B; within that, longest runs first.
PRIORITY = {"fig2": 0, "fig4": 1, "fig3": 2, "gap": 3}


def _order(job) -> tuple:
    name, _, params, _ = job
    cost = 2.0 if params.get("method") == "dwp" else 1.0 if name == "fig2" else 0.5 if params.get("model") == "vae" else 0.2
    return PRIORITY.get(name, 9), params.get("seed", 0), -cost


def setup_logging(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if not any(isinstance(h, logging.FileHandler) for h in LOG.handlers):
        handler = logging.FileHandler(out / "experiments.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)


def run_experiments(names: list[str], out: str | os.PathLike, target: Target, device: str = "cpu",
                    workers: int = 1, quick: bool = False, priors: PriorSet | None = None,
                    threads: int | None = None, overrides: dict[str, object] | None = None,
                    progress: bool = True, time_limit: float | None = None, cpu_workers: int = 0) -> dict[str, int]:
    """Run the pending runs of experiments `names`; return how many runs each recorded now.

    `workers` processes run on `device`; `cpu_workers` more processes (one thread each) run on the CPU and
    take only the experiments in CPU_FRIENDLY, so that a GPU machine's spare cores do the light runs while
    the GPU does the variational inference. `overrides` maps experiment → a settings object replacing the
    default (full or quick) one. `time_limit` (seconds): start no run after that; runs already going finish
    and are recorded.
    """
    deadline = None if time_limit is None else time.monotonic() + time_limit
    out = Path(out)
    setup_logging(out)
    priors = priors or PriorSet()
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs, files, protos = [], {}, {}
    for name in names:
        module = EXPERIMENTS[name]
        settings = (overrides or {}).get(name) or settings_for(name, quick, target.kind)
        protos[name] = protocol(name, settings, target, priors)
        columns = module.columns(target) if hasattr(module, "columns") else module.COLUMNS  # fig2's depend on it
        files[name] = ResultsFile(out / f"{name}.csv", columns)
        record = {"experiment": name, "protocol": protos[name], "quick": quick, "settings": asdict(settings),
                  "target": target.provenance, "priors": priors.describe(), "device": device, "workers": workers, "cpu_workers": cpu_workers,
                  "torch": torch.__version__}
        (out / f"settings-{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        done = files[name].done(protos[name])
        planned = module.plan(settings)
        pending = [(name, rid, params, settings) for rid, params in planned if rid not in done]
        LOG.info("%s: protocol %s, %d runs planned, %d already recorded, %d to run", name, protos[name],
                 len(planned), len(planned) - len(pending), len(pending))
        jobs.extend(pending)
    jobs.sort(key=_order)
    counts = {name: 0 for name in names}
    failures: list[str] = []

    def record(job, ran_on: str, rows: list[dict], seconds: float, error: str | None) -> None:
        name, rid = job[0], job[1]
        if error is not None:
            failures.append(rid)
            LOG.error("FAILED %s after %.1fs:\n%s", rid, seconds, error)
            tqdm.write(f"FAILED {rid}:\n{error}")
            return
        files[name].append([{"run_id": rid, "protocol": protos[name], "run_seconds": seconds, "device": ran_on, **r}
                            for r in rows])
        counts[name] += 1
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items())
        LOG.info("done %s in %.1fs: %s", rid, seconds, summary)

    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
    log_dir = str(out / "logs")
    queue = list(jobs)

    def may_start() -> bool:
        return bool(queue) and (deadline is None or time.monotonic() < deadline)

    if workers <= 1 and cpu_workers == 0:
        _init_worker(device, threads, target, priors.names, priors.init_names, log_dir)
        _CTX.progress = progress
        while may_start():
            job = queue.pop(0)
            record(job, device, *_run(*job))
            bar.update()
    else:
        lanes = [Lane(device, max(1, workers), threads, None)]
        if cpu_workers > 0:
            lanes.append(Lane("cpu", cpu_workers, 1, CPU_FRIENDLY))
        for lane in lanes:
            lane.pool = ProcessPoolExecutor(
                max_workers=lane.capacity, mp_context=get_context("spawn"), initializer=_init_worker,
                initargs=(lane.device, lane.threads, target, priors.names, priors.init_names, log_dir))
        running: dict = {}  # future -> (job, lane)

        def fill() -> None:
            """Start queued runs, in order, on every lane with a free slot that accepts them."""
            for lane in lanes:
                while may_start() and lane.busy < lane.capacity:
                    job = next((j for j in queue if lane.accepts(j)), None)
                    if job is None:
                        break
                    queue.remove(job)
                    running[lane.pool.submit(_run, *job)] = (job, lane)
                    lane.busy += 1

        try:
            fill()
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job, lane = running.pop(fut)
                    lane.busy -= 1
                    record(job, lane.device, *fut.result())
                    bar.update()
                fill()
        finally:
            for lane in lanes:
                lane.pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    if queue:
        LOG.info("time limit reached: %d run(s) not started; rerun the same command to do them", len(queue))
        tqdm.write(f"time limit reached: {len(queue)} run(s) not started; rerun the same command to do them")
    if failures:
        raise RuntimeError(f"{len(failures)} run(s) failed (tracebacks in {out / 'experiments.log'}): "
                           f"{', '.join(failures[:10])}")
    return counts
