"""Fig. 2's natural-image panel: --quick runs on the stand-in photo tiles through the CLI, resuming, the prior
columns, the paper's CIFAR net, the shared μ init, per-class sizes and the markdown table."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dwp_hub import init_from_prior
from dwp_hub.bayes_conv import bayes_layers
from training.experiments import fig2
from training.experiments.__main__ import cli
from training.experiments.context import RunContext
from training.experiments.data import ALL, PhotoTarget, load_photo_target, load_target
from training.experiments.nets import cifar_classifier
from training.experiments.priors import PriorSet
from training.experiments.runner import protocol
from training.experiments.settings import QUICK_NATURAL_FIG2, Fig2Settings, run_protocol

PHOTO = {7: "dwp/photo-7x7", 5: "dwp/photo-5x5"}
NOTMNIST = {7: "dwp/notmnist-7x7", 5: "dwp/notmnist-5x5"}


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("photo-root")


@pytest.fixture(scope="module")
def tiles(root) -> PhotoTarget:
    return load_photo_target(f"photo-heldout-tiny:{root}")


def natural_run(out: Path, root: Path, *extra: str) -> str:
    result = CliRunner().invoke(cli, ["fig2", "--out", str(out), "--quick", "--target", f"photo-heldout:{root}",
                                      "--threads", "1", "--no-progress", *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


CONTROL = ("--prior7", NOTMNIST[7], "--prior5", NOTMNIST[5], "--init-prior7", PHOTO[7], "--init-prior5", PHOTO[5],
           "--set", "fig2.methods=dwp")


@pytest.fixture(scope="module")
def out(root, tmp_path_factory) -> Path:
    """Both prior domains in one folder: photo priors (the default) for dwp and normal, then the notmnist DWP."""
    out = tmp_path_factory.mktemp("natural")
    natural_run(out, root, "--set", "fig2.methods=dwp,normal")
    natural_run(out, root, *CONTROL)
    return out


def test_quick_natural_panel_records_both_prior_domains_with_their_columns(out):
    rows = read_csv(out / "fig2.csv")
    assert list(rows[0]) == ["run_id", "protocol", "run_seconds", "device", *fig2.NATURAL_COLUMNS]
    got = sorted((r["method"], r["prior"], r["init_prior"], r["n_train"]) for r in rows)
    sizes = ["all" if n == ALL else str(n) for n in QUICK_NATURAL_FIG2.sizes]
    assert got == sorted([(m, p, "photo", n) for m, p in (("dwp", "photo"), ("normal", ""), ("dwp", "notmnist"))
                          for n in sizes])
    assert len({r["protocol"] for r in rows if r["prior"] == "notmnist"}) == 1
    assert {r["protocol"] for r in rows if r["prior"] == "notmnist"}.isdisjoint(
        {r["protocol"] for r in rows if r["prior"] != "notmnist"})
    tiles_per_class = {r["n_train"]: int(r["train_images"]) for r in rows}
    assert tiles_per_class["2"] == 2 * 4  # the stand-in has 4 classes (rotations)
    for r in rows:
        assert float(r["width_scale"]) == QUICK_NATURAL_FIG2.width_scale
        assert int(r["steps"]) == QUICK_NATURAL_FIG2.steps
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["nll"]) > 0
        assert float(r["sigma_conv3"]) > 0  # all three convs are Bayesian
    assert int(tiles_per_class["all"]) > tiles_per_class["2"]


def test_a_rerun_of_either_domain_adds_nothing(out, root):
    before = (out / "fig2.csv").read_text()
    assert "fig2: 0 new runs" in natural_run(out, root, "--set", "fig2.methods=dwp,normal")
    assert "fig2: 0 new runs" in natural_run(out, root, *CONTROL)
    assert (out / "fig2.csv").read_text() == before


def test_the_table_pairs_each_dwp_domain_with_the_baselines(out):
    result = CliRunner().invoke(cli, ["fig2-table", "--csv", str(out / "fig2.csv")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "**test accuracy — dwp (photo) against each baseline" in text
    assert "**test ECE — dwp (notmnist) against each baseline" in text
    assert "| N | dwp (photo) | normal | dwp (notmnist) |" in text
    assert "| all |" in text and "wins" in text


def test_the_table_refuses_the_mnist_panels_csv(tmp_path):
    path = tmp_path / "fig2.csv"
    path.write_text(",".join(["run_id", "protocol", *fig2.COLUMNS]) + "\n")
    result = CliRunner().invoke(cli, ["fig2-table", "--csv", str(path)])
    assert result.exit_code == 2 and "not a natural Fig. 2 CSV" in result.output


def test_the_net_is_the_papers_bayesian_cifar_net():
    net = cifar_classifier()
    assert sum(p.numel() for p in net.parameters()) == 5_759_498  # table 3
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in convs] == [(3, 128, (7, 7)), (128, 256, (5, 5)),
                                                                              (256, 256, (5, 5))]
    assert [m.out_channels for m in cifar_classifier(0.25).modules() if isinstance(m, torch.nn.Conv2d)] == [32, 64, 64]


@pytest.mark.parametrize("method", ["normal", "deterministic", "mv-gaussian"])
def test_every_method_starts_from_the_same_dwp_samples_as_dwp(method, tiles, tmp_path):
    ctx = RunContext(torch.device("cpu"), tiles, PriorSet(dict(PHOTO)), tmp_path)
    train_idx, _ = tiles.split(2, seed=3)
    s = Fig2Settings(steps=0, width_scale=0.125)
    expected = cifar_classifier(0.125, num_classes=tiles.num_classes)
    init_from_prior(expected, {k: ctx.priors.dwp(k) for k in (7, 5)}, rescale="none",
                    generator=torch.Generator().manual_seed(3))
    with ctx.run_log("probe") as log:
        dwp_net, _ = fig2.train_vi("dwp", train_idx, s, 3, ctx, log)
        other, _ = fig2.train_vi(method, train_idx, s, 3, ctx, log)
    names = ("features.0.weight", "features.3.weight", "features.5.weight")
    for name in names:
        assert torch.equal(dwp_net.state_dict()[name], expected.state_dict()[name]), name
        assert torch.equal(other.state_dict()[name], dwp_net.state_dict()[name]), name
    layers = dict(bayes_layers(dwp_net))
    assert sorted(layers) == ["features.0", "features.3", "features.5"]
    assert [layer.weight.shape[-1] for layer in layers.values()] == [7, 5, 5]


def test_sizes_count_tiles_per_class_and_the_test_set_is_every_test_tile(tiles):
    train, test = tiles.split(3, seed=1)
    assert np.bincount(tiles.y[train]).tolist() == [3] * tiles.num_classes
    assert train.max() < tiles.pool and test.tolist() == list(range(tiles.pool, len(tiles.y)))
    assert tiles.split(ALL, seed=1)[0].tolist() == list(range(tiles.pool))
    with pytest.raises(ValueError, match="per class"):
        tiles.split(10_000, seed=1)
    x, _ = tiles.tensors(train[:2])
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32


def test_the_mnist_panel_keeps_its_columns_and_protocol():
    mnist = load_target("mnist-5k")
    assert fig2.columns(mnist) == fig2.COLUMNS and "prior" not in fig2.COLUMNS
    assert "width_scale" not in run_protocol(Fig2Settings())  # so the hashes of recorded runs still match
    base = protocol("fig2", Fig2Settings(), mnist, PriorSet())
    assert protocol("fig2", Fig2Settings(width_scale=0.5), mnist, PriorSet()) != base
