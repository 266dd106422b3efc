"""Where a prior name leads: a bundled copy, a local folder, or a Hub repository fetched at one commit.

The grammar of one name (``locate``), in the order it is read:

- ``hf-hub:ORG/NAME[@REV]``: the Hub, always (the prefix timm uses for the same purpose).
- an existing folder: that folder.
- ``ORG/NAME`` or ``NAME`` of a prior bundled with dwp-hub (a bare name means ``dwp/NAME``): the bundled
  copy, checked against the SHA-256 of every file recorded in ``bundled/manifest.json``. No network access.
- ``ORG/NAME@REV``, or any name with ``revision=`` or ``force_download=True``: the Hub, at that revision.
- any other ``ORG/NAME``: the Hub.

Hub repositories are fetched with ``snapshot_download`` (prior files only) into the Hugging Face cache,
so every file comes from the one commit the revision resolved to. Before that, one request with a timeout
(``HF_HUB_ETAG_TIMEOUT``, 10 s by default) checks that the Hub answers; if it does not, the cache is used,
and the process stops asking that endpoint. ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_HOME`` are
honoured as by every Hugging Face library.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import PriorFormatError, PriorNotFoundError
from .prior_folder import CONFIG_NAME, PRIOR_FILES, REQUIRED_FILES, WEIGHTS_NAME, read_config, sha256_file

BUNDLED_DIR = Path(__file__).parent / "bundled"
MANIFEST_NAME = "manifest.json"
DEFAULT_ORG = "dwp"
HUB_PREFIX = "hf-hub:"
_unreachable_endpoints: set[str] = set()


@dataclass(frozen=True)
class PriorSource:
    """Where a loaded prior came from, precisely enough to load the same bytes again."""

    name: str  # as the caller gave it
    path: Path  # the folder that was read
    origin: str  # "bundled", "local" or "hub"
    sha256: str  # of model.safetensors: the same digest the Hub shows for the file
    repo_id: str | None = None  # bundled and Hub priors
    revision: str | None = None  # Hub priors: the commit the name resolved to

    @property
    def pinned(self) -> str:
        """A name that loads exactly this prior again: ``ORG/NAME@COMMIT`` for the Hub, else name + digest."""
        if self.origin == "hub":
            return f"{self.repo_id}@{self.revision}"
        return f"{self.repo_id or self.name} (sha256:{self.sha256[:16]})"

    def to_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "origin": self.origin, "repo_id": self.repo_id, "revision": self.revision,
                "sha256": self.sha256}


@dataclass(frozen=True)
class PriorInfo:
    """One entry of list_priors()."""

    name: str
    kernel_size: int
    z_dim: int
    domain: str
    source: str  # "bundled" or "cache"
    path: Path


def split_revision(name: str, revision: str | None) -> tuple[str, str | None]:
    """'org/name@rev' → ('org/name', 'rev'); a revision given both ways must agree."""
    if "@" in name:
        name, _, rev = name.rpartition("@")
        if not name or not rev:
            raise ValueError(f"malformed prior name {name!r}: expected ORG/NAME@REVISION")
        if revision is not None and revision != rev:
            raise ValueError(f"two revisions given for {name!r}: {rev!r} in the name and {revision!r} as argument")
        return name, rev
    return name, revision


def _manifest() -> dict[str, dict[str, str]]:
    path = BUNDLED_DIR / MANIFEST_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def bundled_repo_id(name: str) -> str | None:
    """The repo id of the bundled prior answering to `name` (``ORG/NAME``, or a bare ``NAME`` of ``dwp/``)."""
    repo_id = name if "/" in name else f"{DEFAULT_ORG}/{name}"
    return repo_id if repo_id in _manifest() else None


def bundled_with_weights(sha256: str) -> str | None:
    """The repo id of the bundled prior whose model.safetensors has this SHA-256, if any: tells a record made
    from a local folder that it holds the same weights as a bundled prior."""
    return next((repo_id for repo_id, files in _manifest().items() if files.get(WEIGHTS_NAME) == sha256), None)


def bundled_source(repo_id: str, name: str) -> PriorSource:
    """The bundled copy of `repo_id`, after checking each of its files against the manifest's SHA-256."""
    folder = BUNDLED_DIR / repo_id.replace("/", "--")
    expected = _manifest()[repo_id]
    for filename, digest in expected.items():
        path = folder / filename
        if not path.is_file() or sha256_file(path) != digest:
            raise PriorFormatError(f"{path}: missing or altered (its SHA-256 differs from {BUNDLED_DIR / MANIFEST_NAME}); "
                                   "reinstall dwp-hub")
    return PriorSource(name, folder, "bundled", expected[WEIGHTS_NAME], repo_id=repo_id)


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return name.count("/") == 1


