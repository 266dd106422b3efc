"""`dwp-hub list / info / sample`, run as a user would: the installed console script."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dwp_hub import DWPrior
from dwp_hub.cli import main

EXE = str(Path(sys.executable).parent / "dwp-hub")  # the console script installed beside this Python


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    return DWPrior.for_kernel_size(7, "test").save_pretrained(tmp_path_factory.mktemp("p") / "prior-7x7")


def test_help_on_every_command():
    for name, command in [("", main), *main.commands.items()]:
        result = CliRunner().invoke(main, [name, "--help"] if name else ["--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name
        assert command.help or command.callback.__doc__, f"{name} has no help text"


def test_sample_writes_a_png_grid(prior_dir, tmp_path):
    out = tmp_path / "grid.png"
    proc = run("sample", str(prior_dir), "-n", "64", "--seed", "0", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "L"
    assert img.size[0] == img.size[1] > 8 * 7 * 8  # 8x8 kernels of 7x7 pixels, 8x upscaled
    again = tmp_path / "again.png"
    run("sample", str(prior_dir), "-n", "64", "--seed", "0", "-o", str(again))
    assert again.read_bytes() == out.read_bytes()


def test_info_is_a_short_summary_with_json_and_provenance_on_request():
    proc = run("info", "dwp/notmnist-7x7")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) < 25
    assert "bundled dwp/notmnist-7x7 (sha256 " in proc.stdout and "7x7 kernels, domain notmnist" in proc.stdout
    assert "heldout_iwae_loglik" in proc.stdout and "font_files_test" not in proc.stdout
    full = json.loads(run("info", "dwp/notmnist-7x7", "--json").stdout)
    assert full["config"]["kernel_size"] == 7 and full["card_metadata"]["library_name"] == "dwp-hub"
    assert full["source"]["origin"] == "bundled" and len(full["source"]["sha256"]) == 64
    provenance = json.loads(run("info", "dwp/notmnist-7x7", "--provenance").stdout)
    assert len(provenance["font_files_test"]) > 100


def test_a_closed_pipe_ends_quietly():
    proc = subprocess.run(f"'{EXE}' info dwp/notmnist-7x7 --provenance | head -n 2", shell=True,
                          capture_output=True, text=True, timeout=120, executable="/bin/bash")
    assert proc.stdout.splitlines()[0] == "{" and proc.stderr == ""


def test_help_does_not_import_torch():
    code = ("import sys\nfrom dwp_hub.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "nope/missing-prior"], "cannot load prior 'nope/missing-prior'"),
        (["info", ""], "empty prior name"),
        (["sample", "PRIOR", "-o", "grid.jpg"], "output must be a .png"),
        (["sample", "PRIOR", "-n", "0", "-o", "g.png"], "Invalid value"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(prior_dir, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    args = [str(prior_dir) if a == "PRIOR" else a for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert message in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.jpg"))


def test_corrupt_prior_is_reported_by_file(prior_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(prior_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    proc = run("sample", str(broken), "-o", str(tmp_path / "g.png"))
    assert proc.returncode == 1 and "model.safetensors" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_list_shows_priors_then_domains(prior_dir):
    proc = run("list")
    assert proc.returncode == 0 and "kernel" in proc.stdout
    table, _, domains = proc.stdout.partition("\ndomains")
    assert "dwp/photo-3x3" in table and "dwp/notmnist-7x7" in table
    lines = {line.split()[0]: line for line in domains.strip().splitlines()[1:]}
    assert "7x7, 5x5, 3x3" in lines["notmnist"] and "default for 1-channel inputs" in lines["notmnist"]
    assert "3x3" in lines["photo"] and "default for 3-channel inputs" in lines["photo"]


def test_sample_creates_missing_folders_and_says_so(prior_dir, tmp_path):
    proc = run("sample", str(prior_dir), "-n", "4", "-o", "demo/deeper/grid.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"created folder {Path('demo/deeper')}"
    assert Image.open(tmp_path / "demo" / "deeper" / "grid.png").format == "PNG"
    again = run("sample", str(prior_dir), "-n", "4", "-o", "demo/deeper/grid.png", cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""  # nothing created, nothing said


@pytest.mark.parametrize("out, message", [
    ("existing.png/x.png", "cannot write existing.png/x.png: existing.png is not a folder"),
    ("existing.png/sub/x.png", "cannot write existing.png/sub/x.png: existing.png is not a folder"),
    ("/proc/x.png", "cannot write /proc/x.png: "),
])
def test_sample_output_errors_name_the_path_given(prior_dir, tmp_path, out, message):
    (tmp_path / "existing.png").write_bytes(b"not a folder")
    proc = run("sample", str(prior_dir), "-n", "4", "-o", out, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith(f"Error: {message}"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and ".x.png." not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.png"]


def test_info_footer_describes_what_json_gives():
    footer = run("info", "dwp/notmnist-7x7").stdout.strip().splitlines()[-1]
    full = json.loads(run("info", "dwp/notmnist-7x7", "--json").stdout)
    assert sorted(full) == ["card_metadata", "config", "source"]
    assert "--json the config, source and card metadata" in footer
