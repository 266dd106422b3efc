"""A localhost stand-in for the Hugging Face Hub, speaking its HTTP protocol to the real huggingface_hub client.

Tests only. The Hub itself is unreachable from the machines this project is built on, so the publish/fetch
round trip runs against this server instead. It implements the part of the Hub API that
``create_repo``, ``create_branch``, ``model_info``/``repo_info``, ``create_commit``/``upload_folder``
(regular files and git-LFS uploads, not Xet: clients must run with ``HF_HUB_DISABLE_XET=1``),
``hf_hub_download`` and ``snapshot_download`` use, the way the Hub answers:

* repositories are git-like: every commit has a sha1 id over its tree, parent, message and time; branches
  (``main`` and others) and pull-request refs (``refs/pr/N``) point at commits; a revision is resolved as a
  branch, a PR ref or a full commit id. A new repository starts with a ``.gitattributes`` commit, whose
  LFS patterns (with size and binary content) decide each file's upload mode, as on the Hub;
* a commit is applied all at once under a lock, and only moves its ref when every operation is valid
  (LFS objects uploaded and verified, deleted files present): a push that dies half-way changes nothing;
* ``/resolve/`` answers small files of public repos with a relative 307 to a commit-pinned
  ``/api/resolve-cache/`` URL (private repos and empty files directly), with ``ETag`` = git blob id and
  ``X-Repo-Commit``; and LFS files with a 302 to a second "CDN" server on another origin, carrying
  ``X-Linked-Size`` / ``X-Linked-ETag`` (the sha256). That
  server serves and accepts uploads only on signed, expiring URLs and, like S3, refuses requests that also
  carry an ``Authorization`` header, so the client must stop following redirects there and drop its token;
* errors carry the ``X-Error-Code`` / ``X-Error-Message`` headers the client maps to its exceptions
  (``RepoNotFound`` — 401 without a token, 404 with one, as the Hub hides private repos —,
  ``RevisionNotFound``, ``EntryNotFound``), and 401 ``Invalid credentials in Authorization header`` for
  unknown tokens.

Every request is logged as (method, route, status); a request to a route the server does not know is
recorded in ``unknown_routes`` and answered 404, so a client that changes protocol makes tests fail. Tests
can inject one failing answer per route (``fail``) and hold LFS uploads mid-body (``hold_uploads``).

Not implemented (the client paths used here do not need them): Xet storage, multipart LFS uploads, tags,
pagination of tree listings (the Hub pages at 1,000 entries), ``.gitignore`` matching, gated repos.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

# The Hub's default .gitattributes for a new model repo marks these patterns as LFS (abridged to the
# patterns that matter for model weights and archives).
LFS_PATTERNS = ["*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gz", "*.h5", "*.joblib", "*.model",
                "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl",
                "*.pt", "*.pth", "*.safetensors", "*.tar", "*.tflite", "*.tgz", "*.xz", "*.zip", "*.zst"]
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # larger files go to LFS whatever their name
KNOWN_LICENSES = {"apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "gpl-3.0",
                  "openrail", "other"}
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
URL_TTL_S = 600


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob: sha1 over 'blob <size>\\0' + content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Blob:
    """One file of a tree: small files hold their bytes, LFS files a pointer to the object store."""

    size: int
    content: bytes | None = None  # regular file
    lfs_sha256: str | None = None  # LFS file

    @property
    def oid(self) -> str:
        if self.lfs_sha256 is None:
            return git_blob_id(self.content)
        return git_blob_id(lfs_pointer(self.lfs_sha256, self.size))


@dataclass
class Commit:
    oid: str
    parent: str | None
    tree: dict[str, Blob]
    title: str
    description: str
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, str] = field(default_factory=dict)  # refs/pr/N -> commit
    lfs: dict[str, bytes] = field(default_factory=dict)  # verified LFS objects, by sha256
    uploaded: dict[str, bytes] = field(default_factory=dict)  # received but not yet verified

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> str | None:
        """Commit id of a branch, ``refs/pr/N``, ``refs/heads/<branch>`` or full commit id."""
        if revision in self.branches:
            return self.branches[revision]
        if revision.startswith("refs/heads/") and revision[len("refs/heads/"):] in self.branches:
            return self.branches[revision[len("refs/heads/"):]]
        m = re.fullmatch(r"refs/pr/(\d+)", revision)
        if m and int(m.group(1)) in self.pulls:
            return self.pulls[int(m.group(1))]
        return revision if COMMIT_RE.match(revision) and revision in self.commits else None


class HubError(Exception):
    """An error answer: status, X-Error-Code, message; with the commit header where the Hub sends it."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


@dataclass
class Fault:
    """An injected answer for the next `times` requests matching `method` and route."""

    status: int
    message: str
    times: int = 1


