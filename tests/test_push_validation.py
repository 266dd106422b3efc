"""`dwp-hub push` validates a prior folder completely before it opens any connection (no network here)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from dwp_hub import PriorFormatError
from dwp_hub.publish import PublishError, push_folder, validate_folder
from hub_server import write_prior_folder


@pytest.fixture
def folder(tmp_path):
    return write_prior_folder(tmp_path / "prior", seed=0, kernels=True)


def test_a_complete_folder_passes_and_loads(folder):
    files = validate_folder(folder)
    assert files.config.kernel_size == 3 and files.provenance["seed"] == 0 and files.kernels is not None


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "README.md"])
def test_missing_file_is_named(folder, name):
    (folder / name).unlink()
    with pytest.raises((PriorFormatError, PublishError), match=name.replace(".", r"\.")):
        validate_folder(folder)


def test_corrupt_weights_are_refused(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(PriorFormatError, match="model.safetensors: not a readable safetensors file"):
        validate_folder(folder)


def test_config_that_disagrees_with_the_weights_is_refused(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["z_dim"] = cfg["z_dim"] + 1
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PriorFormatError, match="model.safetensors: tensor .* has shape"):
        validate_folder(folder)


@pytest.mark.parametrize("card, problem", [
    ("# just a title\n", "no YAML metadata block"),
    ("---\nlibrary_name: [unclosed\n---\n# x\n", "metadata does not parse"),
    ("---\nlibrary_name: dwp-hub\nmodel-index:\n- name: x\n  results:\n  - task: 3\n---\n# x\n", "metadata does not parse"),
    ("---\nlibrary_name: timm\n---\n# x\n", "library_name: dwp-hub"),
])
def test_card_metadata_must_parse(folder, card, problem):
    (folder / "README.md").write_text(card)
    with pytest.raises(PriorFormatError, match=problem):
        validate_folder(folder)


@pytest.mark.parametrize("tensors, problem", [
    ({"train": torch.zeros(4, 5, 5)}, r"shape \(4, 5, 5\), expected \(n, 3, 3\)"),
    ({"train": torch.zeros(4, 3, 3), "weights": torch.zeros(1)}, "unexpected tensor"),
    ({"heldout": torch.full((2, 3, 3), float("nan"))}, "finite"),
    ({"train": torch.zeros(4097, 3, 3)}, "at most 4096"),
])
def test_kernel_samples_must_match_the_prior(folder, tensors, problem):
    save_file(tensors, folder / "kernels.safetensors")
    with pytest.raises(PriorFormatError, match=problem):
        validate_folder(folder)


def test_unreadable_kernel_samples_are_refused(folder):
    (folder / "kernels.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(PriorFormatError, match="kernels.safetensors: not a readable safetensors file"):
        validate_folder(folder)


def test_pickle_files_are_never_published(folder):
    (folder / "extra").mkdir()
    (folder / "extra" / "optimizer.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(PublishError, match=r"pickle-format file\(s\) \['optimizer.pt'\]"):
        validate_folder(folder)


@pytest.mark.parametrize("repo_id", ["no-namespace", "org/bad name", "a/b/c"])
def test_bad_repo_id_is_refused(folder, repo_id):
    with pytest.raises(PublishError, match="invalid repo id"):
        push_folder(folder, repo_id)


def test_not_a_folder(tmp_path):
    with pytest.raises(PublishError, match="not a folder"):
        validate_folder(tmp_path / "missing")
