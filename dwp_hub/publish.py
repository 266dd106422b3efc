"""Publishing prior folders to the Hugging Face Hub: validate completely, then one commit.

`push_folder` refuses a folder that would not load back (read strictly by ``dwp_hub.prior_folder``, the model card's
metadata, the optional kernel samples) before it opens a single connection. It then creates the
repository if needed and uploads every file of the folder in **one** commit: a push that fails or is
interrupted half-way leaves the remote revision exactly as it was, since the Hub only moves a branch when
a commit is complete. The endpoint, token and cache come from huggingface_hub's usual settings
(``HF_ENDPOINT``, ``HF_TOKEN`` or ``hf auth login``).
"""

from __future__ import annotations

import importlib
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
from huggingface_hub.errors import (
    HFValidationError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .errors import PriorFormatError, PublishError
from .prior_folder import (
    CARD_NAME,
    LIBRARY_NAME,
    PICKLE_SUFFIXES,
    PRIOR_FILES,
    REQUIRED_FILES,
    PriorFiles,
    card_problem,
    read_folder,
)


@dataclass(frozen=True)
class PushResult:
    """What a push did: where the prior now lives and under which commit."""

    repo_id: str
    repo_url: str
    revision: str
    commit: str
    commit_url: str
    pr_url: str | None
    changed: bool  # False when the remote revision already held exactly these files
    files: tuple[str, ...]


def validate_folder(folder: str | os.PathLike) -> PriorFiles:
    """Check that `folder` is a complete, self-consistent, publishable prior folder; return what it holds.

    Reads it strictly (config validated, every tensor's name, shape and values checked, provenance and
    kernel samples parsed), requires a model card whose metadata parses with ``library_name: dwp-hub``,
    and refuses pickle-format files. Raises PriorFormatError / PublishError naming the file. No network.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder}: not a folder (expected a prior folder with {', '.join(REQUIRED_FILES)})")
    files, _ = read_folder(folder)
    if files.card is None:
        raise PriorFormatError(f"{folder / CARD_NAME}: missing: a published prior needs a model card "
                               "(render one with training/card.py)")
    problem = card_problem(files.card)
    if problem:
        raise PriorFormatError(f"{folder / CARD_NAME}: {problem}")
    pickles = [p.name for p in _folder_files(folder).values() if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise PublishError(f"{folder}: refusing to publish pickle-format file(s) {sorted(pickles)}; "
                           "priors are safetensors only")
    return files


def _folder_files(folder: Path) -> dict[str, Path]:
    """Every regular, non-hidden file under `folder`, keyed by its path in the repository."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            files[rel.as_posix()] = path
    return files


def _http_library_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(all, connect-only) error classes of the HTTP library huggingface_hub runs on.

    huggingface_hub >= 1 uses httpx (2.x: its fork httpx2), whose errors are not OSErrors; older
    versions use requests, whose errors are OSErrors and whose failed connections are ConnectionErrors.
    """
    every, connect = [], [ConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
            every.append(module.HTTPError)
            connect.append(module.ConnectError)
        except (ImportError, AttributeError):
            continue
    return tuple(every), tuple(connect)


def _http_message(e: HfHubHTTPError, repo_id: str, revision: str, endpoint: str, explained: str | None = None) -> str:
    """One line for an HTTP error; `explained` is the client's own account of it, when it gave one."""
    status = getattr(e.response, "status_code", None)
    server = (e.server_message or "").strip().splitlines()
    detail = f" ({server[0]})" if server and server[0] else ""
    if explained:
        return f"the Hub at {endpoint} refused the request (HTTP {status}): {explained}"
    if isinstance(e, RevisionNotFoundError):
        return f"revision {revision!r} of {repo_id} does not exist at {endpoint} (HTTP {status}){detail}"
    if isinstance(e, RepositoryNotFoundError):
        return (f"repository {repo_id} not found at {endpoint}, or not visible with this token (HTTP {status}); "
                "check the repo id and the token")
    if status == 401:
        return (f"the Hub at {endpoint} rejected the credentials (HTTP 401){detail}; "
                "pass --token, set HF_TOKEN or run `hf auth login`")
    if status == 403:
        return f"no write access to {repo_id} at {endpoint} (HTTP 403){detail}; use a token with write access to it"
    if status is not None and status >= 500:
        return (f"the Hub at {endpoint} failed with HTTP {status}{detail}; commits are atomic, so the remote "
                "revision is unchanged or fully updated: pushing again is safe")
    return f"the Hub at {endpoint} answered HTTP {status}{detail} for {repo_id}"


class _DropEmptyCommitNotice(logging.Filter):
    """Drops huggingface_hub's warning that a commit changed nothing: PushResult.changed reports that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No files have been modified")


@contextmanager
def _no_empty_commit_notice() -> Iterator[None]:
    """While open, the loggers of huggingface_hub's commit code do not print the empty-commit warning."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub.hf_api", "huggingface_hub._upload_pipeline")]
    notice = _DropEmptyCommitNotice()
    for logger in loggers:
        logger.addFilter(notice)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(notice)


def _in_chain(e: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of `types` among `e` and its causes (client errors wrap transport errors)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, types):
            return seen
        seen = seen.__cause__
    return None


def push_folder(folder: str | os.PathLike, repo_id: str, *, revision: str | None = None,
                private: bool | None = None, commit_message: str | None = None, create_pr: bool = False,
                token: str | bool | None = None) -> PushResult:
    """Validate `folder`, then publish it to the Hub repo `repo_id` in a single commit.

    The repo is created if needed (`private` only applies then); a missing `revision` branch is created
    from the default branch; with `create_pr` the commit opens a pull request against `revision`
    instead. Files of the prior format present remotely but absent locally (e.g. an old
    ``kernels.safetensors``) are deleted in the same commit, so the revision never mixes two builds.
    Raises PriorFormatError / PublishError, with one message each, on any failure.
    """
    folder = Path(folder)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"invalid repo id {repo_id!r}: {str(e).splitlines()[0]}") from None
    if "/" not in repo_id:
        raise PublishError(f"invalid repo id {repo_id!r}: expected ORG/NAME")
    cfg = validate_folder(folder).config
    files = _folder_files(folder)
    message = commit_message or (f"Upload {cfg.kernel_size}x{cfg.kernel_size} deep weight prior "
                                 f"({cfg.domain}) with dwp-hub")
    from . import __version__

    api = HfApi(library_name=LIBRARY_NAME, library_version=__version__)
    endpoint = api.endpoint
    target = revision or constants.DEFAULT_REVISION
    try:
        repo_url = api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        if revision is not None and not create_pr:
            try:
                api.model_info(repo_id, revision=revision, token=token)
            except RevisionNotFoundError:
                api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
        remote = api.model_info(repo_id, revision=target, token=token)
        remote_files = {s.rfilename for s in remote.siblings or []}
        operations: list = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                            for name, path in files.items()]
        operations += [CommitOperationDelete(path_in_repo=name) for name in PRIOR_FILES
                       if name in remote_files and name not in files]
        with _no_empty_commit_notice():
            info = api.create_commit(repo_id, operations, commit_message=message, revision=target,
                                     create_pr=create_pr, token=token)
    except (OSError, RuntimeError, ValueError, *_http_library_errors()[0]) as e:
        http = _in_chain(e, (HfHubHTTPError,))
        if http is not None:
            explained = " ".join(str(e).split())[:300] if isinstance(e, ValueError) else None  # e.g. card metadata
            message = _http_message(http, repo_id, target, endpoint, explained)
            raise PublishError(f"push to {repo_id} failed: {message}") from None
        every, connect = _http_library_errors()
        cause = _in_chain(e, every) or e
        reason = f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
        if _in_chain(e, connect) is not None:
            raise PublishError(f"push to {repo_id} failed: could not reach the Hub at {endpoint} ({reason}); "
                               "nothing was committed") from None
        raise PublishError(f"push to {repo_id} failed: the exchange with the Hub at {endpoint} broke off "
                           f"({reason}); commits are atomic, so the remote revision is unchanged or fully "
                           "updated: pushing again is safe") from None
    return PushResult(repo_id=repo_id, repo_url=str(repo_url), revision=info.pr_revision or target,
                      commit=info.oid, commit_url=info.commit_url, pr_url=info.pr_url,
                      changed=info.oid != remote.sha, files=tuple(files))

