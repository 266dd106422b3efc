"""The README's table of bundled priors, generated from the priors' own files so that it cannot drift.

    python -m training.priors_table                    # print the markdown table
    python -m training.priors_table --write README.md  # replace the table between the markers in README.md

Each row comes from one bundled prior folder: name, domain, kernel size and z from `list_priors()`, the
architecture from config.json, the kernels the VAE was fitted to and the held-out scores from
provenance.json, the licence from the card's metadata, and the exact bound's cost per kernel (as a ratio to
the N(0,1) KL's, against the budget of training/bound_cost.py) from the benchmark's CSV,
training/results/bound-cost.csv (written by training/benchmarks/bench_bound_cost.py --write).
tests/test_readme.py checks that README.md holds exactly this table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dwp_hub import list_priors
from dwp_hub.atomic import write_text_atomic

from .bound_cost import BOUND_COST_CSV, read_costs

BEGIN = "<!-- priors-table -->"
END = "<!-- /priors-table -->"

HEADER = ("| prior | domain | kernel | architecture, z | kernels fitted | held-out IWAE (nats/kernel) "
          "| full-cov. Gaussian (nats/kernel) | exact bound's cost (× N(0,1) KL) | licence |\n"
          "|---|---|---|---|---|---|---|---|---|")


def _count(n: int) -> str:
    return f"{n:,}"


def _score(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "—"


def _kernels_fitted(provenance: dict[str, Any]) -> str:
    """How many source kernels the VAE was fitted to, and how: a subsample of the training set, or under D4."""
    train = provenance.get("kernels_train")
    fitted = provenance.get("vae_train_kernels", train)
    if not isinstance(fitted, int):
        return "—"
    text = _count(fitted)
    if isinstance(train, int) and fitted < train:
        text += f" of {_count(train)}"
    if provenance.get("augment") == "d4":
        text += " × 8 symmetries"
    return text


def _bound_cost(row: dict[str, str] | None) -> str:
    """The measured ratio of the exact bound's cost per kernel to the N(0,1) KL's, flagged when over the budget."""
    if row is None:
        return "—"
    ratio, budget = float(row["ratio"]), float(row["budget"])
    return f"{ratio:.1f}× (over budget {budget:g}×)" if ratio > budget else f"{ratio:.1f}×"


def _licence(card: Path) -> str:
    from huggingface_hub import metadata_load

    metadata = metadata_load(card) if card.is_file() else None
    return str((metadata or {}).get("license", "—"))


def _row(name: str, domain: str, kernel_size: int, z_dim: int, folder: Path, cost: dict[str, str] | None) -> str:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    provenance_file = folder / "provenance.json"
    provenance = json.loads(provenance_file.read_text(encoding="utf-8")) if provenance_file.is_file() else {}
    cells = [f"`{name}`", domain, f"{kernel_size}x{kernel_size}", f"`{config['architecture']}`, {z_dim}",
             _kernels_fitted(provenance), _score(provenance.get("heldout_iwae_loglik")),
             _score(provenance.get("heldout_fullcov_gaussian_loglik")), _bound_cost(cost),
             _licence(folder / "README.md")]
    return "| " + " | ".join(cells) + " |"


def priors_table(costs_csv: Path = BOUND_COST_CSV) -> str:
    """The markdown table of the bundled priors (no trailing newline), in list_priors() order; the bound's cost
    of each from `costs_csv` ("—" for a prior it has no row for)."""
    costs = read_costs(costs_csv)
    rows = [_row(p.name, p.domain, p.kernel_size, p.z_dim, Path(p.path), costs.get(p.name))
            for p in list_priors() if p.source == "bundled"]
    return "\n".join([HEADER, *rows])


def _split(text: str) -> tuple[str, str, str]:
    """`text` cut into what precedes the table, the table (between the marker lines) and what follows."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"needs one {BEGIN} line followed by one {END} line")
    head, rest = text.split(BEGIN, 1)
    table, tail = rest.split(END, 1)
    return head, table.strip("\n"), tail


def with_table(text: str, table: str) -> str:
    """`text` with the table between the BEGIN and END markers replaced by `table`.

    Raises ValueError when the markers are missing, repeated or out of order.
    """
    head, _, tail = _split(text)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def table_in(text: str) -> str:
    """The table between the markers of `text` (ValueError when the markers are missing)."""
    return _split(text)[1]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--write", "target", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help=f"Markdown file whose table between {BEGIN} and {END} is replaced (e.g. README.md).")
def main(target: Path | None) -> None:
    """Print the markdown table of the bundled priors, or write it into a file between its markers."""
    table = priors_table()
    if target is None:
        click.echo(table)
        return
    try:
        updated = with_table(target.read_text(encoding="utf-8"), table)
    except ValueError as e:
        raise click.ClickException(f"{target}: {e}; add the two marker lines where the table goes") from None
    write_text_atomic(target, updated)
    click.echo(f"wrote the table of {table.count(chr(10)) - 1} bundled priors into {target}")


if __name__ == "__main__":
    main()
