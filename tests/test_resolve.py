"""Prior names: bundled names are the bundled copy (pinned, no network), the Hub only when asked or needed."""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import dwp_hub.hub as hub
from dwp_hub import DWPrior, PriorFormatError, PriorNotFoundError, list_priors
from training.build import install_bundled

# Runs in a fresh interpreter, because huggingface_hub reads HF_* variables once, at import.
SCRIPT = """
import json, sys, time
from pathlib import Path
import dwp_hub.hub as hub
hub.BUNDLED_DIR = Path(sys.argv[1])
out = []
for name in sys.argv[2:]:
    t0 = time.monotonic()
    try:
        r = hub.locate(name)
        out.append({"origin": r.origin, "path": str(r.path), "sha256": r.sha256})
    except Exception as e:
        out.append({"error": type(e).__name__, "message": str(e)})
    out[-1]["seconds"] = time.monotonic() - t0
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def bundled_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundled")
    built = tmp_path_factory.mktemp("built")
    install_bundled(DWPrior.for_kernel_size(7, "notmnist").save_pretrained(built / "notmnist-7x7"), bundled_dir=root)
    install_bundled(DWPrior.for_kernel_size(3, "letters").save_pretrained(built / "letters-3x3"), "acme/letters-3x3",
                    bundled_dir=root)
    return root


def _locate_in_subprocess(bundled: Path, names: list[str], tmp_path: Path, **env) -> list[dict]:
    full_env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), **env}
    if "HF_HUB_OFFLINE" not in env:
        full_env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(bundled), *names], env=full_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_local_folder_wins(tmp_path, bundled_dir, monkeypatch):
    monkeypatch.setattr(hub, "BUNDLED_DIR", bundled_dir)
    folder = DWPrior.for_kernel_size(5, "mine").save_pretrained(tmp_path / "dwp" / "notmnist-7x7")
    monkeypatch.chdir(tmp_path)
    assert hub.locate("dwp/notmnist-7x7").path == Path("dwp/notmnist-7x7")
    loaded = DWPrior.from_pretrained(str(folder))
    assert loaded.config.domain == "mine" and loaded.source.origin == "local" and len(loaded.source.sha256) == 64
    with pytest.raises(ValueError, match="a revision applies to Hub names only"):
        hub.locate(str(folder), revision="main")


def test_split_revision():
    assert hub.split_revision("org/name@v1", None) == ("org/name", "v1")
    assert hub.split_revision("org/name", "main") == ("org/name", "main")
    assert hub.split_revision("org/name@v1", "v1") == ("org/name", "v1")
    with pytest.raises(ValueError, match="two revisions"):
        hub.split_revision("org/name@v1", "v2")
    with pytest.raises(ValueError, match="malformed"):
        hub.split_revision("org/name@", None)


def test_bundled_names_are_pinned_by_content_hash(bundled_dir, monkeypatch):
    monkeypatch.setattr(hub, "BUNDLED_DIR", bundled_dir)
    manifest = json.loads((bundled_dir / "manifest.json").read_text())
    for name in ("dwp/notmnist-7x7", "notmnist-7x7"):
        source = DWPrior.from_pretrained(name).source
        assert (source.origin, source.repo_id) == ("bundled", "dwp/notmnist-7x7")
        assert source.sha256 == manifest["dwp/notmnist-7x7"]["model.safetensors"]
        assert source.pinned == f"dwp/notmnist-7x7 (sha256:{source.sha256[:16]})"


def test_an_altered_bundled_file_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "bundled"
    install_bundled(DWPrior.for_kernel_size(7, "notmnist").save_pretrained(tmp_path / "notmnist-7x7"), bundled_dir=root)
    monkeypatch.setattr(hub, "BUNDLED_DIR", root)
    card = root / "dwp--notmnist-7x7" / "README.md"
    card.write_text(card.read_text() + "\nedited\n")
    with pytest.raises(PriorFormatError, match="README.md: missing or altered"):
        DWPrior.from_pretrained("dwp/notmnist-7x7")


def test_offline_mode_uses_bundled_priors_and_refuses_hub_names(bundled_dir, tmp_path):
    results = _locate_in_subprocess(
        bundled_dir, ["dwp/notmnist-7x7", "notmnist-7x7", "acme/letters-3x3", "dwp/notmnist-7x7@v2",
                      "hf-hub:dwp/notmnist-7x7", "org/unknown"],
        tmp_path, HF_HUB_OFFLINE="1")
    assert [r.get("origin") for r in results[:3]] == ["bundled"] * 3
    # a revision asks for that revision of the Hub repo, which only the Hub cache could hold offline
    assert results[3]["error"] == "NotCachedError"
    assert "dwp/notmnist-7x7@v2 is not in the local Hub cache" in results[3]["message"]
    # hf-hub: without a revision, offline and not cached: the bundled copy of that repo, recorded as such
    assert results[4]["origin"] == "bundled" and results[4]["sha256"] == results[0]["sha256"]
    assert results[5]["error"] == "NotCachedError" and "no prior named" not in results[5]["message"]
    assert "HF_HUB_OFFLINE is set; unset it to download" in results[5]["message"]  # how to go online


class BlackHole:
    """A TCP server on loopback that accepts connections and never answers: a silent Hub."""

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


def test_bundled_names_never_touch_the_network_and_a_silent_hub_is_asked_once(bundled_dir, tmp_path):
    hole = BlackHole()
    try:
        bundled = _locate_in_subprocess(bundled_dir, ["dwp/notmnist-7x7", "notmnist-7x7", "acme/letters-3x3"],
                                        tmp_path, HF_ENDPOINT=hole.url)
        after_bundled = len(hole.connections)
        one = _locate_in_subprocess(bundled_dir, ["org/unknown"], tmp_path, HF_ENDPOINT=hole.url,
                                    HF_HUB_ETAG_TIMEOUT="1")
        after_one = len(hole.connections)
        many = _locate_in_subprocess(bundled_dir, ["org/unknown", "org/other", "dwp/notmnist-7x7"], tmp_path,
                                     HF_ENDPOINT=hole.url, HF_HUB_ETAG_TIMEOUT="1")
        after_many = len(hole.connections)
    finally:
        hole.close()
    assert [r["origin"] for r in bundled] == ["bundled"] * 3 and after_bundled == 0
    for r in one + many[:2]:
        assert r["error"] == "NotCachedError" and "did not answer; check the network connection" in r["message"]
    assert many[2]["origin"] == "bundled"
    # One probe per process, bounded by HF_HUB_ETAG_TIMEOUT (the client retries a timeout once); the
    # process then stops asking that endpoint, so the second Hub name costs no connection and no wait.
    assert after_many - after_one == after_one - after_bundled >= 1
    assert one[0]["seconds"] < 30 and many[1]["seconds"] < 1


def test_refused_connection_is_reported_as_unreachable(bundled_dir, tmp_path):
    with socket.socket() as s:  # a loopback port with no listener: connections are refused at once
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    results = _locate_in_subprocess(bundled_dir, ["dwp/notmnist-7x7", "org/unknown"], tmp_path, HF_ENDPOINT=closed)
    assert results[0]["origin"] == "bundled"
    assert results[1]["error"] == "NotCachedError" and f"the Hub at {closed} did not answer" in results[1]["message"]


def test_list_priors_reports_bundled_kernel_size_and_domain(bundled_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "BUNDLED_DIR", bundled_dir)
    found = {p.name: p for p in list_priors(cache_dir=tmp_path / "empty-cache")}
    assert set(found) == {"dwp/notmnist-7x7", "acme/letters-3x3"}
    assert (found["dwp/notmnist-7x7"].kernel_size, found["dwp/notmnist-7x7"].domain) == (7, "notmnist")
    assert (found["acme/letters-3x3"].kernel_size, found["acme/letters-3x3"].source) == (3, "bundled")


def test_unknown_name_error_lists_known_priors(bundled_dir, monkeypatch):
    monkeypatch.setattr(hub, "BUNDLED_DIR", bundled_dir)
    with pytest.raises(PriorNotFoundError, match="not a Hub repo id.*Known priors: .*acme/letters-3x3") as e:
        hub.locate("no such thing!")
    assert isinstance(e.value, FileNotFoundError)
