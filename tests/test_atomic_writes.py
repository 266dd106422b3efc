"""dwp_hub.atomic: files and folders appear complete or not at all, through links, beside leftovers, under races."""

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
import torch

from dwp_hub import DWPrior
from dwp_hub.atomic import staged_file, staged_folder, write_bytes_atomic, write_text_atomic
from dwp_hub.prior_folder import CONFIG_NAME


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_staged_file_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with staged_file(path, suffix=".txt") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".txt" and tmp != path
        tmp.write_text("new")
        assert path.read_text() == "old"  # nothing visible before the rename
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_staged_file_gives_a_new_file_the_mode_open_would(tmp_path):
    write_bytes_atomic(tmp_path / "new.bin", b"\x00\x01")
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o666 & ~_umask()
    assert (tmp_path / "new.bin").read_bytes() == b"\x00\x01"


def test_staged_file_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "kept.txt"
    path.write_text("old")
    path.chmod(0o600)
    write_text_atomic(path, "näw")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text(encoding="utf-8") == "näw"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with staged_file(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_errors_name_the_path_asked_for_never_the_temp_file(tmp_path):
    missing = tmp_path / "no-such-folder" / "x.png"
    with pytest.raises(FileNotFoundError) as info:
        write_bytes_atomic(missing, b"x")
    assert info.value.filename == str(missing)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as info:  # os.replace of a file onto a folder
        write_bytes_atomic(folder, b"x")
    assert info.value.filename == str(folder) and ".folder." not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_linked_file_is_written_through_and_stays_a_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


@pytest.fixture
def prior() -> DWPrior:
    torch.manual_seed(0)
    return DWPrior.for_kernel_size(3, "atomic")


def test_save_to_a_link_writes_the_linked_folder_and_keeps_the_link(prior, tmp_path):
    real = prior.save_pretrained(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    DWPrior.for_kernel_size(3, "through-the-link").save_pretrained(link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert DWPrior.from_folder(real).config.domain == "through-the-link"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_leftover_set_aside_folder_does_not_block_later_saves(prior, tmp_path):
    folder = prior.save_pretrained(tmp_path / "prior")
    leftover = tmp_path / f".prior.old-{os.getpid()}"  # what a process killed mid-save once left behind
    leftover.mkdir()
    (leftover / CONFIG_NAME).write_text("{}")
    for domain in ("second", "third"):
        DWPrior.for_kernel_size(3, domain).save_pretrained(folder)
        assert DWPrior.from_folder(folder).config.domain == domain
    assert sorted(p.name for p in tmp_path.iterdir()) == [leftover.name, "prior"]


def _save_in_a_loop(target: str, who: int, rounds: int) -> None:
    for i in range(rounds):
        with staged_folder(target) as tmp:
            (tmp / "who").write_text(f"{who} {i}")
            (tmp / "payload").write_bytes(bytes(1000))


def test_processes_saving_to_one_folder_all_succeed(tmp_path):
    target = tmp_path / "shared"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_save_in_a_loop, args=(str(target), who, 60)) for who in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert sorted(p.name for p in target.iterdir()) == ["payload", "who"]
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "f"
    with staged_folder(target) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(target) as tmp:
            (tmp / "a").write_text("new")
            raise RuntimeError("interrupted")
    assert (target / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
