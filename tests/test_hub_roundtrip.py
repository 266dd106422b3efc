"""Publish a prior with `dwp-hub push` and fetch it back by name, through the real huggingface_hub client.

The Hub is replaced by tests/hub_server.py on localhost; every client runs in its own process with the
environment a user would set (HF_ENDPOINT, HF_HOME, HF_TOKEN, HF_HUB_OFFLINE), since huggingface_hub reads
those at import.
"""

import json
import re
import sys
from pathlib import Path

import pytest

from hub_server import HubServer, cli_command, client_env, run, run_python, write_prior_folder

ROOT = Path(__file__).resolve().parent.parent
REPO = "org/prior-3x3"
PRIVATE = "org/private-prior"
TOKEN = "hf_alice_write"

# Runs in a client process: load each requested name (into the HF cache of HF_HOME) and compare it with a
# local folder, tensor by tensor, config field by field and file by file; then try to download the
# (repo, file) pairs of the optional second argument with hf_hub_download. Prints one JSON line.
COMPARE = r"""
import hashlib, json, sys
from pathlib import Path
import torch
from dwp_hub import DWPrior

def digest(folder):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in Path(folder).iterdir()}

def blob_named_by_etag(f):
    # The cache names blobs by the ETag the Hub gave: sha256 for LFS files, the git blob id otherwise.
    data = f.read_bytes()
    etag = (hashlib.sha256(data) if f.suffix == ".safetensors" else hashlib.sha1(b"blob %d\0" % len(data) + data))
    return f.resolve().name == etag.hexdigest()

out = {}
for name, folder in json.loads(sys.argv[1]).items():
    try:
        got = DWPrior.from_pretrained(name)
    except Exception as e:
        out[name] = {"error": f"{type(e).__name__}: {e}"}
        continue
    ref = DWPrior.from_folder(folder)
    a, b = got.state_dict(), ref.state_dict()
    out[name] = {
        "tensors": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a),
        "config": got.config.to_dict() == ref.config.to_dict(),
        "files": digest(got.source.path) == digest(folder),
        "blobs": all(blob_named_by_etag(f) for f in got.source.path.iterdir()),
        "source": got.source.origin, "revision": got.source.revision,
    }
for repo, filename in json.loads(sys.argv[2]) if len(sys.argv) > 2 else []:
    from huggingface_hub import hf_hub_download
    try:
        out[f"{repo}/{filename}"] = hf_hub_download(repo, filename)
    except Exception as e:
        out[f"{repo}/{filename}"] = type(e).__name__
print(json.dumps(out))
"""

# Runs in a client process: publish with DWPrior.push_to_hub (main), then a branch and a pull request with
# push_folder, and a private repo; prints the commits.
PUSH_MORE = r"""
import json, sys
from dwp_hub import DWPrior
from dwp_hub.publish import push_folder

args = json.loads(sys.argv[1])
v2 = DWPrior.from_folder(args["v2"])
main = v2.push_to_hub(args["repo"], commit_message="retrained")
branch = push_folder(args["v1"], args["repo"], revision="dev")
pr = push_folder(args["v2"], args["repo"], revision="dev", create_pr=True)
private = push_folder(args["v1"], args["private_repo"], private=True)
print(json.dumps({"main": main.commit, "changed": main.changed, "files": list(main.files),
                  "dev": branch.commit, "pr": pr.commit, "pr_revision": pr.revision, "pr_url": pr.pr_url,
                  "private": private.commit}))
"""


def loaded(revision: str) -> dict:
    """What COMPARE reports for a name that loaded from the Hub at `revision`, identical to its folder."""
    return {"tensors": True, "config": True, "files": True, "blobs": True, "source": "hub", "revision": revision}


def last_json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub():
    with HubServer({TOKEN: ("alice", ["org"])}) as server:
        yield server
    assert server.state.unknown_routes == [] and server.state.server_errors == []


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors")
    return {"v1": write_prior_folder(root / "v1", seed=1, kernels=True),
            "v2": write_prior_folder(root / "v2", seed=2, kernels=False)}


