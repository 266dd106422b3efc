"""What a run gets from the process it runs in: device, target data, priors, a per-run log and progress."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import Target
from .priors import PriorSet


def configure_device(device: str, threads: int) -> torch.device:
    """Torch threads for this process; on a GPU let cuDNN pick the fastest kernels for the fixed shapes."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return dev


def adam(params, device: torch.device, **kwargs) -> torch.optim.Adam:
    """Adam; on a GPU the fused implementation (one kernel per step instead of a few per parameter)."""
    return torch.optim.Adam(params, fused=device.type == "cuda", **kwargs)


@dataclass
class RunContext:
    """Shared by every run of one process; priors and data are loaded once and reused."""

    device: torch.device
    target: Target
    priors: PriorSet
    log_dir: Path
    progress: bool = False  # per-step progress bars (only when runs go one at a time)

    def bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, leave=False, disable=not self.progress, mininterval=0.5)

    def run_log(self, run_id: str) -> "RunLog":
        return RunLog(self.log_dir / (re.sub(r"[^A-Za-z0-9._=-]+", "_", run_id) + ".log"))


class RunLog:
    """A run's own log file (training curves, timings), rewritten when the run is redone."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = path.open("w", encoding="utf-8")
        self._t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        self._f.write(f"[{time.monotonic() - self._t0:8.1f}s] {message}\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
