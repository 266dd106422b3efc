"""The prior folder: atomic save, bit-exact load, and one clear error for every kind of damage."""

import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dwp_hub import DWPrior, PriorFormatError
from dwp_hub.config import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME


@pytest.fixture
def saved(tmp_path) -> tuple[DWPrior, Path]:
    torch.manual_seed(0)
    prior = DWPrior.for_kernel_size(5, "test", provenance={"source": "unit test"})
    return prior, prior.save_pretrained(tmp_path / "prior")


def test_round_trip_is_bit_identical(saved):
    prior, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == sorted([CARD_NAME, CONFIG_NAME, WEIGHTS_NAME])
    loaded = DWPrior.from_pretrained(folder)
    assert loaded.config == prior.config
    for (name, a), (_, b) in zip(prior.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    assert cfg["format_version"] == 1 and cfg["kernel_size"] == 5 and cfg["provenance"] == {"source": "unit test"}
    assert loaded.source.source == "local"


def test_save_replaces_existing_folder_and_leaves_no_temp_files(saved, tmp_path):
    _, folder = saved
    other = DWPrior.for_kernel_size(5, "other")
    other.save_pretrained(folder)
    assert DWPrior.from_folder(folder).config.domain == "other"
    assert [p.name for p in tmp_path.iterdir()] == ["prior"]


def test_failed_save_keeps_the_old_folder(saved, tmp_path, monkeypatch):
    prior, folder = saved
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("dwp_hub.prior.save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        DWPrior.for_kernel_size(5, "new").save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["prior"]


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg.update(changes)
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / WEIGHTS_NAME).unlink(), "model.safetensors: missing"),
        (lambda f: (f / CONFIG_NAME).unlink(), "config.json: missing"),
        (lambda f: (f / CONFIG_NAME).write_text("{not json"), "not valid JSON"),
        (lambda f: _edit_config(f, architecture="resnet"), "unknown architecture 'resnet'"),
        (lambda f: _edit_config(f, kernel_size=7), "does not match architecture"),
        (lambda f: _edit_config(f, z_dim=3), "has shape"),
        (lambda f: _edit_config(f, format_version=99), "format_version 99"),
        (lambda f: _edit_config(f, extra=1), "unknown field"),
        (lambda f: _edit_config(f, var_floor=-1), "var_floor"),
    ],
)
def test_damaged_folder_gives_one_clear_error(saved, damage, message):
    _, folder = saved
    damage(folder)
    with pytest.raises(PriorFormatError, match=message):
        DWPrior.from_pretrained(folder)


def test_truncated_safetensors(saved):
    _, folder = saved
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(PriorFormatError, match=f"{WEIGHTS_NAME}: not a readable safetensors"):
        DWPrior.from_folder(folder)


def test_pickle_is_never_read(saved):
    _, folder = saved
    (folder / WEIGHTS_NAME).write_bytes(pickle.dumps({"encoder.heads.fc_mu.weight": [1.0]}))
    with pytest.raises(PriorFormatError, match="not a readable safetensors"):
        DWPrior.from_folder(folder)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights(saved, bad):
    _, folder = saved
    tensors = load_file(folder / WEIGHTS_NAME)
    tensors["decoder.heads.fc_mu.bias"][0] = bad
    save_file(tensors, folder / WEIGHTS_NAME)
    with pytest.raises(PriorFormatError, match="decoder.heads.fc_mu.bias contains NaN or inf"):
        DWPrior.from_folder(folder)


def test_missing_and_unexpected_tensors(saved):
    _, folder = saved
    tensors = load_file(folder / WEIGHTS_NAME)
    tensors["surprise"] = tensors.pop("encoder.heads.fc_var.bias")
    save_file(tensors, folder / WEIGHTS_NAME)
    with pytest.raises(PriorFormatError, match="missing.*encoder.heads.fc_var.bias.*unexpected.*surprise"):
        DWPrior.from_folder(folder)
