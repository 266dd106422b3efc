"""Progress bars for long work (tqdm): shown on a terminal, quiet when stderr is not a TTY or when disabled."""

from __future__ import annotations

import os
from typing import Any

DISABLE_ENV = "DWP_HUB_DISABLE_PROGRESS_BARS"


def progress_bar(total: int | None, desc: str, progress: bool | None = None, unit: str = "it") -> Any:
    """A tqdm bar. `progress`: True shows it, False hides it, None (default) shows it on a TTY unless
    the environment variable DWP_HUB_DISABLE_PROGRESS_BARS is set to 1."""
    from tqdm.auto import tqdm

    if progress is None:
        disable = None if os.environ.get(DISABLE_ENV, "") not in ("1", "true", "True") else True
    else:
        disable = not progress
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True)
