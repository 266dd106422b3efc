"""Click pieces shared by the ``python -m training…`` commands: their context settings and list-valued options."""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import click

T = TypeVar("T")

CONTEXT = {"help_option_names": ["-h", "--help"]}


def list_option(*decls: str, convert: Callable[[str], T] = str, default: Sequence[Any] = (), metavar: str = "A,B,…",
                **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An option that takes a list: comma-separated values, repeatable (``--seeds 0,1`` or ``--seeds 0 --seeds 1``).

    The command gets a tuple of ``convert(value)``; a value `convert` refuses (ValueError) is a usage error: for a
    type such as int the message names the value, for a function it is the function's own. With no `default` and
    the option not given, the tuple is empty.
    """
    def split(ctx: click.Context, param: click.Parameter, values: Sequence[Any]) -> tuple[T, ...]:
        out = []
        for value in values:
            for part in str(value).split(","):
                if part.strip():
                    try:
                        out.append(convert(part.strip()))
                    except ValueError as e:
                        what = f"{part.strip()!r} is not a valid {convert.__name__}"
                        raise click.BadParameter(what if isinstance(convert, type) else str(e)) from None
        return tuple(out)

    # type=STRING: with no type click would infer one from `default` (int for (8, 32)) and refuse "8,32" before `split`
    return click.option(*decls, multiple=True, type=click.STRING, default=tuple(default), callback=split,
                        metavar=metavar, show_default=bool(default), **kwargs)
