"""Where a prior name leads: a bundled copy, a local folder, or a Hub repository fetched at one commit.

A name is parsed by ``dwp_hub.names.PriorName``; ``locate`` then reads it as follows:

- ``hf-hub:ORG/NAME[@REV]``: the Hub, always (the prefix timm uses for the same purpose). Offline, a
  name without a revision that is not in the Hub cache but is bundled loads the bundled copy (its
  ``PriorSource.origin`` says "bundled").
- an existing folder: that folder.
- ``ORG/NAME`` or ``NAME`` of a prior bundled with dwp-hub (a bare name means ``dwp/NAME``): the bundled
  copy, checked against the SHA-256 of every file recorded in ``bundled/manifest.json``. No network access.
- ``ORG/NAME@REV``, or any name with ``revision=`` or ``force_download=True``: the Hub, at that revision.
- any other ``ORG/NAME``: the Hub.

Hub repositories are fetched with ``snapshot_download`` (prior files only) into the Hugging Face cache,
so every file comes from the one commit the revision resolved to. Before that, one request with a timeout
(``HF_HUB_ETAG_TIMEOUT``, 10 s by default) checks that the Hub answers; if it does not, the cache is used,
and the process stops asking that endpoint. ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_HOME`` are
honoured as by every Hugging Face library. ``fetch_snapshot`` is the one way the package and its training
code fetch a repository, so every fetch gets the same timeout and the same one-line errors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import NotCachedError, PriorFormatError, PriorNotFoundError
from .names import DEFAULT_ORG, HUB_PREFIX, PriorName, split_revision  # noqa: F401 - DEFAULT_ORG, HUB_PREFIX, split_revision re-exported
from .prior_folder import CONFIG_NAME, PRIOR_FILES, REQUIRED_FILES, WEIGHTS_NAME, read_config, sha256_file

BUNDLED_DIR = Path(__file__).parent / "bundled"
MANIFEST_NAME = "manifest.json"
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
        """JSON-ready record of where a prior came from (name, origin, repository, revision, SHA-256)."""
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


def _manifest() -> dict[str, dict[str, str]]:
    path = BUNDLED_DIR / MANIFEST_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def bundled_repo_id(name: str) -> str | None:
    """The repo id of the bundled prior answering to `name` (``ORG/NAME``, or a bare ``NAME`` of ``dwp/``)."""
    repo_id = PriorName(name, repo=name).repo_id
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
    parsed = PriorName.parse(name, revision)
    text = parsed.text
    if parsed.path is not None:
        if not parsed.path.is_dir():
            raise PriorNotFoundError(f"{text!r} is a file, not a prior folder (a folder holding "
                                     f"{', '.join(REQUIRED_FILES)})")
        weights = parsed.path / WEIGHTS_NAME
        return PriorSource(text, parsed.path, "local", sha256_file(weights) if weights.is_file() else "")
    bundled = bundled_repo_id(parsed.repo)
    if bundled is not None and not (parsed.hub_asked or parsed.revision is not None or force_download):
        return bundled_source(bundled, text)
    repo_id = bundled or parsed.repo
    if not _is_repo_id(repo_id):
        raise PriorNotFoundError(f"no prior named {text!r}: not a folder, not bundled, and not a Hub repo id "
                                 f"(ORG/NAME). Known priors: {_known()}")
    try:
        return download(repo_id, parsed.revision, name=text, cache_dir=cache_dir, force_download=force_download,
                        local_files_only=local_files_only, token=token)
    except NotCachedError:
        if bundled is None or parsed.revision is not None or force_download:
            raise
        return bundled_source(bundled, text)


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


def _offline_reason(local_files_only: bool, endpoint: str) -> str:
    """Why only the cache was used, and how to go online."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return f"offline mode: HF_HUB_OFFLINE is set; unset it to download from {endpoint}"
    if local_files_only:
        return f"local_files_only=True; drop it to download from {endpoint}"
    return f"the Hub at {endpoint} did not answer; check the network connection or HF_ENDPOINT"


def fetch_snapshot(repo_id: str, revision: str | None = None, *, allow_patterns: list[str],
                   name: str | None = None, what: str = "prior", cache_dir: str | os.PathLike | None = None,
                   force_download: bool = False, local_files_only: bool = False,
                   token: str | bool | None = None) -> Path:
    """The files of `repo_id` matching `allow_patterns`, all from one commit, in the Hugging Face cache.

    Fetched if needed (after the timed probe described in the module docstring), else found in the cache.
    Every failure is one PriorNotFoundError line naming `name` (default `repo_id`) as a `what` ("prior",
    "checkpoint"); a cache miss while offline is a NotCachedError that says how to go online.
    """
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
        return Path(snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, force_download=force_download and not offline,
            local_files_only=offline, token=token, allow_patterns=allow_patterns,
            library_name="dwp-hub", library_version=__version__, etag_timeout=constants.HF_HUB_ETAG_TIMEOUT))
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise PriorNotFoundError(f"no {what} named {name!r}: {type(e).__name__} for {repo_id} at {endpoint} "
                                 "(or it is not visible with this token)") from None
    except RevisionNotFoundError:
        raise PriorNotFoundError(f"no {what} named {name!r}: {repo_id} has no revision {revision!r} "
                                 f"at {endpoint}") from None
    except LocalEntryNotFoundError:
        known = f". Known priors: {_known()}" if what == "prior" else ""
        raise NotCachedError(f"cannot load {what} {name!r}: {repo_id}{'@' + revision if revision else ''} is not "
                             f"in the local Hub cache ({_offline_reason(local_files_only, endpoint)}){known}") from None
    except HfHubHTTPError as e:
        raise PriorNotFoundError(f"no {what} named {name!r}: the Hub at {endpoint} answered HTTP "
                                 f"{getattr(e.response, 'status_code', '?')} for {repo_id}") from None


def download(repo_id: str, revision: str | None = None, *, name: str | None = None,
             cache_dir: str | os.PathLike | None = None, force_download: bool = False,
             local_files_only: bool = False, token: str | bool | None = None) -> PriorSource:
    """Fetch a prior repository's files at one commit into the Hugging Face cache (or find them there)."""
    folder = fetch_snapshot(repo_id, revision, allow_patterns=list(PRIOR_FILES), name=name, cache_dir=cache_dir,
                            force_download=force_download, local_files_only=local_files_only, token=token)
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise PriorFormatError(f"Hub repo {repo_id!r} at {folder.name[:12]} has no {', '.join(missing)}: "
                               "it is not a dwp-hub prior")
    return PriorSource(name or repo_id, folder, "hub", sha256_file(folder / WEIGHTS_NAME), repo_id=repo_id,
                       revision=folder.name)


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
