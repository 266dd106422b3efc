"""Name resolution for priors: local folder → Hugging Face Hub (via its cache) → bundled defaults.

Bundled priors live in ``dwp_hub/bundled/<org>--<name>/`` and answer to ``org/name`` and, for the
``dwp`` organisation, to the bare ``name`` as well.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, scan_cache_dir
from huggingface_hub.errors import (
    CacheNotFound,
    EntryNotFoundError,
    HFValidationError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .config import CARD_NAME, CONFIG_NAME, KERNELS_NAME, WEIGHTS_NAME
from .errors import PriorFormatError, PriorNotFoundError

BUNDLED_DIR = Path(__file__).parent / "bundled"
DEFAULT_ORG = "dwp"
# A bundled name must not wait on an unreachable Hub: its reachability probe gets this long at most,
# and after one failed probe the process stops asking that endpoint.
BUNDLED_HUB_TIMEOUT_S = 1.0
_unreachable_endpoints: set[str] = set()


@dataclass(frozen=True)
class ResolvedPrior:
    """Where a prior name led: the folder on disk and which of the three sources it came from."""

    name: str
    path: Path
    source: str  # "local", "hub" or "bundled"
    revision: str | None = None


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


def bundled_folder(repo_id: str) -> Path | None:
    """The bundled folder answering to `repo_id` (or to the bare name of a ``dwp/`` prior), if any."""
    if "/" not in repo_id:
        repo_id = f"{DEFAULT_ORG}/{repo_id}"
    folder = BUNDLED_DIR / repo_id.replace("/", "--")
    return folder if (folder / CONFIG_NAME).is_file() else None


def _is_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return "/" in name


def download_prior(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                   local_files_only: bool = False, token: str | bool | None = None,
                   etag_timeout: float = constants.DEFAULT_ETAG_TIMEOUT) -> Path:
    """Fetch a prior's files from the Hub (or its cache) into the HF cache; return the snapshot folder.

    config.json is fetched first; its snapshot folder names the commit the revision resolved to, and
    the other files are fetched at that exact commit, so a concurrent push cannot mix two versions.
    Each request is a file download, bounded by `etag_timeout` (repo-level API calls have no timeout).
    """
    common = dict(cache_dir=cache_dir, local_files_only=local_files_only, token=token,
                  library_name="dwp-hub", etag_timeout=etag_timeout)
    try:
        config = Path(hf_hub_download(repo_id, CONFIG_NAME, revision=revision, **common))
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: "not cached", not "not on the Hub"
        raise
    except EntryNotFoundError:
        raise PriorFormatError(f"Hub repo {repo_id!r} has no {CONFIG_NAME}: it is not a dwp-hub prior") from None
    commit = config.parent.name
    for filename in (WEIGHTS_NAME, CARD_NAME):
        try:
            hf_hub_download(repo_id, filename, revision=commit, **common)
        except LocalEntryNotFoundError:
            raise
        except EntryNotFoundError:
            raise PriorFormatError(f"Hub repo {repo_id!r} at {commit[:12]} has no {filename}") from None
    try:
        hf_hub_download(repo_id, KERNELS_NAME, revision=commit, **common)
    except (EntryNotFoundError, LocalEntryNotFoundError):
        pass  # optional file
    return config.parent


def hub_reachable(repo_id: str, revision: str | None, token: str | bool | None, timeout: float) -> bool:
    """One HEAD request for config.json, without retries; False if the Hub cannot answer.

    huggingface_hub retries a failed metadata request with backoff (about 25 s in all) before it
    falls back to its cache; this probe lets an unreachable or failing Hub cost one short request,
    after which the endpoint is remembered as unreachable for the rest of the process.
    """
    url = hf_hub_url(repo_id, CONFIG_NAME, revision=revision)
    try:
        get_hf_file_metadata(url, token=token, timeout=timeout, retry_on_errors=False)
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", 500)
        if status < 500 and status != 429:
            return True  # the Hub answered (401/403/404...): the download reports the precise error
    except Exception:  # noqa: BLE001 - any transport failure (DNS, refused, timeout, TLS) means unreachable
        pass
    else:
        return True
    _unreachable_endpoints.add(constants.ENDPOINT)
    return False


def resolve_prior(name: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                  local_files_only: bool = False, token: str | bool | None = None) -> ResolvedPrior:
    """Find the folder for `name`; raise PriorNotFoundError saying where it looked if there is none."""
    local = Path(name).expanduser()
    if local.is_dir():
        return ResolvedPrior(name, local, "local")
    repo_id, rev = split_revision(name, revision)
    bundled = bundled_folder(repo_id)
    hub_reason = "not a Hub repo id (expected ORG/NAME)"
    if _is_repo_id(repo_id):
        endpoint = constants.ENDPOINT
        offline = local_files_only or constants.HF_HUB_OFFLINE or endpoint in _unreachable_endpoints
        timeout = BUNDLED_HUB_TIMEOUT_S if bundled is not None else constants.DEFAULT_ETAG_TIMEOUT
        if not offline and not hub_reachable(repo_id, rev, token, timeout):
            offline = True
        try:
            folder = download_prior(repo_id, rev, cache_dir=cache_dir, local_files_only=offline, token=token,
                                    etag_timeout=timeout)
            return ResolvedPrior(name, folder, "hub", folder.name)
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            hub_reason = f"{type(e).__name__} at {endpoint}"
        except LocalEntryNotFoundError:
            hub_reason = "not in the local Hub cache" + (
                " (offline mode)" if local_files_only or constants.HF_HUB_OFFLINE else f" and the Hub at {endpoint} is unreachable")
        except HfHubHTTPError as e:
            hub_reason = f"Hub at {endpoint} answered HTTP {getattr(e.response, 'status_code', '?')}"
    if bundled is not None and rev is None:
        return ResolvedPrior(name, bundled, "bundled")
    if bundled is not None:
        hub_reason += f"; the bundled copy has no revision {rev!r}"
    known = ", ".join(p.name for p in list_priors(cache_dir=cache_dir)) or "none"
    raise PriorNotFoundError(f"no prior named {name!r}: no such local folder; {hub_reason}; not bundled. "
                             f"Known priors: {known}")


def _read_config(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and {"kernel_size", "z_dim", "domain"} <= data.keys() else None


def list_priors(cache_dir: str | os.PathLike | None = None) -> list[PriorInfo]:
    """Bundled priors, then priors in the local Hugging Face cache (newest revision of each repo)."""
    found: list[PriorInfo] = []
    for folder in sorted(BUNDLED_DIR.glob("*--*")):
        cfg = _read_config(folder)
        if cfg:
            found.append(PriorInfo(folder.name.replace("--", "/", 1), cfg["kernel_size"], cfg["z_dim"],
                                   cfg["domain"], "bundled", folder))
    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return found
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        latest = max(repo.revisions, key=lambda r: r.last_modified)
        cfg = _read_config(latest.snapshot_path)
        if cfg:
            found.append(PriorInfo(repo.repo_id, cfg["kernel_size"], cfg["z_dim"], cfg["domain"], "cache",
                                   latest.snapshot_path))
    return found
