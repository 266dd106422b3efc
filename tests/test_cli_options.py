"""training/cli_options.py's list-valued options: comma-separated and repeatable, whatever the default's type."""

from __future__ import annotations

import click
from click.testing import CliRunner

from training.cli_options import list_option


@click.command()
@list_option("--lags", convert=int, default=(8, 32))
@list_option("--names")
def show(lags: tuple[int, ...], names: tuple[str, ...]) -> None:
    click.echo(f"{lags} {names}")


def test_a_list_option_with_an_int_default_takes_commas_and_repeats() -> None:
    assert CliRunner().invoke(show, []).output == "(8, 32) ()\n"
    assert CliRunner().invoke(show, ["--lags", "1,2", "--lags", "3"]).output == "(1, 2, 3) ()\n"
    assert CliRunner().invoke(show, ["--names", "a,b", "--names", ""]).output == "(8, 32) ('a', 'b')\n"


def test_a_list_option_refuses_a_value_its_type_refuses_in_one_line() -> None:
    result = CliRunner().invoke(show, ["--lags", "1,x"])
    assert result.exit_code == 2 and "'x' is not a valid int" in result.output
