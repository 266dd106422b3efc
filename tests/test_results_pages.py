"""training/results holds current results only: few files, no logs, pages whose cited files exist, no history.

The research history (raw runs, logs, archived pages) lives in git, not in the tree; these tests keep it out and
keep the results pages honest about what they cite. The last test rebuilds the MNIST page from its own records.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from training.experiments.page_text import _prior_text, prior_name
from training.experiments.report import _copy_records, build_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "training" / "results"
PAGES = [RESULTS / "README.md", RESULTS / "natural" / "README.md", RESULTS / "lessons.md"]
MAX_FILES = 150
# "session 27", "sessions 25–26", "issue #12", "issues #12, #13", a bare "#13".
HISTORY = re.compile(r"\b[Ss]essions? \d+|\b[Ii]ssues? #?\d+|(?<![\w/&#])#\d+\b")
# Backticked text that names a file or folder of the repository (not a prior name like `dwp/notmnist-7x7`, not
# a placeholder like `OUT/x.csv`, not a `COMMIT:path` held in git history).
FILE_SUFFIXES = (".md", ".csv", ".json", ".png", ".safetensors", ".txt", ".py", ".sh", ".log")
REPO_PREFIXES = ("training/", "dwp_hub/", "tests/", "cards/")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
BACKTICKED = re.compile(r"`([^`\s]+)`")


def results_files() -> list[str]:
    """Files under training/results that git tracks or would track (present and not ignored), repo-relative."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "training/results"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(str(p.relative_to(ROOT)) for p in RESULTS.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts)
    return sorted(f for f in out.splitlines() if (ROOT / f).is_file())


def cited_paths(text: str) -> list[str]:
    """The relative links of a markdown page, and the backticked repository paths it names."""
    links = [t.split("#")[0] for t in MARKDOWN_LINK.findall(text) if "://" not in t and not t.startswith("#")]
    named = [t for t in BACKTICKED.findall(text)
             if "/" in t and ":" not in t and "<" not in t and not t.split("/")[0].isupper()
             and (t.endswith("/") or t.endswith(FILE_SUFFIXES) or t.startswith(REPO_PREFIXES))]
    return [t for t in links + named if t]


def missing_citations(page: Path) -> list[str]:
    """Paths a page cites that exist neither beside it nor from the repository root (globs must match)."""
    missing = []
    for cited in cited_paths(page.read_text(encoding="utf-8")):
        bases = [page.parent, ROOT]
        if "*" in cited:
            found = any(any(base.glob(cited.rstrip("/"))) for base in bases)
        else:
            found = any((base / cited).exists() for base in bases)
        if not found:
            missing.append(cited)
    return missing


def test_results_tree_is_small_and_holds_no_logs():
    files = results_files()
    logs = [f for f in files if f.endswith(".log")]
    assert not logs, f"log files under training/results (raw logs belong in git history): {logs[:10]}"
    assert len(files) <= MAX_FILES, f"{len(files)} files under training/results, at most {MAX_FILES}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_path_a_results_page_cites_exists(page):
    assert page.is_file()
    assert not missing_citations(page), f"{page.relative_to(ROOT)} cites missing paths: {missing_citations(page)}"


def test_citation_check_sees_links_and_repository_paths():
    text = ("[a](data/) [b](https://x.org/y) [c](#anchor) `training/kernel_sets.py` `dwp/notmnist-7x7` "
            "`OUT/settings-*.json` `22c8e43:training/results/runs/` `source-kernels/` `python -m x`")
    assert cited_paths(text) == ["data/", "training/kernel_sets.py", "source-kernels/"]


def test_pages_and_cards_carry_no_session_or_issue_numbers():
    texts = sorted(RESULTS.rglob("*.md")) + sorted((ROOT / "cards").glob("*.md"))
    found = {str(p.relative_to(ROOT)): HISTORY.findall(p.read_text(encoding="utf-8")) for p in texts}
    assert {k: v for k, v in found.items() if v} == {}
    assert HISTORY.findall("session 27, sessions 25–26, issue #12, see #13") == [
        "session 27", "sessions 25", "issue #12", "#13"]
    assert not HISTORY.findall("session27-priors, the #training-priors section, colour #1f77b4")


def test_a_local_copy_of_a_bundled_prior_is_named_as_the_bundled_prior():
    from dwp_hub import DWPrior

    sha = DWPrior.from_pretrained("dwp/notmnist-5x5").source.sha256
    local = {"name": "runs/some-folder/pool12", "origin": "local", "sha256": sha, "kernels_train": 9}
    assert prior_name(local) == "dwp/notmnist-5x5"
    assert "runs/some-folder" not in _prior_text(local)
    assert prior_name({"name": "build/y", "origin": "local", "sha256": "0" * 64}) == "build/y"


def test_the_mnist_page_is_what_its_own_records_make(tmp_path):
    """`report --results` on a copy of training/results/data rebuilds the committed page; run logs stay out."""
    results, page = tmp_path / "results", tmp_path / "page"
    shutil.copytree(RESULTS / "data", results)
    (results / "experiments.log").write_text("a run list\n")
    page.mkdir()
    shutil.copyfile(RESULTS / "discussion.md", page / "discussion.md")
    built = build_report(results, page)
    assert built.read_text(encoding="utf-8") == (RESULTS / "README.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in (page / "data").iterdir()) == sorted(p.name for p in (RESULTS / "data").iterdir())


def test_rebuilding_a_page_from_its_own_data_copies_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "fig2.csv").write_text("run_id\n")
    _copy_records(data, data)  # the same folder: no SameFileError
    assert [p.name for p in data.iterdir()] == ["fig2.csv"]