@pytest.fixture(scope="module")
def published(hub, folders, tmp_path_factory):
    """`dwp-hub push v1 --repo-id org/prior-3x3`, as a user runs it."""
    env = client_env(hub.url, tmp_path_factory.mktemp("pusher-home"), token=TOKEN)
    before = len(hub.state.log)
    proc = run(cli_command("push", str(folders["v1"]), "--repo-id", REPO), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    commit = re.search(r"^commit:\s+([0-9a-f]{40})$", proc.stdout, re.M)
    assert commit, proc.stdout
    return {"commit": commit.group(1), "stdout": proc.stdout, "log": hub.state.log[before:]}


@pytest.fixture(scope="module")
def fetched(hub, folders, published, tmp_path_factory):
    """Both names loaded online into a fresh HF cache (HF_HOME) that has never seen the repo."""
    home = tmp_path_factory.mktemp("reader-home")
    c1 = published["commit"]
    names = {REPO: str(folders["v1"]), f"{REPO}@{c1}": str(folders["v1"]), "org/never-published": str(folders["v1"])}
    before = len(hub.state.log)
    probes = [[REPO, "no-such-file.txt"]]
    result = last_json(run_python(COMPARE, client_env(hub.url, home), json.dumps(names), json.dumps(probes)))
    return {"home": home, "result": result, "log": hub.state.log[before:]}


def test_push_commits_exactly_the_folder(hub, folders, published):
    c1 = published["commit"]
    assert f"repo:     {hub.url}/{REPO}" in published["stdout"]
    assert hub.state.head(REPO) == c1
    remote = hub.state.files(REPO, c1)
    local = {p.name: p.read_bytes() for p in folders["v1"].iterdir()}
    assert {k: v for k, v in remote.items() if k != ".gitattributes"} == local
    # One commit on top of the repo's initial commit: nothing was committed file by file.
    repo = hub.state.repos[REPO]
    assert repo.commits[repo.commits[c1].parent].parent is None


def test_push_speaks_the_hub_upload_protocol(published):
    routes = {(m, r) for m, r, _, _ in published["log"]} - {("GET", "/api/agent-harnesses")}
    assert routes == {
        ("POST", "/api/repos/create"),
        ("GET", "/api/models/{repo}/revision/{rev}"),
        ("POST", "/api/validate-yaml"),
        ("POST", "/api/models/{repo}/preupload/{rev}"),
        ("POST", "/{repo}.git/info/lfs/objects/batch"),
        ("PUT", "cdn PUT /upload/{repo}/{oid}"),
        ("POST", "/{repo}.git/info/lfs/objects/verify"),
        ("POST", "/api/models/{repo}/commit/{rev}"),
    }
    assert all(status == 200 for _, _, status, _ in published["log"])
    # Both safetensors files went through LFS, the JSON and the card inline in the commit.
    assert sum(1 for m, r, _, _ in published["log"] if r == "cdn PUT /upload/{repo}/{oid}") == 2


def test_load_back_by_name_and_by_commit_is_bit_identical(published, fetched):
    c1 = published["commit"]
    for name in (REPO, f"{REPO}@{c1}"):
        got = fetched["result"][name]
        assert got == loaded(c1), name
    assert fetched["result"][f"{REPO}/no-such-file.txt"] == "RemoteEntryNotFoundError"
    assert fetched["result"]["org/never-published"]["error"].startswith(
        "PriorNotFoundError: no prior named 'org/never-published': RepositoryNotFoundError")
    routes = {(m, r, s) for m, r, s, _ in fetched["log"]}
    # Small files through the commit-pinned 307 of public repos, LFS files by a 302 to the CDN and fetched
    # there without the token (the CDN refuses requests that carry one).
    assert ("HEAD", "/{repo}/resolve/{rev}/{path}", 307) in routes
    assert ("GET", "/api/resolve-cache/models/{repo}/{commit}/{path}", 200) in routes
    assert ("HEAD", "/{repo}/resolve/{rev}/{path}", 302) in routes
    assert ("GET", "cdn GET /lfs/{repo}/{oid}", 200) in routes


def test_offline_uses_the_cache_and_refuses_uncached_names(hub, folders, published, fetched):
    c1 = published["commit"]
    names = {REPO: str(folders["v1"]), f"{REPO}@{c1}": str(folders["v1"]), "org/never-published": str(folders["v1"])}
    before = len(hub.state.log)
    result = last_json(run_python(COMPARE, client_env(hub.url, fetched["home"], offline=True), json.dumps(names)))
    assert len(hub.state.log) == before  # not a single request
    for name in (REPO, f"{REPO}@{c1}"):
        assert result[name] == loaded(c1), name
    error = result["org/never-published"]["error"]
    assert error.startswith("NotCachedError: cannot load prior 'org/never-published'")
    assert "not in the local Hub cache" in error and "unset it to download" in error  # says how to go online


def test_pushing_the_same_folder_again_says_so_once(hub, folders, published, tmp_path_factory):
    """No new commit, and only dwp-hub's own line about it: huggingface_hub's empty-commit warning is not shown."""
    env = client_env(hub.url, tmp_path_factory.mktemp("same-pusher"), token=TOKEN)
    proc = run(cli_command("push", str(folders["v1"]), "--repo-id", REPO), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"commit:   {published['commit']}" in proc.stdout
    assert "no new commit was made" in proc.stdout
    assert "No files have been modified" not in proc.stdout + proc.stderr


def test_second_push_makes_a_new_commit_and_the_old_one_still_resolves(hub, folders, published, fetched,
                                                                       tmp_path_factory):
    c1 = published["commit"]
    env = client_env(hub.url, tmp_path_factory.mktemp("second-pusher"), token=TOKEN)
    pushed = last_json(run_python(PUSH_MORE, env, json.dumps({"repo": REPO, "private_repo": PRIVATE,
                                                              "v1": str(folders["v1"]), "v2": str(folders["v2"])})))
    c2 = pushed["main"]
    assert c2 != c1 and pushed["changed"] and hub.state.head(REPO) == c2
    assert hub.state.repos[REPO].commits[c2].parent == c1
    # v2 has no kernel samples: the stale kernels.safetensors of v1 is deleted in the same commit.
    assert "kernels.safetensors" not in hub.state.files(REPO, c2)
    assert "kernels.safetensors" in hub.state.files(REPO, c1)
    assert pushed["dev"] == hub.state.head(REPO, "dev") and pushed["dev"] not in (c1, c2)
    assert pushed["pr_revision"] == "refs/pr/1" and pushed["pr_url"] == f"{hub.url}/{REPO}/discussions/1"
    assert hub.state.head(REPO) == c2  # the pull request left main alone

    assert hub.state.repos[PRIVATE].private

    names = {REPO: str(folders["v2"]), f"{REPO}@{c1}": str(folders["v1"]), f"{REPO}@dev": str(folders["v1"]),
             f"{REPO}@refs/pr/1": str(folders["v2"]), PRIVATE: str(folders["v1"])}
    reader = client_env(hub.url, tmp_path_factory.mktemp("fresh"), token=TOKEN)
    result = last_json(run_python(COMPARE, reader, json.dumps(names)))
    expected_revision = {REPO: c2, f"{REPO}@{c1}": c1, f"{REPO}@dev": pushed["dev"], f"{REPO}@refs/pr/1": pushed["pr"],
                         PRIVATE: pushed["private"]}
    for name, revision in expected_revision.items():
        assert result[name] == loaded(revision), name


# Runs in a client process: the full round trip. A bundled prior is loaded, saved, the saved copy pushed
# with DWPrior.push_to_hub, then fetched back by name in the same process (after the push, so online).
BUNDLED_ROUND_TRIP = r"""
import json, sys
from pathlib import Path
from dwp_hub import DWPrior

repo, out = sys.argv[1], Path(sys.argv[2])
bundled = DWPrior.from_pretrained("dwp/notmnist-5x5")
saved = bundled.save_pretrained(out / "saved")
pushed = DWPrior.from_pretrained(saved).push_to_hub(repo)
back = DWPrior.from_pretrained(f"{repo}@{pushed.commit}")
print(json.dumps({"bundled": str(bundled.source.path), "saved": str(saved), "downloaded": str(back.source.path),
                  "commit": pushed.commit, "origin": back.source.origin, "revision": back.source.revision,
                  "sha256": [bundled.source.sha256, back.source.sha256]}))
"""


def test_bundled_prior_saved_pushed_and_downloaded_is_byte_identical(hub, tmp_path):
    env = client_env(hub.url, tmp_path / "home", token=TOKEN)
    out = last_json(run_python(BUNDLED_ROUND_TRIP, env, "org/notmnist-5x5", str(tmp_path)))
    files = {name: {p.name: p.read_bytes() for p in Path(out[name]).iterdir()}
             for name in ("bundled", "saved", "downloaded")}
    assert sorted(files["bundled"]) == ["README.md", "config.json", "kernels.safetensors", "model.safetensors",
                                        "provenance.json"]
    assert files["saved"] == files["bundled"] and files["downloaded"] == files["bundled"]
    remote = hub.state.files("org/notmnist-5x5", out["commit"])
    assert {k: v for k, v in remote.items() if k != ".gitattributes"} == files["bundled"]
    assert out["origin"] == "hub" and out["revision"] == out["commit"]
    assert out["sha256"][0] == out["sha256"][1]


# Runs in a client process: upload a (randomly initialised) timm checkpoint in safetensors, as a model repo.
UPLOAD_CHECKPOINT = r"""
import sys
import timm, torch
from huggingface_hub import HfApi
torch.manual_seed(0)
timm.models.save_for_hf(timm.create_model("resnet18", num_classes=10), sys.argv[2], safe_serialization=True)
api = HfApi()
api.create_repo(sys.argv[1], exist_ok=True)
print(api.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2]).oid)
"""


def test_build_a_prior_from_a_hub_checkpoint(hub, tmp_path):
    """`python -m training build NAME --checkpoint ORG/NAME`: kernels of a Hub model, fetched at one commit."""
    env = client_env(hub.url, tmp_path / "home", token=TOKEN)
    upload = run_python(UPLOAD_CHECKPOINT, env, "org/resnet18-ckpt", str(tmp_path / "ckpt"))
    assert upload.returncode == 0, upload.stderr[-3000:]
    commit = upload.stdout.strip().splitlines()[-1]
    proc = run([sys.executable, "-m", "training", "build", "hubnet-7x7", "--tiny", "--no-progress", "--out",
                str(tmp_path / "out"), "--checkpoint", "org/resnet18-ckpt"], {**env, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    provenance = json.loads((tmp_path / "out" / "hubnet-7x7" / "provenance.json").read_text())
    (source,) = provenance["source_checkpoints"]
    assert source["origin"] == "hub" and source["revision"] == commit
    assert list(source["files"]) == ["model.safetensors"] and provenance["kernels_total"] == 64 * 3