class HubState:
    """Users, repositories and the LFS object stores of the fake Hub, plus the request log."""

    def __init__(self, users: dict[str, tuple[str, list[str]]]) -> None:
        self.users = users  # token -> (username, organisations)
        self.repos: dict[str, Repo] = {}
        self.lock = threading.RLock()
        self.log: list[tuple[str, str, int, str]] = []  # (method, route template, status, raw path)
        self.unknown_routes: list[tuple[str, str]] = []
        self.faults: dict[tuple[str, str], Fault] = {}
        self.secret = hashlib.sha256(str(time.time_ns()).encode()).digest()
        self.hold: threading.Event | None = None  # set: let held uploads go on
        self.upload_started = threading.Event()
        self.aborted_uploads = 0
        self.finished_uploads = 0  # complete bodies received by the CDN
        self.uploads_in_progress = 0
        self.server_errors: list[str] = []  # exceptions raised inside handlers
        self._clock = 0

    # --- auth ---------------------------------------------------------------------------------------
    def user_for(self, authorization: str | None) -> tuple[str, list[str]] | None:
        """The (user, orgs) of a Bearer token; raise 401 for a token the Hub does not know."""
        if authorization is None:
            return None
        token = authorization[len("Bearer "):] if authorization.startswith("Bearer ") else ""
        if token not in self.users:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.users[token]

    @staticmethod
    def can_write(user: tuple[str, list[str]] | None, namespace: str) -> bool:
        return user is not None and (namespace == user[0] or namespace in user[1])

    def repo_for_read(self, repo_id: str, user) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self.can_write(user, repo.namespace)):
            # The Hub does not reveal private repos: 401 without a token, 404 with one.
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def repo_for_write(self, repo_id: str, user) -> Repo:
        repo = self.repo_for_read(repo_id, user)
        if not self.can_write(user, repo.namespace):
            raise HubError(403, f"You don't have write access to {repo_id}")
        return repo

    @staticmethod
    def commit_of(repo: Repo, revision: str) -> str:
        oid = repo.resolve(revision)
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return oid

    # --- git-like state -----------------------------------------------------------------------------
    def new_commit(self, repo: Repo, parent: str | None, tree: dict[str, Blob], title: str, description: str) -> Commit:
        self._clock += 1
        listing = "".join(f"{path}\0{blob.oid}\n" for path, blob in sorted(tree.items()))
        date = now_iso()
        oid = hashlib.sha1(f"tree {hashlib.sha1(listing.encode()).hexdigest()}\nparent {parent}\n"
                           f"date {date} {self._clock}\n\n{title}\n\n{description}".encode()).hexdigest()
        commit = Commit(oid, parent, dict(tree), title, description, date)
        repo.commits[oid] = commit
        return commit

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_id, private, now_iso())
        first = self.new_commit(repo, None, {".gitattributes": Blob(len(GITATTRIBUTES), GITATTRIBUTES)},
                                "initial commit", "")
        repo.branches["main"] = first.oid
        self.repos[repo_id] = repo
        return repo

    def is_lfs(self, repo: Repo, commit: str, path: str, size: int, sample: bytes) -> bool:
        attrs = repo.commits[commit].tree.get(".gitattributes")
        patterns = []
        if attrs is not None and attrs.content is not None:
            patterns = [line.split()[0] for line in attrs.content.decode().splitlines()
                        if "filter=lfs" in line.split()[1:]]
        name = path.rsplit("/", 1)[-1]
        return (size >= LFS_SIZE_THRESHOLD or b"\0" in sample
                or any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns))

    # --- signed CDN urls ----------------------------------------------------------------------------
    def sign(self, action: str, repo_id: str, sha256: str, size: int) -> str:
        expires = int(time.time()) + URL_TTL_S
        msg = f"{action}:{repo_id}:{sha256}:{size}:{expires}".encode()
        sig = hmac.new(self.secret, msg, hashlib.sha256).hexdigest()
        return f"/{action}/{quote(repo_id, safe='')}/{sha256}?size={size}&expires={expires}&sig={sig}"

    def check_signature(self, action: str, repo_id: str, sha256: str, query: dict) -> int:
        try:
            size, expires, sig = int(query["size"][0]), int(query["expires"][0]), query["sig"][0]
        except (KeyError, ValueError, IndexError):
            raise HubError(403, "AccessDenied: missing signature") from None
        msg = f"{action}:{repo_id}:{sha256}:{size}:{expires}".encode()
        if not hmac.compare_digest(sig, hmac.new(self.secret, msg, hashlib.sha256).hexdigest()):
            raise HubError(403, "SignatureDoesNotMatch")
        if expires < time.time():
            raise HubError(403, "AccessDenied: Request has expired")
        return size

    # --- test controls ------------------------------------------------------------------------------
    def fail(self, method: str, route: str, status: int, message: str = "Internal Error", times: int = 1) -> None:
        """Answer the next `times` requests for (method, route template) with `status`."""
        self.faults[(method, route)] = Fault(status, message, times)

    def hold_uploads(self) -> threading.Event:
        """Make LFS uploads pause after their first KiB until the returned event is set.

        Whatever the client had already pushed into the socket is still read after the pause; the rest
        of the body is lost if the client died meanwhile (counted in ``aborted_uploads``)."""
        release = threading.Event()
        self.hold = release
        self.upload_started.clear()
        return release

    def seed(self, repo_id: str, files: dict[str, bytes], title: str = "seed") -> str:
        """Commit `files` to main of `repo_id` (created if needed) from inside the server; return the commit."""
        with self.lock:
            repo = self.repos.get(repo_id) or self.create_repo(repo_id, private=False)
            parent = repo.branches["main"]
            tree = dict(repo.commits[parent].tree)
            for path, data in files.items():
                if self.is_lfs(repo, parent, path, len(data), data[:512]):
                    sha = hashlib.sha256(data).hexdigest()
                    repo.lfs[sha] = data
                    tree[path] = Blob(len(data), lfs_sha256=sha)
                else:
                    tree[path] = Blob(len(data), content=data)
            commit = self.new_commit(repo, parent, tree, title, "")
            repo.branches["main"] = commit.oid
            return commit.oid

    def head(self, repo_id: str, branch: str = "main") -> str:
        with self.lock:
            return self.repos[repo_id].branches[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Contents of every file at `revision`, LFS objects resolved."""
        with self.lock:
            repo = self.repos[repo_id]
            tree = repo.commits[self.commit_of(repo, revision)].tree
            return {p: b.content if b.lfs_sha256 is None else repo.lfs[b.lfs_sha256] for p, b in tree.items()}

    def routes_used(self) -> set[tuple[str, str]]:
        with self.lock:
            return {(m, r) for m, r, _, _ in self.log}


def _card_data(readme: bytes | None) -> dict:
    if readme is None:
        return {}
    m = re.match(r"^\s*---\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", readme.decode("utf-8", "replace"), re.S)
    if not m:
        return {}
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _yaml_errors(content: str) -> tuple[list[str], list[str]]:
    """The Hub's README metadata check, for what this server understands: (errors, warnings)."""
    m = re.match(r"^\s*---\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", content, re.S)
    if not m:
        return [], ["empty or missing yaml metadata in repo card"]
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError as e:
        return [f"Error parsing YAML: {e}"], []
    if data is None:
        return [], ["empty or missing yaml metadata in repo card"]
    if not isinstance(data, dict):
        return ['"value" must be of type object'], []
    errors = []
    if "license" in data and data["license"] not in KNOWN_LICENSES:
        errors.append(f'"license" must be one of [{", ".join(sorted(KNOWN_LICENSES))}]')
    for key in ("tags", "datasets"):
        value = data.get(key)
        if value is not None and not (isinstance(value, str) or
                                      (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            errors.append(f'"{key}" must be a string or an array of strings')
    index = data.get("model-index")
    if index is not None:
        ok = isinstance(index, list) and all(
            isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("results"), list)
            and all(isinstance(r, dict) and isinstance(r.get("task"), dict) and isinstance(r["task"].get("type"), str)
                    and isinstance(r.get("dataset"), dict) and isinstance(r["dataset"].get("type"), str)
                    and isinstance(r["dataset"].get("name"), str) and isinstance(r.get("metrics"), list)
                    and all(isinstance(x, dict) and isinstance(x.get("type"), str) and "value" in x for x in r["metrics"])
                    for r in entry["results"])
            for entry in index)
        if not ok:
            errors.append('"model-index" does not match the model-index schema')
    return errors, []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that dies mid-request must not hold a server thread forever
    server: "_Server"

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    # --- plumbing ----------------------------------------------------------------------------------
    def _body(self) -> bytes:
        """The request body, read once (up front for every route but streamed uploads, so that an early
        error answer never leaves unread bytes on a keep-alive connection)."""
        if not self._consumed:
            length = int(self.headers.get("Content-Length") or 0)
            self._raw = self.rfile.read(length) if length else b""
            self._consumed = True
        return self._raw

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        for key, value in {"Content-Type": content_type, **(headers or {})}.items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        with self.server.state.lock:
            self.server.state.log.append((self.command, self.route, status, urlsplit(self.path).path))

    def _json(self, status: int, data, headers: dict[str, str] | None = None, content_type: str | None = None) -> None:
        kwargs = {"content_type": content_type} if content_type else {}
        self._send(status, json.dumps(data).encode(), headers, **kwargs)

    def _error(self, e: HubError) -> None:
        if not self._consumed:
            self.close_connection = True
        headers = {"X-Error-Message": e.message}
        if e.code:
            headers["X-Error-Code"] = e.code
        if e.commit:
            headers["X-Repo-Commit"] = e.commit
        self._json(e.status, {"error": e.message}, headers)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        # Split before unquoting: revisions arrive percent-encoded ("refs%2Fpr%2F1").
        self.parts = [unquote(p) for p in url.path.split("/")[1:]]
        self.route, handler = self.server.route(self.command, self.parts)
        self._consumed = False
        if not self.route.startswith("cdn PUT"):
            self._body()
        state = self.server.state
        if handler is None:
            with state.lock:
                state.unknown_routes.append((self.command, url.path))
            self._json(404, {"error": "Sorry, we can't find the page you are looking for."})
            return
        with state.lock:
            fault = state.faults.get((self.command, self.route))
            inject = fault is not None and fault.times > 0
            if inject:
                fault.times -= 1
        if inject:
            self.close_connection = not self._consumed
            self._json(fault.status, {"error": fault.message}, {"X-Error-Message": fault.message})
            return
        try:
            handler(self)
        except HubError as e:
            self._error(e)

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    # --- helpers shared by handlers -----------------------------------------------------------------
    def user(self):
        return self.server.state.user_for(self.headers.get("Authorization"))

    def json_body(self) -> dict:
        try:
            data = json.loads(self._body() or b"null")
        except ValueError:
            raise HubError(400, "Invalid JSON body") from None
        if not isinstance(data, dict):
            raise HubError(400, "Expected a JSON object")
        return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: HubState, routes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.routes = routes
        self.cdn_url = ""
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def route(self, method: str, parts: list[str]):
        return self.routes(method, parts)

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-answer is expected; anything else is a server bug, kept for the tests."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            with self.state.lock:
                self.state.server_errors.append(f"{type(error).__name__}: {error}")


# --- the Hub's routes -----------------------------------------------------------------------------------
def _hub_routes(method: str, parts: list[str]):
    """(route template, handler) for a request path split into unquoted parts."""
    n = len(parts)
    if parts[:2] == ["api", "repos"] and n == 3 and parts[2] == "create" and method == "POST":
        return "/api/repos/create", _create_repo
    if parts[:2] == ["api", "validate-yaml"] and n == 2 and method == "POST":
        return "/api/validate-yaml", _validate_yaml
    if parts[:2] == ["api", "agent-harnesses"] and n == 2 and method == "GET":
        return "/api/agent-harnesses", _agent_harnesses
    if n >= 4 and parts[:2] == ["api", "models"]:
        repo_id, rest = "/".join(parts[2:4]), parts[4:]
        if not rest and method == "GET":
            return "/api/models/{repo}", lambda h: _model_info(h, repo_id, None)
        if len(rest) == 2 and rest[0] == "revision" and method == "GET":
            return "/api/models/{repo}/revision/{rev}", lambda h: _model_info(h, repo_id, rest[1])
        if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
            return "/api/models/{repo}/tree/{rev}", lambda h: _tree(h, repo_id, rest[1], "/".join(rest[2:]))
        if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
            return "/api/models/{repo}/preupload/{rev}", lambda h: _preupload(h, repo_id, rest[1])
        if len(rest) == 2 and rest[0] == "commit" and method == "POST":
            return "/api/models/{repo}/commit/{rev}", lambda h: _commit(h, repo_id, rest[1])
        if len(rest) == 2 and rest[0] == "branch" and method == "POST":
            return "/api/models/{repo}/branch/{branch}", lambda h: _create_branch(h, repo_id, rest[1])
    if n == 6 and parts[1].endswith(".git") and parts[2:5] == ["info", "lfs", "objects"] and method == "POST":
        repo_id = f"{parts[0]}/{parts[1][:-len('.git')]}"
        if parts[5] == "batch":
            return "/{repo}.git/info/lfs/objects/batch", lambda h: _lfs_batch(h, repo_id)
        if parts[5] == "verify":
            return "/{repo}.git/info/lfs/objects/verify", lambda h: _lfs_verify(h, repo_id)
    if n >= 7 and parts[:3] == ["api", "resolve-cache", "models"] and method in ("GET", "HEAD"):
        return ("/api/resolve-cache/models/{repo}/{commit}/{path}",
                lambda h: _resolve_cache(h, "/".join(parts[3:5]), parts[5], "/".join(parts[6:])))
    if n >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
        return "/{repo}/resolve/{rev}/{path}", lambda h: _resolve(h, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
    return f"{method} {'/'.join(parts)}", None


def _agent_harnesses(h: _Handler) -> None:
    """The registry of AI-agent harnesses the client reads to label its user agent; this Hub knows none."""
    h._json(200, {"standardEnvVars": ["AI_AGENT", "AGENT"], "harnesses": {}})


def _create_repo(h: _Handler) -> None:
    state = h.server.state
    user = h.user()
    data = h.json_body()
    if user is None:
        raise HubError(401, "Invalid username or password.")
    name, org = data.get("name"), data.get("organization")
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]{1,96}", name):
        raise HubError(400, "Invalid repo name")
    if data.get("type", "model") != "model":
        raise HubError(400, "This test Hub only hosts model repos")
    visibility = data.get("visibility", "public")
    if visibility not in ("public", "private"):
        raise HubError(400, f"Invalid visibility {visibility!r}")
    namespace = org or user[0]
    if not state.can_write(user, namespace):
        raise HubError(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
    repo_id = f"{namespace}/{name}"
    url = f"{h.server.url}/{repo_id}"
    with state.lock:
        if repo_id in state.repos:
            h._json(409, {"error": "You already created this model repo", "url": url},
                    {"X-Error-Message": "You already created this model repo"})
            return
        state.create_repo(repo_id, private=visibility == "private")
    h._json(200, {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})


def _create_branch(h: _Handler, repo_id: str, branch: str) -> None:
    state = h.server.state
    user = h.user()
    data = h.json_body()
    with state.lock:
        repo = state.repo_for_write(repo_id, user)
        if branch in repo.branches:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        if not re.fullmatch(r"[\w.\-/]+", branch) or branch.startswith("refs/"):
            raise HubError(400, f"Invalid branch name {branch!r}")
        start = data.get("startingPoint") or "main"
        repo.branches[branch] = state.commit_of(repo, start)
    h._json(200, {})


def _model_info(h: _Handler, repo_id: str, revision: str | None) -> None:
    state = h.server.state
    user = h.user()
    with state.lock:
        repo = state.repo_for_read(repo_id, user)
        oid = state.commit_of(repo, revision or "main")
        commit = repo.commits[oid]
        blobs = "blobs" in h.query and h.query["blobs"][0].lower() in ("1", "true")
        siblings = []
        for path, blob in sorted(commit.tree.items()):
            entry = {"rfilename": path}
            if blobs:
                entry.update(size=blob.size, blobId=blob.oid)
                if blob.lfs_sha256:
                    entry["lfs"] = {"size": blob.size, "sha256": blob.lfs_sha256,
                                    "pointerSize": len(lfs_pointer(blob.lfs_sha256, blob.size))}
            siblings.append(entry)
        readme = commit.tree.get("README.md")
        card = _card_data(readme.content if readme is not None and readme.content is not None else None)
        tags = card.get("tags") if isinstance(card.get("tags"), list) else []
        tags = [*tags, *([f"license:{card['license']}"] if isinstance(card.get("license"), str) else [])]
        body = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo.namespace, "sha": oid, "lastModified": commit.date, "createdAt": repo.created_at,
            "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
            "tags": tags, "library_name": card.get("library_name"), "cardData": card or None,
            "siblings": siblings, "usedStorage": sum(len(v) for v in repo.lfs.values()),
        }
    h._json(200, body)


def _tree(h: _Handler, repo_id: str, revision: str, path: str) -> None:
    state = h.server.state
    user = h.user()
    recursive = h.query.get("recursive", ["false"])[0].lower() in ("1", "true")
    with state.lock:
        repo = state.repo_for_read(repo_id, user)
        oid = state.commit_of(repo, revision)
        tree = repo.commits[oid].tree
        prefix = f"{path.rstrip('/')}/" if path else ""
        if path and not any(p.startswith(prefix) for p in tree):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", oid)
        entries, folders = [], set()
        for p, blob in sorted(tree.items()):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):].split("/")
            for depth in range(1, len(rel)):
                if recursive or depth == 1:
                    folders.add(prefix + "/".join(rel[:depth]))
            if len(rel) > 1 and not recursive:
                continue
            entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": p}
            if blob.lfs_sha256:
                entry["lfs"] = {"oid": blob.lfs_sha256, "size": blob.size,
                                "pointerSize": len(lfs_pointer(blob.lfs_sha256, blob.size))}
            entries.append(entry)
        entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                    for f in sorted(folders)]
    h._json(200, entries)


