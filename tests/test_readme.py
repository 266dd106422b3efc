"""README.md as a newcomer meets it: short, its priors table generated, and every snippet running as pasted.

Snippets run in document order, each in a fresh process, all in one temporary folder (so the push finds the
prior the build made), with the environment a user would have after `pip install -e '.[train]'`: this
interpreter's bin folder on PATH (`python`, `dwp-hub`) and the repository on PYTHONPATH (the README runs
`python -m training` from the repository root; the tests run it elsewhere so as not to write into the
checkout). The Hub is tests/hub_server.py on localhost, reached through HF_ENDPOINT and HF_TOKEN as the
push snippet's note says. Blocks preceded by `<!-- main-command -->` or `<!-- test-command -->` (CI runs
those) or by `<!-- not-run: REASON -->` are not run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub_server import HubServer, client_env
from training.priors_table import BEGIN, END, main as priors_table_main, priors_table, table_in

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 200
TOKEN = "hf_readme_writer"
ORG = "my-org"  # the organisation the push snippet publishes to
CI_MARKERS = ("<!-- main-command -->", "<!-- test-command -->")


@dataclass(frozen=True)
class Snippet:
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    marker: str  # the HTML comment on the line before the fence, or ""


def snippets(text: str) -> list[Snippet]:
    """Every fenced block of `text`, with its language and the marker comment just above it."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = re.fullmatch(r"```(\w*)\s*", lines[i])
        if opening:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = lines[i - 1].strip() if i > 0 else ""
            marker = before if before.startswith("<!--") else ""
            found.append(Snippet(opening.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 1, marker))
            i = end
        i += 1
    return found


def runnable(snippet: Snippet) -> bool:
    return snippet.language in ("python", "bash") and snippet.marker not in CI_MARKERS \
        and not snippet.marker.startswith("<!-- not-run:")


def table_problem(text: str) -> str | None:
    """Why the priors table in `text` is not the one generated from the bundled priors (None when it is)."""
    try:
        current = table_in(text)
    except ValueError as e:
        return str(e)
    expected = priors_table()
    if current != expected:
        return (f"the priors table differs from the bundled priors; run `python -m training.priors_table "
                f"--write README.md`\n--- README.md\n{current}\n--- generated\n{expected}")
    return None


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; at most {MAX_LINES}"


@pytest.mark.parametrize("page", [README, ROOT / "training" / "README.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
    assert targets
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing paths: {missing}"


def test_readme_priors_table_is_the_generated_one():
    problem = table_problem(README.read_text(encoding="utf-8"))
    assert problem is None, problem


def test_a_stale_priors_table_is_caught():
    text = README.read_text(encoding="utf-8")
    first_row = table_in(text).splitlines()[2]
    stale = text.replace(first_row, first_row.replace("apache-2.0", "mit"), 1)
    assert stale != text
    assert "differs" in table_problem(stale)
    assert "needs one" in table_problem(text.replace(END, ""))


def test_write_replaces_only_the_table(tmp_path):
    text = README.read_text(encoding="utf-8")
    target = tmp_path / "README.md"
    target.write_text(text.replace(table_in(text), "| stale |"), encoding="utf-8")
    result = CliRunner().invoke(priors_table_main, ["--write", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == text.replace(table_in(text), priors_table())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # no temporary file left


def test_write_refuses_a_file_without_markers(tmp_path):
    target = tmp_path / "notes.md"
    target.write_text("# notes\n", encoding="utf-8")
    result = CliRunner().invoke(priors_table_main, ["--write", str(target)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and BEGIN in result.output and "notes.md" in result.output
    assert target.read_text(encoding="utf-8") == "# notes\n"


def test_snippet_selection():
    blocks = snippets(README.read_text(encoding="utf-8"))
    ci = [b for b in blocks if b.marker in CI_MARKERS]
    assert [b.marker for b in ci] == list(CI_MARKERS) and all(b.language == "bash" for b in ci)
    skipped = [b for b in blocks if b.marker.startswith("<!-- not-run:")]
    assert all(re.fullmatch(r"<!-- not-run: \S.* -->", b.marker) for b in skipped), "say why a block is not run"
    run = [b for b in blocks if runnable(b)]
    assert sum(b.language == "python" for b in run) >= 3
    assert any("python -m training build" in b.code and "--tiny" in b.code for b in run)
    assert any(b.code.startswith("dwp-hub push") for b in run)


@pytest.fixture(scope="module")
def snippet_runs(tmp_path_factory):
    """Run every runnable README snippet in order; return (snippet, process) pairs and the Hub's state."""
    work = tmp_path_factory.mktemp("reader")
    with HubServer({TOKEN: ("reader", [ORG])}) as hub:
        env = client_env(hub.url, tmp_path_factory.mktemp("hf-home"), token=TOKEN)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = str(ROOT)
        env["OMP_NUM_THREADS"] = "1"  # the test machine's cores are shared; these small nets are fastest on one
        runs = []
        for block in filter(runnable, snippets(README.read_text(encoding="utf-8"))):
            command = [sys.executable, "-c", block.code] if block.language == "python" \
                else ["bash", "-euo", "pipefail", "-c", block.code]
            runs.append((block, subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                                               timeout=240)))
        return runs, hub.state


def test_every_snippet_runs_as_pasted(snippet_runs):
    runs, _ = snippet_runs
    failed = [f"README.md line {b.line} ({b.language}), exit {p.returncode}:\n{p.stderr[-2000:]}"
              for b, p in runs if p.returncode != 0]
    assert not failed, "\n\n".join(failed)


def test_vi_snippet_learns(snippet_runs):
    runs, _ = snippet_runs
    out = next(p.stdout for b, p in runs if "bayesianize(" in b.code)
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", out).group(1))
    assert accuracy > 0.6, out


def test_push_snippet_publishes_the_built_prior(snippet_runs):
    runs, hub = snippet_runs
    block, push = next((b, p) for b, p in runs if b.code.startswith("dwp-hub push"))
    files = hub.files(re.search(r"--repo-id (\S+)", block.code).group(1))
    assert {"model.safetensors", "config.json", "README.md"} <= set(files), push.stdout
    assert re.search(r"^commit:\s+[0-9a-f]{40}$", push.stdout, re.M), push.stdout
    assert hub.unknown_routes == [] and hub.server_errors == []
