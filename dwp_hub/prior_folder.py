"""The prior folder: the one place that knows its files, reads and validates them, and writes them.

A prior is the same folder on disk, bundled in the package and in a Hub repository:

=======================  ========  ==========================================================================
file                     required  holds
=======================  ========  ==========================================================================
``model.safetensors``    yes       encoder r(z|w) and decoder p(w|z) tensors (safetensors only)
``config.json``          yes       `PriorConfig`: what is needed to rebuild the VAE besides its weights
``README.md``            yes [1]_  model card with Hub metadata (``library_name: dwp-hub``)
``provenance.json``      no        how the prior was built: any JSON object (data, source nets, scores, ...)
``kernels.safetensors``  no        tensors "train" / "heldout": at most 4,096 source kernels (n, k, k) each
=======================  ========  ==========================================================================

.. [1] Loading accepts a folder without a card; publishing does not.

**Format versions.** ``config.json`` carries ``format_version``. This dwp-hub writes version 2 and reads
versions 1 and 2 (version 1 kept the provenance inside config.json; it is moved to provenance.json when
read). Every field of a version is known to the readers of that version, so a field this reader does not
know is refused as damage, never dropped or guessed at; a writer that adds a field must raise
``format_version``, and a folder of a version newer than this reader is refused with a message to upgrade
dwp-hub. Free-form information that older readers should carry along belongs in provenance.json, which is
any JSON object and is written back unchanged.

**Ownership.** The five names above are the files a prior folder owns. Writing a folder replaces only
them: a target holding other files is refused unless the caller passes ``overwrite=True``, and even then
those other files are left in place; a folder is never emptied.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save

from .architectures import ARCHITECTURES, unknown_architecture_message
from .atomic import staged_folder, write_bytes_atomic
from .errors import PriorFormatError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
PROVENANCE_NAME = "provenance.json"
KERNELS_NAME = "kernels.safetensors"
REQUIRED_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
PRIOR_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, PROVENANCE_NAME, KERNELS_NAME)

# Weight files that could only be read by unpickling (which can run code): never read, never published.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

KERNEL_SETS = ("train", "heldout")
MAX_KERNEL_SAMPLES = 4096
WEIGHTS_METADATA = {"format": "pt"}

# Smallest variance either Gaussian of the VAE can report: std >= 1e-3. Kernels of trained nets have
# per-weight scales of 1e-2..1e-1, so this never binds for a sane fit but keeps log-densities finite.
DEFAULT_VAR_FLOOR = 1e-6

LIBRARY_NAME = "dwp-hub"
LICENSE = "apache-2.0"
PAPER_ARXIV = "1810.06943"
_CONFIG_FIELDS = ("format_version", "architecture", "kernel_size", "z_dim", "domain", "var_floor")
_REQUIRED_CONFIG_FIELDS = ("format_version", "architecture", "kernel_size", "z_dim", "domain")


@dataclass
class PriorConfig:
    """Everything needed to rebuild a DWPrior besides its weights (``config.json``)."""

    kernel_size: int
    z_dim: int
    architecture: str
    domain: str
    var_floor: float = DEFAULT_VAR_FLOOR
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "config") -> None:
        """Raise PriorFormatError naming `source` if any field is out of range or inconsistent."""

        def bad(msg: str) -> PriorFormatError:
            return PriorFormatError(f"{source}: {msg}")

        if self.format_version != FORMAT_VERSION:
            raise bad(f"format_version {self.format_version!r} is not supported (this dwp-hub reads "
                      f"{', '.join(map(str, READABLE_VERSIONS))}; a newer version needs a newer dwp-hub)")
        if self.architecture not in ARCHITECTURES:
            raise bad(unknown_architecture_message(self.architecture))
        arch = ARCHITECTURES[self.architecture]
        if not isinstance(self.kernel_size, int) or self.kernel_size != arch.kernel_size:
            raise bad(f"kernel_size {self.kernel_size!r} does not match architecture {arch.name} ({arch.kernel_size})")
        if not isinstance(self.z_dim, int) or isinstance(self.z_dim, bool) or not 1 <= self.z_dim <= 256:
            raise bad(f"z_dim must be an integer in [1, 256], got {self.z_dim!r}")
        if not isinstance(self.domain, str) or not self.domain:
            raise bad("domain must be a non-empty string")
        if not isinstance(self.var_floor, (int, float)) or not (0 < self.var_floor < 1) or not math.isfinite(self.var_floor):
            raise bad(f"var_floor must be a number in (0, 1), got {self.var_floor!r}")

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict, the fields of config.json."""
        return asdict(self)

    def to_json(self) -> str:
        """The config as config.json's text."""
        return _json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> "PriorConfig":
        return _parse_config(data, source)[0]


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _parse_config(data: Any, source: str) -> tuple[PriorConfig, dict[str, Any] | None]:
    """(config, provenance of a version-1 config or None), refusing missing, unknown or invalid fields."""
    if not isinstance(data, dict):
        raise PriorFormatError(f"{source}: expected a JSON object")
    missing = [k for k in _REQUIRED_CONFIG_FIELDS if k not in data]
    if missing:
        raise PriorFormatError(f"{source}: missing field(s) {missing}")
    version = data["format_version"]
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise PriorFormatError(f"{source}: format_version {version!r} is not supported (this dwp-hub reads "
                               f"{', '.join(map(str, READABLE_VERSIONS))}; a newer version needs a newer dwp-hub)")
    fields = dict(data)
    provenance = fields.pop("provenance", {}) if version == 1 else None
    unknown = sorted(fields.keys() - set(_CONFIG_FIELDS))
    if unknown:
        raise PriorFormatError(f"{source}: unknown field(s) {unknown} for format_version {version} (a writer "
                               "that adds fields raises format_version; free-form records go in provenance.json)")
    if provenance is not None and not isinstance(provenance, dict):
        raise PriorFormatError(f"{source}: provenance must be a JSON object")
    fields["format_version"] = FORMAT_VERSION
    try:
        return PriorConfig(**fields), provenance
    except PriorFormatError as e:
        raise PriorFormatError(str(e).replace("config:", f"{source}:", 1)) from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PriorFormatError(f"{path}: missing (a prior folder needs {', '.join(REQUIRED_FILES)})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PriorFormatError(f"{path}: not valid JSON ({e})") from None


def read_config(folder: str | os.PathLike) -> tuple[PriorConfig, dict[str, Any]]:
    """The validated config of a prior folder and its provenance (from provenance.json, or a version-1 config)."""
    folder = Path(folder)
    config, provenance = _parse_config(read_json(folder / CONFIG_NAME), str(folder / CONFIG_NAME))
    path = folder / PROVENANCE_NAME
    if path.is_file():
        provenance = read_json(path)
        if not isinstance(provenance, dict):
            raise PriorFormatError(f"{path}: expected a JSON object")
    return config, provenance or {}


def expected_shapes(config: PriorConfig) -> dict[str, torch.Size]:
    """Name → shape of every tensor a prior of this config stores (its state_dict)."""
    arch = ARCHITECTURES[config.architecture]
    with torch.device("meta"):  # shapes only: no memory, no initialisation, the caller's RNG untouched
        shapes = {f"encoder.{k}": v.shape for k, v in arch.encoder(config.z_dim).state_dict().items()}
        shapes.update({f"decoder.{k}": v.shape for k, v in arch.decoder(config.z_dim).state_dict().items()})
    return shapes


def read_weights(folder: str | os.PathLike, config: PriorConfig) -> dict[str, torch.Tensor]:
    """model.safetensors of a folder, every tensor's name, shape, dtype and values checked against `config`."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise PriorFormatError(f"{path}: missing (a prior folder needs {', '.join(REQUIRED_FILES)})")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise PriorFormatError(f"{path}: not a readable safetensors file ({e})") from None
    expected = expected_shapes(config)
    missing, unexpected = expected.keys() - tensors.keys(), tensors.keys() - expected.keys()
    if missing or unexpected:
        raise PriorFormatError(
            f"{path}: tensors do not match architecture {config.architecture} (z_dim={config.z_dim}): "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    for name, shape in expected.items():
        t = tensors[name]
        if t.shape != shape:
            raise PriorFormatError(f"{path}: tensor {name} has shape {tuple(t.shape)}, "
                                   f"architecture {config.architecture} needs {tuple(shape)}")
        if not t.is_floating_point():
            raise PriorFormatError(f"{path}: tensor {name} has dtype {t.dtype}, expected floating point")
        if not torch.isfinite(t).all():
            raise PriorFormatError(f"{path}: tensor {name} contains NaN or inf")
    return tensors


def parse_kernel_sets(data: bytes, source: str, kernel_size: int | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a kernels file, checked: only "train"/"heldout", each finite float (n, k, k), n ≤ 4,096."""
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as e:
        raise PriorFormatError(f"{source}: not a readable safetensors file ({e})") from None
    expected = " and/or ".join(KERNEL_SETS)
    if not tensors:
        raise PriorFormatError(f"{source}: holds no tensors; expected {expected}")
    unknown = sorted(tensors.keys() - set(KERNEL_SETS))
    if unknown:
        raise PriorFormatError(f"{source}: unexpected tensor(s) {unknown}; expected {expected}")
    for name, t in tensors.items():
        k = kernel_size or (t.shape[-1] if t.dim() == 3 else 0)
        if t.dim() != 3 or tuple(t.shape[1:]) != (k, k) or t.shape[0] < 1:
            raise PriorFormatError(f"{source}: tensor {name} has shape {tuple(t.shape)}, expected (n, {k}, {k}) "
                                   "with n >= 1")
        if t.shape[0] > MAX_KERNEL_SAMPLES:
            raise PriorFormatError(f"{source}: tensor {name} holds {t.shape[0]} kernels, at most "
                                   f"{MAX_KERNEL_SAMPLES} are allowed")
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise PriorFormatError(f"{source}: tensor {name} must be floating point and finite")
    return {name: t.float() for name, t in tensors.items()}


def read_kernel_sets(path: str | os.PathLike, kernel_size: int | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a kernels file (a prior folder's kernels.safetensors or `--kernels FILE`), checked."""
    path = Path(path)
    if path.is_dir():
        path = path / KERNELS_NAME
    if not path.is_file():
        raise PriorFormatError(f"{path}: missing; this prior ships no source kernels")
    return parse_kernel_sets(path.read_bytes(), str(path), kernel_size)


def encode_kernel_sets(sets: Mapping[str, torch.Tensor], note: str) -> bytes:
    """kernels.safetensors bytes for (n, k, k) tensors "train" / "heldout" (each cut to 4,096 by the caller)."""
    return save({name: t.detach().float().contiguous() for name, t in sets.items()}, metadata={"note": note})


def card_metadata(config: PriorConfig) -> dict[str, Any]:
    """YAML front matter the Hub understands, derived from the config."""
    k = config.kernel_size
    return {
        "library_name": LIBRARY_NAME,
        "license": LICENSE,
        "tags": ["deep-weight-prior", f"kernel-{k}x{k}", f"domain-{config.domain}", f"arxiv:{PAPER_ARXIV}"],
    }


def default_card(config: PriorConfig) -> str:
    """The minimal model card of a prior saved without one of its own (published priors carry a full one)."""
    from huggingface_hub import ModelCard, ModelCardData

    k = config.kernel_size
    meta = card_metadata(config)
    data = ModelCardData(library_name=meta["library_name"], license=meta["license"], tags=meta["tags"])
    body = (
        f"# Deep weight prior, {k}x{k} kernels, domain `{config.domain}`\n\n"
        f"A kernel VAE (architecture `{config.architecture}`, z_dim={config.z_dim}) used as a prior over "
        f"{k}x{k} convolution kernels, after [The Deep Weight Prior](https://arxiv.org/abs/{PAPER_ARXIV}).\n\n"
        "```python\nfrom dwp_hub import DWPrior\nprior = DWPrior.from_pretrained(\"PATH_OR_NAME\")\n"
        "kernels = prior.sample(64)\n```\n\n"
        f"How it was built is recorded in `{PROVENANCE_NAME}`.\n"
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def card_problem(text: str) -> str | None:
    """Why `text` is not a publishable model card (no YAML block, unparsable, wrong library), or None."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    if not REGEX_YAML_BLOCK.search(text):
        return "has no YAML metadata block (--- ... --- at the top)"
    try:
        meta = ModelCard(text).data.to_dict()
    except Exception as e:  # yaml.YAMLError and ValueError from ModelCardData; any failure means "does not parse"
        return f"metadata does not parse ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    if meta.get("library_name") != LIBRARY_NAME:
        return f"metadata must say library_name: {LIBRARY_NAME} (found {meta.get('library_name')!r})"
    return None


@dataclass
class PriorFiles:
    """Everything of a prior folder besides the VAE's tensors, kept so that saving a loaded prior loses nothing.

    ``card`` is README.md's text (None: none yet; a minimal card is written), ``provenance`` the JSON
    object of provenance.json, ``kernels`` the bytes of kernels.safetensors (None: the prior has none).
    """

    config: PriorConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    card: str | None = None
    kernels: bytes | None = None

    def kernel_sets(self) -> dict[str, torch.Tensor]:
        if self.kernels is None:
            raise PriorFormatError("this prior ships no source kernels (kernels.safetensors)")
        return parse_kernel_sets(self.kernels, KERNELS_NAME, self.config.kernel_size)


def read_folder(folder: str | os.PathLike) -> tuple[PriorFiles, dict[str, torch.Tensor]]:
    """Read and validate every file of a prior folder; PriorFormatError names the first bad file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PriorFormatError(f"{folder}: not a folder (a prior folder holds {', '.join(REQUIRED_FILES)})")
    config, provenance = read_config(folder)
    tensors = read_weights(folder, config)
    card = folder / CARD_NAME
    try:
        card_text = card.read_text(encoding="utf-8") if card.is_file() else None
    except UnicodeDecodeError as e:
        raise PriorFormatError(f"{card}: not UTF-8 text ({e})") from None
    kernels = folder / KERNELS_NAME
    kernel_bytes = kernels.read_bytes() if kernels.is_file() else None
    if kernel_bytes is not None:
        parse_kernel_sets(kernel_bytes, str(kernels), config.kernel_size)
    return PriorFiles(config, provenance, card_text, kernel_bytes), tensors


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def foreign_files(folder: Path) -> list[str]:
    """Names in `folder` that are not prior files (hidden files included): files a prior save does not own."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name not in PRIOR_FILES)


def write_folder(target: str | os.PathLike, files: PriorFiles, tensors: Mapping[str, torch.Tensor],
                 overwrite: bool = False) -> Path:
    """Write a complete prior folder: weights, config, card, and provenance / kernels when there are any.

    A missing, empty or prior-only `target` is replaced atomically (built beside it, renamed into place).
    A `target` holding other files is refused with FileExistsError unless `overwrite`; then each prior file
    is replaced atomically in place, prior files this prior has not (a stale kernels.safetensors) are
    removed, and every other file stays as it was.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    others = foreign_files(target)
    if others and not overwrite:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise FileExistsError(f"{target} holds files that are not part of a prior ({shown}); refusing to write "
                              "there. Choose a new folder, or pass overwrite=True to write the prior's files "
                              "beside them (they are kept)")
    files.config.validate()
    contents: dict[str, bytes] = {
        WEIGHTS_NAME: save({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()},
                           metadata=WEIGHTS_METADATA),
        CONFIG_NAME: files.config.to_json().encode(),
        CARD_NAME: (files.card if files.card is not None else default_card(files.config)).encode(),
    }
    if files.provenance:
        contents[PROVENANCE_NAME] = _json(files.provenance).encode()
    if files.kernels is not None:
        contents[KERNELS_NAME] = files.kernels
    if not others:
        with staged_folder(target) as tmp:
            for name, data in contents.items():
                (tmp / name).write_bytes(data)
        return target
    for name in PRIOR_FILES:
        if name in contents:
            write_bytes_atomic(target / name, contents[name])
        else:
            (target / name).unlink(missing_ok=True)
    return target