def _validate_yaml(h: _Handler) -> None:
    data = h.json_body()
    if not isinstance(data.get("content"), str) or data.get("repoType", "model") not in ("model", "dataset", "space"):
        raise HubError(400, "Expected {content: string, repoType}")
    errors, warnings = _yaml_errors(data["content"])
    body = {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]}
    h._json(400 if errors else 200, body)


def _preupload(h: _Handler, repo_id: str, revision: str) -> None:
    state = h.server.state
    user = h.user()
    data = h.json_body()
    files = data.get("files")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("size"), int)
            and isinstance(f.get("sample"), str) for f in files):
        raise HubError(400, "Expected files: [{path, size, sample}]")
    with state.lock:
        repo = state.repo_for_write(repo_id, user)
        oid = state.commit_of(repo, revision)
        tree = repo.commits[oid].tree
        answer = []
        for f in files:
            try:
                sample = base64.b64decode(f["sample"], validate=True)
            except ValueError:
                raise HubError(400, f"Invalid base64 sample for {f['path']}") from None
            lfs = state.is_lfs(repo, oid, f["path"], f["size"], sample)
            entry = {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            existing = tree.get(f["path"])
            if existing is not None:  # the client compares this with its own oid to skip unchanged files
                entry["oid"] = existing.lfs_sha256 or git_blob_id(existing.content)
            answer.append(entry)
    h._json(200, {"files": answer, "commitOid": oid})


def _lfs_batch(h: _Handler, repo_id: str) -> None:
    state = h.server.state
    user = h.user()
    if h.headers.get("Accept") != "application/vnd.git-lfs+json":
        raise HubError(406, "Expected Accept: application/vnd.git-lfs+json")
    data = h.json_body()
    objects = data.get("objects")
    if data.get("operation") != "upload" or "basic" not in (data.get("transfers") or ["basic"]) \
            or data.get("hash_algo", "sha256") != "sha256" or not isinstance(objects, list):
        raise HubError(400, "Expected an upload batch of sha256 objects over the basic transfer")
    with state.lock:
        repo = state.repo_for_write(repo_id, user)
        ref = (data.get("ref") or {}).get("name")
        if ref is not None:
            state.commit_of(repo, ref)
        answer = []
        for obj in objects:
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and SHA256_RE.match(oid) and isinstance(size, int) and size >= 0):
                answer.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                               "error": {"code": 422, "message": "Invalid object"}})
            elif oid in repo.lfs:
                answer.append({"oid": oid, "size": size, "authenticated": True})
            else:
                answer.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                    "upload": {"href": h.server.cdn_url + state.sign("upload", repo_id, oid, size),
                               "expires_in": URL_TTL_S},
                    "verify": {"href": f"{h.server.url}/{repo_id}.git/info/lfs/objects/verify"},
                }})
    h._json(200, {"transfer": "basic", "objects": answer}, content_type="application/vnd.git-lfs+json")


