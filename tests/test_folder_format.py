"""The prior folder: atomic, lossless save; bit-exact load; one clear error for every kind of damage."""

import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dwp_hub import DWPrior, PriorFormatError
from dwp_hub.prior_folder import CARD_NAME, CONFIG_NAME, KERNELS_NAME, PRIOR_FILES, PROVENANCE_NAME, WEIGHTS_NAME


@pytest.fixture
def saved(tmp_path) -> tuple[DWPrior, Path]:
    torch.manual_seed(0)
    prior = DWPrior.for_kernel_size(5, "test", provenance={"source": "unit test"})
    return prior, prior.save_pretrained(tmp_path / "prior")


def test_round_trip_is_bit_identical(saved):
    prior, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == sorted([CARD_NAME, CONFIG_NAME, PROVENANCE_NAME, WEIGHTS_NAME])
    loaded = DWPrior.from_pretrained(folder)
    assert loaded.config == prior.config
    for (name, a), (_, b) in zip(prior.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    assert cfg["format_version"] == 2 and cfg["kernel_size"] == 5 and "provenance" not in cfg
    assert loaded.provenance == {"source": "unit test"}
    assert loaded.source.origin == "local"


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

    monkeypatch.setattr("dwp_hub.prior_folder.save", explode)
    with pytest.raises(OSError, match="disk full"):
        DWPrior.for_kernel_size(5, "new").save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["prior"]


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg.update(changes)
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))


def test_loading_leaves_the_callers_random_numbers_alone(saved):
    """Loading builds the modules and overwrites their weights: the random initial draws must not be taken
    from the caller's seeded stream (a seeded run that loads a prior would draw differently from one that
    found it loaded)."""
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    DWPrior.from_pretrained(saved[1])
    DWPrior.from_pretrained("dwp/notmnist-5x5")
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / WEIGHTS_NAME).unlink(), "model.safetensors: missing"),
        (lambda f: (f / CONFIG_NAME).unlink(), "config.json: missing"),
        (lambda f: (f / CONFIG_NAME).write_text("{not json"), "not valid JSON"),
        (lambda f: _edit_config(f, architecture="resnet"), "unknown architecture 'resnet'"),
        (lambda f: _edit_config(f, kernel_size=7), "does not match architecture"),
        (lambda f: _edit_config(f, z_dim=3), "has shape"),
        (lambda f: _edit_config(f, format_version=99), "format_version 99 is not supported.*newer dwp-hub"),
        (lambda f: _edit_config(f, provenance={"moved": "out"}), "unknown field.*provenance"),
        (lambda f: (f / PROVENANCE_NAME).write_text("[1, 2]"), "provenance.json: expected a JSON object"),
        (lambda f: (f / KERNELS_NAME).write_bytes(b"not safetensors"), "kernels.safetensors: not a readable"),
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


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("k", [7, 5, 3])
def test_a_loaded_bundled_prior_saves_every_file_byte_identical(tmp_path, k):
    prior = DWPrior.from_pretrained(f"dwp/notmnist-{k}x{k}")
    folder = prior.save_pretrained(tmp_path / "copy")
    assert sorted(p.name for p in folder.iterdir()) == sorted(PRIOR_FILES)
    assert _files(folder) == _files(prior.source.path)
    again = DWPrior.from_pretrained(folder)
    assert torch.equal(again.source_kernels("heldout"), prior.source_kernels("heldout"))
    assert again.card == prior.card and again.provenance == prior.provenance


def test_saving_never_deletes_a_file_it_does_not_own(tmp_path):
    folder = DWPrior.from_pretrained("dwp/notmnist-5x5").save_pretrained(tmp_path / "a")
    (folder / "notes.txt").write_text("mine")
    (folder / ".hidden").write_text("mine too")
    prior = DWPrior.from_pretrained(folder)
    before = _files(folder)
    with pytest.raises(FileExistsError, match="notes.txt.*overwrite=True"):
        prior.save_pretrained(folder)
    assert _files(folder) == before
    other = DWPrior.for_kernel_size(5, "other")  # no kernels: the stale kernels.safetensors must go
    other.save_pretrained(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / ".hidden").read_text() == "mine too"
    assert not (folder / KERNELS_NAME).exists() and not (folder / PROVENANCE_NAME).exists()
    assert DWPrior.from_folder(folder).config.domain == "other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temporary files left beside it


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(FileExistsError, match="not a folder"):
        DWPrior.for_kernel_size(3, "x").save_pretrained(tmp_path / "taken")
    assert (tmp_path / "taken").read_text() == "a file"


def test_format_version_1_is_read_and_its_provenance_moved_out(saved, tmp_path):
    prior, folder = saved
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg.update(format_version=1, provenance=json.loads((folder / PROVENANCE_NAME).read_text()))
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))
    (folder / PROVENANCE_NAME).unlink()
    old = DWPrior.from_folder(folder)
    assert old.provenance == {"source": "unit test"} and old.config == prior.config
    new = old.save_pretrained(tmp_path / "v2")
    assert json.loads((new / CONFIG_NAME).read_text())["format_version"] == 2
    assert json.loads((new / PROVENANCE_NAME).read_text()) == {"source": "unit test"}


def test_not_a_folder_is_a_format_error(tmp_path):
    with pytest.raises(PriorFormatError, match="not a folder"):
        DWPrior.from_folder(tmp_path / "missing")
