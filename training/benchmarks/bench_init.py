"""Cost of init_from_prior against creating the model itself, measured side by side in one run.

    python training/benchmarks/bench_init.py                          # resnet50, bundled notMNIST priors
    python training/benchmarks/bench_init.py --threads 1 --rounds 5
    python training/benchmarks/bench_init.py --device cuda            # priors (and sampling) on the GPU

Each round times ``timm.create_model(MODEL)`` and then ``init_from_prior`` on the model it made (priors
loaded once, before the rounds), so a busy machine slows both alike; the ratio of the medians is the
figure of merit (the target is <= 3x on resnet50's ~1.2M 3x3 kernels). A second table gives the
peak resident-memory increase during init for several chunk sizes (polled every millisecond from a
thread), to show that it follows the chunk size, not the model size. A third compares DecoderMean with
the decoder's own forward pass on the same latents, which is what DWPrior.sample ran before.
No absolute times are claimed; they are printed for context only.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `training`

from dwp_hub import DWPrior, init_from_prior  # noqa: E402
from dwp_hub.decoder_mean import DecoderMean  # noqa: E402
from training.cli_options import CONTEXT, list_option  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    """Peak resident memory above the level at entry, polled from a thread while the block runs."""

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def timed(fn):
    """(seconds, result) of fn(), waiting for queued GPU work so that it is counted."""
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


@click.command(context_settings=CONTEXT)
@click.option("--model", default="resnet50", show_default=True, help="timm model name.")
@list_option("--priors", default=("dwp/notmnist-7x7", "dwp/notmnist-5x5", "dwp/notmnist-3x3"),
             help="Priors to initialise from (names or folders).")
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True, help="Timed rounds.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Torch intra-op threads [default: torch's].")
@click.option("--device", default="cpu", show_default=True, help="Where the priors sample (the model stays on the CPU).")
@list_option("--chunk-sizes", convert=int, default=(1024, 4096, 16384, 65536), help="Chunk sizes of the memory table.")
def main(**options: Any) -> None:
    """Cost of init_from_prior against creating the model itself, measured side by side."""
    args = SimpleNamespace(**options)
    if args.threads:
        torch.set_num_threads(args.threads)
    priors = [DWPrior.from_pretrained(n).to(args.device) for n in args.priors]
    generator = torch.Generator(args.device)

    def init(model, chunk_size=4096):
        return init_from_prior(model, priors, generator=generator.manual_seed(0), chunk_size=chunk_size)

    timed(lambda: init(timm.create_model(args.model)))  # warm-up: first-call costs of both paths
    creates, inits = [], []
    for _ in range(args.rounds):
        t_create, model = timed(lambda: timm.create_model(args.model))
        t_init, report = timed(lambda: init(model))
        creates.append(t_create)
        inits.append(t_init)
    c, i = statistics.median(creates), statistics.median(inits)
    print(f"model {args.model}, {report.kernels:,} kernels sampled in {len(report.layers)} layers; "
          f"torch threads {torch.get_num_threads()}; priors on {args.device}; {args.rounds} rounds")
    print(report.summary())
    print(f"{'':28} {'median s':>9}")
    print(f"{'timm.create_model':28} {c:>9.3f}")
    print(f"{'init_from_prior':28} {i:>9.3f}")
    print(f"ratio init / create: {i / c:.2f}  (create + init = {(c + i) / c:.2f}x create alone)")

    print(f"\n{'chunk size':>10} {'init s':>8} {'peak extra RSS MB':>18}")
    for chunk in args.chunk_sizes:
        model = timm.create_model(args.model)
        with PeakRSS() as mem:
            t, _ = timed(lambda: init(model, chunk))
        print(f"{chunk:>10,} {t:>8.3f} {mem.extra_mb:>18.1f}")

    prior = priors[-1]
    z = torch.randn(65536, prior.z_dim, device=args.device)
    with torch.no_grad():
        t_module = statistics.median(timed(lambda: prior.decode(z)[0])[0] for _ in range(3))
        fast = DecoderMean(prior.decoder)
        t_fast = statistics.median(timed(lambda: fast(z))[0] for _ in range(3))
        diff = (fast(z) - prior.decode(z)[0]).abs().max().item()
    print(f"\ndecoding 65,536 {prior.kernel_size}x{prior.kernel_size} kernels: decoder forward / DecoderMean "
          f"= {t_module / t_fast:.1f}x (max |difference| {diff:.1e})")


if __name__ == "__main__":
    main()
