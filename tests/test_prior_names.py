"""dwp_hub.names.PriorName: the one reading of a prior or checkpoint name, shared by the runtime and training/."""

import pytest

from dwp_hub import DWPrior
from dwp_hub.errors import PriorNotFoundError
from dwp_hub.names import PriorName
from dwp_hub.prior_folder import PICKLE_SUFFIXES
from training.source_checkpoints import resolve_checkpoint


def test_repository_names_with_prefix_and_revision():
    assert PriorName.parse("dwp/notmnist-7x7") == PriorName("dwp/notmnist-7x7", repo="dwp/notmnist-7x7")
    bare = PriorName.parse("notmnist-7x7@v1")
    assert (bare.repo, bare.repo_id, bare.revision, bare.is_plain) == ("notmnist-7x7", "dwp/notmnist-7x7", "v1", False)
    hub = PriorName.parse("hf-hub:org/name", revision="main")
    assert (hub.repo, hub.revision, hub.hub_asked, hub.is_local, hub.is_plain) == ("org/name", "main", True, False, False)
    assert PriorName.parse("org/name").is_plain


def test_an_existing_path_is_local_unless_the_hub_is_asked_for(tmp_path, monkeypatch):
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()
    monkeypatch.chdir(tmp_path)
    local = PriorName.parse("org/name")
    assert local.is_local and local.repo is None and local.repo_id is None
    assert PriorName.parse("hf-hub:org/name").repo == "org/name"
    with pytest.raises(ValueError, match="a revision applies to Hub names only"):
        PriorName.parse("org/name", revision="main")


@pytest.mark.parametrize("text, message", [
    ("", "empty prior name"),
    ("  ", "empty prior name"),
    ("hf-hub:", "empty prior name"),
    ("org/name@", "malformed prior name 'org/name@'"),
])
def test_empty_and_malformed_names_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        PriorName.parse(text)


def test_from_pretrained_of_an_empty_name_refuses_instead_of_loading_the_current_folder(tmp_path, monkeypatch):
    DWPrior.for_kernel_size(3, "here").save_pretrained(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert DWPrior.from_pretrained(".").config.domain == "here"  # the current folder, when asked for by name
    with pytest.raises(ValueError, match="empty prior name"):
        DWPrior.from_pretrained("")


def test_checkpoint_names_go_through_the_hubs_error_mapping():
    # tests run offline (conftest): an uncached Hub checkpoint is one line saying how to go online
    with pytest.raises(PriorNotFoundError, match="cannot load checkpoint 'org/some-net@v1'.*unset it to download"):
        resolve_checkpoint("org/some-net@v1")


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_checkpoints_and_publishing_refuse_the_same_pickle_suffixes(tmp_path, suffix):
    (tmp_path / f"weights{suffix}").write_bytes(b"x")
    with pytest.raises(ValueError, match=f"only pickle-format weights: weights{suffix}"):
        resolve_checkpoint(str(tmp_path))