def locate(name: str | os.PathLike, revision: str | None = None, *, cache_dir: str | os.PathLike | None = None,
           force_download: bool = False, local_files_only: bool = False,
           token: str | bool | None = None) -> PriorSource:
    """The folder a prior name stands for (see the module docstring); PriorNotFoundError says where it looked."""
    text = os.fspath(name)
    hub_asked = text.startswith(HUB_PREFIX)
    if hub_asked:
        text = text[len(HUB_PREFIX):]
    elif Path(text).expanduser().is_dir():
        if revision is not None:
            raise ValueError(f"{text!r} is a local folder; a revision applies to Hub names only")
        folder = Path(text).expanduser()
        weights = folder / WEIGHTS_NAME
        return PriorSource(text, folder, "local", sha256_file(weights) if weights.is_file() else "")
    repo_id, rev = split_revision(text, revision)
    bundled = bundled_repo_id(repo_id)
    if bundled is not None and not (hub_asked or rev is not None or force_download):
        return bundled_source(bundled, text)
    if "/" not in repo_id and bundled is not None:
        repo_id = bundled
    if not _is_repo_id(repo_id):
        raise PriorNotFoundError(f"no prior named {text!r}: not a folder, not bundled, and not a Hub repo id "
                                 f"(ORG/NAME). Known priors: {_known()}")
    return download(repo_id, rev, name=text, cache_dir=cache_dir, force_download=force_download,
                    local_files_only=local_files_only, token=token)


def _known() -> str:
    return ", ".join(p.name for p in list_priors()) or "none"


def _hub_answers(repo_id: str, revision: str | None, token: str | bool | None) -> None:
    """One repo_info request with a timeout; raises what the Hub answered, returns quietly if it did not answer.

    snapshot_download's own first request has no timeout, so a Hub that accepts connections but never
    answers would hang it; after this probe fails, the endpoint is only served from the cache.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().repo_info(repo_id, revision=revision, token=token, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", 500)
        if status < 500 and status != 429:
            raise
        _unreachable_endpoints.add(constants.ENDPOINT)
    except Exception:  # noqa: BLE001 - any transport failure (refused, timeout, TLS) means "does not answer"
        _unreachable_endpoints.add(constants.ENDPOINT)


def download(repo_id: str, revision: str | None = None, *, name: str | None = None,
             cache_dir: str | os.PathLike | None = None, force_download: bool = False,
             local_files_only: bool = False, token: str | bool | None = None) -> PriorSource:
    """Fetch a prior repository's files at one commit into the Hugging Face cache (or find them there)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from . import __version__

    name = name or repo_id
    endpoint = constants.ENDPOINT
    offline = local_files_only or constants.HF_HUB_OFFLINE or endpoint in _unreachable_endpoints
    try:
        if not offline:
            _hub_answers(repo_id, revision, token)
            offline = endpoint in _unreachable_endpoints
        folder = Path(snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, force_download=force_download and not offline,
            local_files_only=offline, token=token, allow_patterns=list(PRIOR_FILES),
            library_name="dwp-hub", library_version=__version__, etag_timeout=constants.HF_HUB_ETAG_TIMEOUT))
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise PriorNotFoundError(f"no prior named {name!r}: {type(e).__name__} for {repo_id} at {endpoint} "
                                 "(or it is not visible with this token)") from None
    except RevisionNotFoundError:
        raise PriorNotFoundError(f"no prior named {name!r}: {repo_id} has no revision {revision!r} at {endpoint}") from None
    except LocalEntryNotFoundError:
        why = ("offline mode" if local_files_only or constants.HF_HUB_OFFLINE
               else f"the Hub at {endpoint} is unreachable")
        raise PriorNotFoundError(f"no prior named {name!r}: {repo_id}{'@' + revision if revision else ''} is not in "
                                 f"the local Hub cache ({why}). Known priors: {_known()}") from None
    except HfHubHTTPError as e:
        raise PriorNotFoundError(f"no prior named {name!r}: the Hub at {endpoint} answered HTTP "
                                 f"{getattr(e.response, 'status_code', '?')} for {repo_id}") from None
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise PriorFormatError(f"Hub repo {repo_id!r} at {folder.name[:12]} has no {', '.join(missing)}: "
                               "it is not a dwp-hub prior")
    return PriorSource(name, folder, "hub", sha256_file(folder / WEIGHTS_NAME), repo_id=repo_id, revision=folder.name)


def list_priors(cache_dir: str | os.PathLike | None = None) -> list[PriorInfo]:
    """Bundled priors, then priors in the local Hugging Face cache (newest cached revision of each repo)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    found = [_info(repo_id, BUNDLED_DIR / repo_id.replace("/", "--"), "bundled") for repo_id in sorted(_manifest())]
    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return [f for f in found if f]
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type == "model" and repo.revisions:
            latest = max(repo.revisions, key=lambda r: r.last_modified)
            found.append(_info(repo.repo_id, latest.snapshot_path, "cache"))
    return [f for f in found if f]


def _info(name: str, folder: Path, source: str) -> PriorInfo | None:
    if not (folder / CONFIG_NAME).is_file():
        return None
    try:
        config, _ = read_config(folder)
    except PriorFormatError:
        return None
    return PriorInfo(name, config.kernel_size, config.z_dim, config.domain, source, folder)
