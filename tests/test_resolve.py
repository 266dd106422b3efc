"""Name resolution: local folder → Hub (cache) → bundled, and never waiting on an unreachable Hub."""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import dwp_hub.resolve as resolve
from dwp_hub import DWPrior, PriorNotFoundError, list_priors

# Runs in a fresh interpreter, because huggingface_hub reads HF_* variables once, at import.
SCRIPT = """
import json, sys
from pathlib import Path
import dwp_hub.resolve as resolve
resolve.BUNDLED_DIR = Path(sys.argv[1])
out = []
for name in sys.argv[2:]:
    try:
        r = resolve.resolve_prior(name)
        out.append({"source": r.source, "path": str(r.path)})
    except Exception as e:
        out.append({"error": type(e).__name__, "message": str(e)})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def bundled_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundled")
    DWPrior.for_kernel_size(7, "notmnist").save_pretrained(root / "dwp--notmnist-7x7")
    DWPrior.for_kernel_size(3, "letters").save_pretrained(root / "acme--letters-3x3")
    return root


def _resolve_in_subprocess(bundled: Path, names: list[str], tmp_path: Path, **env) -> list[dict]:
    full_env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), **env}
    if "HF_HUB_OFFLINE" not in env:
        full_env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(bundled), *names], env=full_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_local_folder_wins(tmp_path, bundled_dir, monkeypatch):
    monkeypatch.setattr(resolve, "BUNDLED_DIR", bundled_dir)
    folder = DWPrior.for_kernel_size(5, "mine").save_pretrained(tmp_path / "dwp" / "notmnist-7x7")
    monkeypatch.chdir(tmp_path)
    assert resolve.resolve_prior("dwp/notmnist-7x7").path == Path("dwp/notmnist-7x7")
    assert DWPrior.from_pretrained(str(folder)).config.domain == "mine"


def test_split_revision():
    assert resolve.split_revision("org/name@v1", None) == ("org/name", "v1")
    assert resolve.split_revision("org/name", "main") == ("org/name", "main")
    assert resolve.split_revision("org/name@v1", "v1") == ("org/name", "v1")
    with pytest.raises(ValueError, match="two revisions"):
        resolve.split_revision("org/name@v1", "v2")
    with pytest.raises(ValueError, match="malformed"):
        resolve.split_revision("org/name@", None)


def test_offline_mode_uses_bundled_priors(bundled_dir, tmp_path):
    results = _resolve_in_subprocess(
        bundled_dir, ["dwp/notmnist-7x7", "notmnist-7x7", "acme/letters-3x3", "dwp/notmnist-7x7@v2", "org/unknown"],
        tmp_path, HF_HUB_OFFLINE="1")
    assert [r.get("source") for r in results[:3]] == ["bundled"] * 3
    assert results[3]["error"] == "PriorNotFoundError" and "no revision 'v2'" in results[3]["message"]
    assert results[4]["error"] == "PriorNotFoundError"
    assert "offline" in results[4]["message"] and "dwp/notmnist-7x7" in results[4]["message"]


class BlackHole:
    """A TCP server that accepts connections and never answers: the worst kind of unreachable Hub."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        for c in self.connections:
            c.close()
        self.sock.close()


def test_unreachable_hub_is_asked_once_then_bundled_loads_without_network(bundled_dir, tmp_path):
    hole = BlackHole()
    try:
        first = _resolve_in_subprocess(bundled_dir, ["dwp/notmnist-7x7"], tmp_path, HF_ENDPOINT=hole.url)
        after_one = len(hole.connections)
        many = _resolve_in_subprocess(bundled_dir, ["dwp/notmnist-7x7"] * 4 + ["acme/letters-3x3"], tmp_path,
                                      HF_ENDPOINT=hole.url)
        after_many = len(hole.connections)
    finally:
        hole.close()
    assert first == [{"source": "bundled", "path": str(bundled_dir / "dwp--notmnist-7x7")}]
    assert [r["source"] for r in many] == ["bundled"] * 5
    # Each process probes the endpoint once; the other four loads in the second process ask nothing.
    assert after_many - after_one == after_one


def test_unresolvable_hub_host_falls_back_to_bundled(bundled_dir, tmp_path):
    results = _resolve_in_subprocess(bundled_dir, ["dwp/notmnist-7x7", "org/unknown"], tmp_path,
                                     HF_ENDPOINT="http://hub.invalid")
    assert results[0]["source"] == "bundled"
    assert results[1]["error"] == "PriorNotFoundError" and "unreachable" in results[1]["message"]


def test_list_priors_reports_bundled_kernel_size_and_domain(bundled_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(resolve, "BUNDLED_DIR", bundled_dir)
    found = {p.name: p for p in list_priors(cache_dir=tmp_path / "empty-cache")}
    assert set(found) == {"dwp/notmnist-7x7", "acme/letters-3x3"}
    assert (found["dwp/notmnist-7x7"].kernel_size, found["dwp/notmnist-7x7"].domain) == (7, "notmnist")
    assert (found["acme/letters-3x3"].kernel_size, found["acme/letters-3x3"].source) == (3, "bundled")


def test_unknown_name_error_lists_known_priors(bundled_dir, monkeypatch):
    monkeypatch.setattr(resolve, "BUNDLED_DIR", bundled_dir)
    with pytest.raises(PriorNotFoundError, match="not a Hub repo id.*Known priors: .*acme/letters-3x3"):
        resolve.resolve_prior("no such thing!")
