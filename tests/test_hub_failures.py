"""`dwp-hub push` when things go wrong: refused before upload, Hub errors, no Hub, a push killed mid-upload.

Every case must end in one clear message and a non-zero exit, never a traceback, and never leave the
remote revision half-updated.
"""

import hashlib
import json
import socket
import subprocess
import time

import pytest

from hub_server import HubServer, cli_command, client_env, run, run_python, write_prior_folder

ALICE, BOB = "hf_alice_write", "hf_bob_write"

# Runs in one client process: `dwp-hub push` with each argument list, through click's test runner (which
# records whether an exception escaped the command). Prints one JSON line.
PUSH_CASES = r"""
import json, sys
from click.testing import CliRunner
from dwp_hub.cli import main

out = {}
for name, args in json.loads(sys.argv[1]).items():
    r = CliRunner().invoke(main, ["push", *args])
    escaped = r.exception is not None and not isinstance(r.exception, SystemExit)
    out[name] = {"exit": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "escaped": escaped}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub():
    with HubServer({ALICE: ("alice", ["org"]), BOB: ("bob", [])}) as server:
        yield server
    assert server.state.unknown_routes == [] and server.state.server_errors == []


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_prior_folder(tmp_path_factory.mktemp("good") / "prior", seed=3)


def broken_folders(root, good):
    """Folders that must be refused, each broken one way."""
    import shutil

    made = {}
    for name in ("missing-card", "corrupt-weights", "config-mismatch", "bad-license"):
        made[name] = root / name
        shutil.copytree(good, made[name])
    (made["missing-card"] / "README.md").unlink()
    weights = made["corrupt-weights"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cfg = json.loads((made["config-mismatch"] / "config.json").read_text())
    cfg["z_dim"] += 1
    (made["config-mismatch"] / "config.json").write_text(json.dumps(cfg))
    # Parses locally, but the Hub's metadata check knows no such licence.
    card = made["bad-license"] / "README.md"
    card.write_text(card.read_text().replace("license: apache-2.0", "license: not-a-licence"))
    return made


def test_refusals_and_hub_errors_give_one_message_and_exit_1(hub, good, tmp_path):
    broken = broken_folders(tmp_path, good)
    hub.state.fail("POST", "/api/models/{repo}/commit/{rev}", 500, "Internal Error - We're working hard to fix this")
    cases = {
        "missing-card": [str(broken["missing-card"]), "--repo-id", "org/invalid-card", "--token", ALICE],
        "corrupt-weights": [str(broken["corrupt-weights"]), "--repo-id", "org/invalid-weights", "--token", ALICE],
        "config-mismatch": [str(broken["config-mismatch"]), "--repo-id", "org/invalid-config", "--token", ALICE],
        "401": [str(good), "--repo-id", "org/x401", "--token", "hf_not_a_token"],
        "401-no-token": [str(good), "--repo-id", "org/x401"],
        "403": [str(good), "--repo-id", "org/x403", "--token", BOB],
        "404": [str(good), "--repo-id", "org/x404", "--token", ALICE, "--create-pr", "--revision", "no-such-branch"],
        "500": [str(good), "--repo-id", "org/x500", "--token", ALICE],
        "card-refused": [str(broken["bad-license"]), "--repo-id", "org/xcard", "--token", ALICE],
    }
    before = len(hub.state.log)
    out = json.loads(run_python(PUSH_CASES, client_env(hub.url, tmp_path / "home"), json.dumps(cases))
                     .stdout.strip().splitlines()[-1])
    for name, r in out.items():
        assert r["exit"] == 1 and not r["escaped"], (name, r)
        assert r["stdout"] == "" and "Traceback" not in r["stderr"], (name, r)
        lines = r["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, r["stderr"])

    expect = {
        "missing-card": "README.md: missing",
        "corrupt-weights": "model.safetensors: not a readable safetensors file",
        "config-mismatch": "model.safetensors: tensor",
        "401": "push to org/x401 failed: the Hub at http://127.0.0.1",
        "401-no-token": "rejected the credentials (HTTP 401)",
        "403": "push to org/x403 failed: no write access to org/x403",
        "404": "revision 'no-such-branch' of org/x404 does not exist",
        "500": "failed with HTTP 500",
        "card-refused": 'refused the request (HTTP 400): Invalid metadata in README.md. - "license" must be one of',
    }
    for name, text in expect.items():
        assert text in out[name]["stderr"], (name, out[name]["stderr"])
    assert "rejected the credentials (HTTP 401)" in out["401"]["stderr"]

    # Refused folders never reached the Hub: their repos were not even created.
    assert not any(repo.startswith("org/invalid") for repo in hub.state.repos)
    assert not any("invalid" in path for _, _, _, path in hub.state.log[before:])
    # The failed commit left org/x500 at its initial commit, though its LFS objects had been uploaded.
    repo = hub.state.repos["org/x500"]
    assert len(repo.commits) == 1 and set(hub.state.files("org/x500")) == {".gitattributes"}
    assert repo.lfs  # uploaded and verified, never committed
    # The Hub checked the card's metadata before any file was sent.
    assert not hub.state.repos["org/xcard"].lfs and len(hub.state.repos["org/xcard"].commits) == 1


def test_unreachable_hub_is_one_line_on_stderr(good, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run(cli_command("push", str(good), "--repo-id", "org/nowhere", "--token", ALICE),
               client_env(f"http://127.0.0.1:{port}", tmp_path / "home"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"Error: push to org/nowhere failed: could not reach the Hub at http://127.0.0.1:{port} "
        "(ConnectError: [Errno 111] Connection refused); nothing was committed"]


def test_push_killed_mid_upload_leaves_the_revision_unchanged(hub, good, tmp_path):
    repo_id = "org/interrupted"
    old_files = {"config.json": b'{"old": true}\n', "model.safetensors": b"\0old weights\0", "README.md": b"old\n"}
    old_commit = hub.state.seed(repo_id, old_files)
    release = hub.state.hold_uploads()
    env = client_env(hub.url, tmp_path / "home", token=ALICE)
    proc = subprocess.Popen(cli_command("push", str(good), "--repo-id", repo_id), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert hub.state.upload_started.wait(120), "the push never started uploading"
        proc.kill()
        proc.wait(30)
    finally:
        release.set()
        hub.state.hold = None
    deadline = time.monotonic() + 30  # the server finishes reading what the dead client had sent
    while hub.state.uploads_in_progress and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.state.uploads_in_progress == 0 and hub.state.aborted_uploads + hub.state.finished_uploads >= 1
    repo = hub.state.repos[repo_id]
    assert hub.state.head(repo_id) == old_commit
    assert len(repo.commits) == 2  # initial + seed: nothing new
    assert {k: v for k, v in hub.state.files(repo_id).items() if k != ".gitattributes"} == old_files
    assert repo.lfs.keys() == {hashlib.sha256(old_files["model.safetensors"]).hexdigest()}  # nothing verified

    # Pushing again completes the upload from scratch in one new commit.
    again = run(cli_command("push", str(good), "--repo-id", repo_id), env)
    assert again.returncode == 0, again.stderr
    new_commit = hub.state.head(repo_id)
    assert new_commit != old_commit and hub.state.repos[repo_id].commits[new_commit].parent == old_commit
    local = {p.name: p.read_bytes() for p in good.iterdir()}
    assert {k: v for k, v in hub.state.files(repo_id).items() if k != ".gitattributes"} == local
