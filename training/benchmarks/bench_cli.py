"""How long `dwp-hub --help` takes, beside the bare interpreter start and `import torch`, measured in one run.

    python training/benchmarks/bench_cli.py                 # this checkout
    python training/benchmarks/bench_cli.py --root OTHER    # another checkout's dwp_hub, for a before/after

Each command runs in a fresh interpreter `--runs` times; the median wall time of each is printed, and the
help's time over the interpreter's. Absolute times depend on the machine and its load; compare within a run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

HELP = "import dwp_hub.cli as c, sys; sys.argv = ['dwp-hub', '--help']; c.main()"
# The checkout goes first on sys.path (PYTHONPATH would not do: an editable install's finder would win).
USE_ROOT = "import sys; sys.path.insert(0, {root!r}); "


def median_seconds(code: str, runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path(__file__).resolve().parents[2], help="Checkout whose dwp_hub is imported [default: this one].")
@click.option("--runs", type=click.IntRange(1), default=9, show_default=True, help="Fresh interpreters per command.")
def main(root: Path, runs: int) -> None:
    """How long `dwp-hub --help` takes, beside the bare interpreter start and `import torch`."""
    env = dict(os.environ)
    prefix = USE_ROOT.format(root=str(root.resolve()))
    where = subprocess.run([sys.executable, "-c", prefix + "import dwp_hub; print(dwp_hub.__file__)"], env=env,
                           capture_output=True, text=True).stdout.strip()
    interpreter = median_seconds(prefix, runs, env)
    torch_import = median_seconds(prefix + "import torch", runs, env)
    help_time = median_seconds(prefix + HELP, runs, env)
    print(f"dwp_hub from {where}; median of {runs} runs each")
    print(f"{'python (bare interpreter)':28} {interpreter:7.3f} s")
    print(f"{'python -c import torch':28} {torch_import:7.3f} s")
    print(f"{'dwp-hub --help':28} {help_time:7.3f} s   ({help_time / interpreter:.1f}x the bare interpreter, "
          f"{help_time / torch_import:.2f}x import torch)")


if __name__ == "__main__":
    main()
