"""`config.json` of a prior folder: what it holds and how it is validated.

A prior folder is ``model.safetensors`` (weights) + ``config.json`` (this) + ``README.md`` (model card).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .architectures import ARCHITECTURES
from .errors import PriorFormatError

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
# Optional: samples of the source kernels the prior was fitted to, tensors "train" and "heldout" of shape
# (n, k, k), at most 4,096 each. Used for latent plots (paper Fig. 6) and the multivariate-Gaussian baseline.
KERNELS_NAME = "kernels.safetensors"

# Smallest variance either Gaussian of the VAE can report: std >= 1e-3. Kernels of trained nets have
# per-weight scales of 1e-2..1e-1, so this never binds for a sane fit but keeps log-densities finite.
DEFAULT_VAR_FLOOR = 1e-6


@dataclass
class PriorConfig:
    """Everything needed to rebuild a DWPrior besides its weights, plus where it came from."""

    kernel_size: int
    z_dim: int
    architecture: str
    domain: str
    var_floor: float = DEFAULT_VAR_FLOOR
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "config") -> None:
        """Raise PriorFormatError naming `source` if any field is out of range or inconsistent."""

        def bad(msg: str) -> PriorFormatError:
            return PriorFormatError(f"{source}: {msg}")

        if self.format_version != FORMAT_VERSION:
            raise bad(f"format_version {self.format_version!r} is not supported (this dwp-hub reads {FORMAT_VERSION})")
        if self.architecture not in ARCHITECTURES:
            raise bad(f"unknown architecture {self.architecture!r}; known: {sorted(ARCHITECTURES)}")
        arch = ARCHITECTURES[self.architecture]
        if not isinstance(self.kernel_size, int) or self.kernel_size != arch.kernel_size:
            raise bad(f"kernel_size {self.kernel_size!r} does not match architecture {arch.name} ({arch.kernel_size})")
        if not isinstance(self.z_dim, int) or isinstance(self.z_dim, bool) or not 1 <= self.z_dim <= 256:
            raise bad(f"z_dim must be an integer in [1, 256], got {self.z_dim!r}")
        if not isinstance(self.domain, str) or not self.domain:
            raise bad("domain must be a non-empty string")
        if not isinstance(self.var_floor, (int, float)) or not (0 < self.var_floor < 1) or not math.isfinite(self.var_floor):
            raise bad(f"var_floor must be a number in (0, 1), got {self.var_floor!r}")
        if not isinstance(self.provenance, dict):
            raise bad("provenance must be a JSON object")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> "PriorConfig":
        if not isinstance(data, dict):
            raise PriorFormatError(f"{source}: expected a JSON object")
        known = {"kernel_size", "z_dim", "architecture", "domain", "var_floor", "provenance", "format_version"}
        missing = {"kernel_size", "z_dim", "architecture", "domain", "format_version"} - data.keys()
        if missing:
            raise PriorFormatError(f"{source}: missing field(s) {sorted(missing)}")
        unknown = data.keys() - known
        if unknown:
            raise PriorFormatError(f"{source}: unknown field(s) {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as e:
            raise PriorFormatError(f"{source}: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "PriorConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PriorFormatError(f"{path}: missing (a prior folder needs {CONFIG_NAME}, {WEIGHTS_NAME}, {CARD_NAME})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PriorFormatError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data, source=str(path))