def _lfs_verify(h: _Handler, repo_id: str) -> None:
    state = h.server.state
    user = h.user()
    data = h.json_body()
    oid, size = data.get("oid"), data.get("size")
    with state.lock:
        repo = state.repo_for_write(repo_id, user)
        content = repo.uploaded.pop(oid, None) if isinstance(oid, str) else None
        if content is None and isinstance(oid, str):
            content = repo.lfs.get(oid)
        if content is None or len(content) != size:
            raise HubError(404, f"Object {oid} was not uploaded with size {size}")
        repo.lfs[oid] = content
    h._json(200, {"success": True})


def _commit(h: _Handler, repo_id: str, revision: str) -> None:
    state = h.server.state
    user = h.user()
    if h.headers.get("Content-Type", "").split(";")[0] != "application/x-ndjson":
        raise HubError(415, "Expected Content-Type: application/x-ndjson")
    try:
        lines = [json.loads(line) for line in h._body().splitlines() if line.strip()]
    except ValueError:
        raise HubError(400, "Invalid ndjson payload") from None
    if not lines or lines[0].get("key") != "header" or not isinstance(lines[0].get("value"), dict) \
            or not lines[0]["value"].get("summary"):
        raise HubError(400, "The first line must be the commit header with a summary")
    header = lines[0]["value"]
    create_pr = h.query.get("create_pr", ["0"])[0] == "1"
    with state.lock:
        repo = state.repo_for_write(repo_id, user)
        parent = state.commit_of(repo, revision)
        if header.get("parentCommit") not in (None, parent):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(repo.commits[parent].tree)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path")
            if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
                raise HubError(400, f"Invalid path {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "Only base64 file content is supported")
                content = base64.b64decode(value.get("content", ""))
                tree[path] = Blob(len(content), content=content)
            elif key == "lfsFile":
                oid, size = value.get("oid"), value.get("size")
                if value.get("algo") != "sha256" or oid not in repo.lfs or (size is not None and len(repo.lfs[oid]) != size):
                    raise HubError(422, f"LFS object {oid} for {path} was not uploaded and verified")
                tree[path] = Blob(len(repo.lfs[oid]), lfs_sha256=oid)
            elif key == "deletedFile":
                if path not in tree:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound", parent)
                del tree[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                gone = [p for p in tree if p.startswith(prefix)]
                if not gone:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound", parent)
                for p in gone:
                    del tree[p]
            else:
                raise HubError(400, f"Unknown operation {key!r}")
        readme = tree.get("README.md")
        if readme is not None and readme.content is not None:
            errors, _ = _yaml_errors(readme.content.decode("utf-8", "replace"))
            if errors:
                raise HubError(400, f"Invalid metadata in README.md: {'; '.join(errors)}")
        branch = revision[len("refs/heads/"):] if revision.startswith("refs/heads/") else revision
        pr = re.fullmatch(r"refs/pr/(\d+)", revision)
        if not create_pr and branch not in repo.branches and not pr:
            raise HubError(400, f"Can only commit to a branch or a pull request, not to {revision!r}")
        commit = state.new_commit(repo, parent, tree, header["summary"], header.get("description") or "")
        body = {"success": True, "commitOid": commit.oid, "commitUrl": f"{h.server.url}/{repo_id}/commit/{commit.oid}",
                "hookOutput": ""}
        if create_pr:
            num = max(repo.pulls, default=0) + 1
            repo.pulls[num] = commit.oid
            body["pullRequestUrl"] = f"{h.server.url}/{repo_id}/discussions/{num}"
        elif pr:
            repo.pulls[int(pr.group(1))] = commit.oid
        else:
            repo.branches[branch] = commit.oid
    h._json(200, body)


def _resolve(h: _Handler, repo_id: str, revision: str, path: str) -> None:
    state = h.server.state
    user = h.user()
    with state.lock:
        repo = state.repo_for_read(repo_id, user)
        oid = state.commit_of(repo, revision)
        blob = repo.commits[oid].tree.get(path)
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", oid)
        if blob.lfs_sha256 is not None:
            location = h.server.cdn_url + state.sign("lfs", repo_id, blob.lfs_sha256, blob.size)
    headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
    if blob.lfs_sha256 is None:
        if repo.private or blob.size == 0:  # served directly
            _send_bytes(h, blob.content, {**headers, "ETag": f'"{blob.oid}"'}, path)
            return
        # Public small files: a relative 307 to a commit-pinned, cacheable URL on the same host.
        location = f"/api/resolve-cache/models/{repo_id}/{oid}/{quote(path)}?etag={quote(blob.oid)}"
        h._send(307, f"Temporary Redirect. Redirecting to {location}".encode(), {**headers, "Location": location},
                content_type="text/plain; charset=utf-8")
        return
    note = f"Found. Redirecting to {location}".encode()
    h._send(302, note, {**headers, "ETag": f'"{blob.oid}"', "Location": location, "X-Linked-Size": str(blob.size),
                        "X-Linked-ETag": f'"{blob.lfs_sha256}"'}, content_type="text/plain; charset=utf-8")


def _resolve_cache(h: _Handler, repo_id: str, commit: str, path: str) -> None:
    """The commit-pinned URL public small files are redirected to; the etag query must match the blob."""
    state = h.server.state
    with state.lock:
        repo = state.repo_for_read(repo_id, h.user())
        if commit not in repo.commits:
            raise HubError(404, f"Invalid rev id: {commit}", "RevisionNotFound")
        blob = repo.commits[commit].tree.get(path)
        if blob is None or blob.lfs_sha256 is not None:
            raise HubError(404, "Entry not found", "EntryNotFound", commit)
    if h.query.get("etag", [""])[0] != blob.oid:
        raise HubError(400, "etag does not match the file at this commit")
    _send_bytes(h, blob.content, {"X-Repo-Commit": commit, "Accept-Ranges": "bytes", "ETag": f'"{blob.oid}"',
                                  "Cache-Control": "public, max-age=31536000, immutable"}, path)


def _send_bytes(h: _Handler, content: bytes, headers: dict[str, str], name: str) -> None:
    """200 with the whole file, or 206 for a ``Range: bytes=N-`` request (what resumed downloads send)."""
    headers = {**headers, "Content-Disposition": f'inline; filename="{name.rsplit("/", 1)[-1]}"'}
    rng = h.headers.get("Range")
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
    if m:
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else len(content) - 1
        if start >= len(content) or end < start:
            h._send(416, b"", {**headers, "Content-Range": f"bytes */{len(content)}"})
            return
        part = content[start:end + 1]
        h._send(206, part, {**headers, "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(content)}"},
                content_type="application/octet-stream")
        return
    h._send(200, content, headers, content_type="application/octet-stream")


# --- the CDN / object storage ---------------------------------------------------------------------------
def _cdn_routes(method: str, parts: list[str]):
    if len(parts) == 3 and parts[0] == "upload" and method == "PUT":
        return "cdn PUT /upload/{repo}/{oid}", lambda h: _cdn_put(h, parts[1], parts[2])
    if len(parts) == 3 and parts[0] == "lfs" and method in ("GET", "HEAD"):
        return "cdn GET /lfs/{repo}/{oid}", lambda h: _cdn_get(h, parts[1], parts[2])
    return f"cdn {method} {'/'.join(parts)}", None


def _no_authorization(h: _Handler) -> None:
    if h.headers.get("Authorization"):
        # S3 refuses a request authenticated twice (query signature + header).
        raise HubError(400, "InvalidArgument: Only one auth mechanism allowed")


def _cdn_put(h: _Handler, repo_id: str, oid: str) -> None:
    state = h.server.state
    _no_authorization(h)
    size = state.check_signature("upload", repo_id, oid, h.query)
    length = int(h.headers.get("Content-Length") or -1)
    if length != size:
        raise HubError(400, f"Content-Length {length} does not match the signed size {size}")
    hold = state.hold
    with state.lock:
        state.uploads_in_progress += 1
    try:
        first = h.rfile.read(min(1024, size))
        if hold is not None:
            state.upload_started.set()
            hold.wait(30)
        content = first + h.rfile.read(size - len(first))
    except OSError:
        content = b""
    finally:
        with state.lock:
            state.uploads_in_progress -= 1
    if len(content) != size:
        with state.lock:
            state.aborted_uploads += 1
        h.close_connection = True
        return
    if hashlib.sha256(content).hexdigest() != oid:
        raise HubError(400, "BadDigest: the content does not match the signed sha256")
    with state.lock:
        repo = state.repos.get(repo_id)
        if repo is None:
            raise HubError(404, "NoSuchBucket")
        repo.uploaded[oid] = content
        state.finished_uploads += 1
    h._send(200, b"", {"ETag": f'"{hashlib.md5(content).hexdigest()}"'})


def _cdn_get(h: _Handler, repo_id: str, oid: str) -> None:
    state = h.server.state
    _no_authorization(h)
    state.check_signature("lfs", repo_id, oid, h.query)
    with state.lock:
        repo = state.repos.get(repo_id)
        content = repo.lfs.get(oid) if repo is not None else None
    if content is None:
        raise HubError(404, "NoSuchKey")
    _send_bytes(h, content, {"ETag": f'"{oid}"'}, oid)


class HubServer:
    """The fake Hub (and its CDN) on two free localhost ports; a context manager that shuts both down."""

    def __init__(self, users: dict[str, tuple[str, list[str]]]) -> None:
        self.state = HubState(users)
        self._hub = _Server(self.state, _hub_routes)
        self._cdn = _Server(self.state, _cdn_routes)
        self._hub.cdn_url = self._cdn.url
        self._cdn.cdn_url = self._cdn.url
        self.url = self._hub.url
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
                         for s in (self._hub, self._cdn)]

    def __enter__(self) -> "HubServer":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.state.hold is not None:
            self.state.hold.set()
        for s in (self._hub, self._cdn):
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(timeout=5)


# --- the client side: huggingface_hub in a fresh process, configured by environment as users do ------------
# huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE and HF_HUB_DISABLE_XET once, at import; running
# each client in its own process lets it honour them exactly as it does for a user.
def client_env(endpoint: str, hf_home: os.PathLike, token: str | None = None, offline: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_")) and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def cli_command(*args: str) -> list[str]:
    """The installed `dwp-hub` console script (or the same entry point through this interpreter)."""
    script = os.path.join(os.path.dirname(sys.executable), "dwp-hub")
    if os.path.isfile(script):
        return [script, *args]
    return [sys.executable, "-c", "from dwp_hub.cli import main; main(prog_name='dwp-hub')", *args]


def run(command: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def run_python(code: str, env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", code, *args], env, timeout)


# --- test data -------------------------------------------------------------------------------------------
def write_prior_folder(folder: os.PathLike, seed: int, kernel_size: int = 3, kernels: bool = True,
                       metrics: dict[str, float] | None = None) -> "os.PathLike":
    """A small but complete prior folder: seeded weights, the real rendered model card, optional kernel samples."""
    import torch
    from safetensors.torch import save_file

    from dwp_hub import DWPrior
    from training.card import render_card

    torch.manual_seed(seed)
    prior = DWPrior.for_kernel_size(kernel_size, "notmnist", provenance={"dataset": "notmnist-style", "seed": seed})
    prior.card = render_card(prior.config, prior.provenance, metrics or {
        "heldout_elbo": 1.5 + seed, "heldout_iwae_loglik": 1.75 + seed, "iwae_samples": 1000})
    prior.save_pretrained(folder)
    if kernels:
        g = torch.Generator().manual_seed(seed)
        save_file({"train": torch.randn(64, kernel_size, kernel_size, generator=g),
                   "heldout": torch.randn(16, kernel_size, kernel_size, generator=g)},
                  os.path.join(folder, "kernels.safetensors"))
    return folder
