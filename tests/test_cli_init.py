"""`dwp-hub init` and `dwp-hub latent`, run as a user would; outputs checked by loading them with timm/torchvision."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
from huggingface_hub import ModelCard
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file, save_file

import dwp_hub
from dwp_hub import DWPrior
from dwp_hub.cli import main

EXE = str(Path(sys.executable).parent / "dwp-hub")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def mean_elbo(prior: DWPrior, kernels: torch.Tensor, n: int = 128) -> float:
    torch.manual_seed(0)
    with torch.no_grad():
        return prior.elbo(kernels.reshape(-1, prior.kernel_size, prior.kernel_size)[:n]).mean().item()


def test_init_resnet18_offline_on_a_fresh_install_loads_in_timm(tmp_path):
    """The README's init command, in a new process with an empty Hugging Face cache and no network."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    proc = subprocess.run([EXE, "init", "resnet18", "--prior", "dwp/notmnist-7x7", "--prior", "dwp/notmnist-3x3",
                           "--out", "out/"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "initialised 17 of 20 conv layers" in proc.stdout and "kept: no prior for 1x1 kernels" in proc.stdout
    out = tmp_path / "out"
    assert leftovers(out) == ["README.md", "config.json", "model.safetensors"]
    assert leftovers(tmp_path) == ["out"]  # no temporary folder left, nothing cached
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet18"
    manifest = json.loads((Path(dwp_hub.__file__).parent / "bundled" / "manifest.json").read_text())
    # Only the priors used, each pinned by the SHA-256 of its weights.
    assert config["dwp_init"]["priors"] == {
        name: {"prior": name, "origin": "bundled", "repo_id": name, "sha256": manifest[name]["model.safetensors"]}
        for name in ("dwp/notmnist-7x7", "dwp/notmnist-3x3")}
    cfg = config["pretrained_cfg"]
    assert cfg["tag"] == "dwp_init" and "hf_hub_id" not in cfg and "a1_in1k" not in json.dumps(cfg)
    assert "dwp/notmnist-3x3" in cfg["description"] and cfg["num_classes"] == 1000
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "timm" and "deep-weight-prior" in card.data.tags
    assert "timm.create_model('resnet18', pretrained=True" in card.text and "out/model.safetensors" in card.text

    loaded = timm.create_model("resnet18", pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(out / "model.safetensors"))).eval()
    saved = load_file(out / "model.safetensors")
    assert saved.keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), timm.create_model(f"local-dir:{out}", pretrained=True).eval()(x))

    torch.manual_seed(0)  # --seed 0 (default) seeds the model's own init: rebuild it to compare
    pristine = timm.create_model("resnet18").state_dict()
    layers = {r["name"]: r for r in config["dwp_init"]["layers"]}
    priors = {k: DWPrior.from_pretrained(f"dwp/notmnist-{k}x{k}") for k in (7, 3)}
    for key, value in saved.items():
        name = key.removesuffix(".weight")
        if name in layers:
            assert not torch.equal(value, pristine[key]), key
            raw = value / layers[name]["scale"]
            assert mean_elbo(priors[layers[name]["kernel_size"]], raw) > \
                priors[layers[name]["kernel_size"]].provenance["heldout_elbo"], key
        else:
            assert torch.equal(value, pristine[key]), key


def test_init_torchvision_model_with_num_classes(tmp_path):
    out = tmp_path / "mnv2"
    result = invoke("init", "torchvision:mobilenet_v2", "--prior", "notmnist", "--num-classes", "10",
                    "--seed", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "torchvision.models.get_model('mobilenet_v2', num_classes=10)" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "torchvision:mobilenet_v2" and config["model_args"] == {"num_classes": 10}
    model = torchvision.models.get_model("mobilenet_v2", num_classes=10)
    model.load_state_dict(load_file(out / "model.safetensors"))  # strict: every tensor present and shaped right
    torch.manual_seed(3)
    pristine = torchvision.models.get_model("mobilenet_v2", num_classes=10)
    changed = {r["name"] for r in config["dwp_init"]["layers"]}
    assert len(changed) == 18  # the stem and 17 depthwise 3x3 convs
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            same = torch.equal(module.weight, pristine.get_submodule(name).weight)
            assert same == (name not in changed), name


def test_rerun_replaces_an_earlier_output_atomically(tmp_path):
    out = tmp_path / "out"
    for seed in ("1", "2"):
        result = invoke("init", "mobilenetv3_small_100", "--prior", "notmnist", "--seed", seed, "--out", str(out))
        assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["dwp_init"]["seed"] == 2
    assert leftovers(tmp_path) == ["out"] and leftovers(out) == ["README.md", "config.json", "model.safetensors"]
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode


@pytest.mark.parametrize("args, message", [
    (["resnet19", "--prior", "dwp/notmnist-3x3"], "unknown timm model 'resnet19'; did you mean"),
    (["torchvision:resnet99", "--prior", "dwp/notmnist-3x3"], "unknown torchvision classification model"),
    (["torchvision:resnet18", "--prior", "dwp/notmnist-3x3", "--in-chans", "1"], "--in-chans needs a timm model"),
    (["resnet18", "--prior", "dwp/notmnist-5x5"],
     "no convolution of ResNet matches a prior: its kernel sizes are 1x1, 3x3, 7x7; the priors cover 5x5"),
    (["resnet18", "--prior", "dwp/no-such-prior"], "cannot load prior 'dwp/no-such-prior'"),
    (["resnet18", "--prior", "notmnist", "--rescale", "xavier"], "Invalid value for '--rescale'"),
    (["resnet18", "--prior", "notmnist", "--domain", "notmnist"], "Invalid value for --domain: give --prior or"),
    (["resnet18", "--domain", "no-such-domain"], "Invalid value for --domain: no prior of domain 'no-such-domain'"),
])
def test_user_errors_are_one_line_and_write_nothing(tmp_path, args, message):
    result = invoke("init", *args, "--out", str(tmp_path / "out"))
    assert result.exit_code != 0
    assert message in result.output
    if "Invalid value" not in message:  # click's own usage errors come with a usage line
        assert result.output.strip().count("\n") == 0 and result.output.startswith("Error: ")
    assert leftovers(tmp_path) == []


def test_unwritable_or_occupied_output_is_refused_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("x")
    result = invoke("init", "mobilenetv3_small_100", "--prior", "notmnist", "--out", str(tmp_path / "a-file" / "out"))
    assert result.exit_code == 1 and "cannot write to" in result.output and result.output.count("\n") == 1
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    result = invoke("init", "mobilenetv3_small_100", "--prior", "notmnist", "--out", str(occupied))
    assert result.exit_code == 1 and "holds other files (notes.txt)" in result.output
    assert leftovers(occupied) == ["notes.txt"] and leftovers(tmp_path) == ["a-file", "mine"]


@pytest.mark.parametrize("name", ["dwp/notmnist-7x7", "dwp/notmnist-5x5"])  # z_dim 2, and 4 (PCA plane)
def test_latent_plots_heldout_kernels_of_a_bundled_prior(tmp_path, name):
    out = tmp_path / "latent.png"
    result = invoke("latent", name, "-o", str(out), "--grid", "6")
    assert result.exit_code == 0, result.output
    assert "held-out kernels, 6x6 decoded grid" in result.output
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > img.size[1] > 400
    assert len(img.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # dots, tiles and text, not a blank canvas


def test_latent_needs_heldout_kernels_from_the_folder_or_kernels_option(tmp_path):
    folder = DWPrior.for_kernel_size(3, "test").save_pretrained(tmp_path / "bare-3x3")
    result = invoke("latent", str(folder), "-o", str(tmp_path / "a.png"))
    assert result.exit_code == 1 and "pass --kernels FILE.safetensors" in result.output
    kernels = tmp_path / "k.safetensors"
    save_file({"heldout": torch.randn(300, 3, 3) * 0.1}, kernels)
    result = invoke("latent", str(folder), "-o", str(tmp_path / "a.png"), "--kernels", str(kernels))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.png").is_file()
    save_file({"heldout": torch.randn(300, 5, 5)}, kernels)
    result = invoke("latent", str(folder), "-o", str(tmp_path / "b.png"), "--kernels", str(kernels))
    assert result.exit_code == 1 and "expected (n, 3, 3)" in result.output
    assert not (tmp_path / "b.png").exists()


@pytest.mark.parametrize("extra, domain", [((), "photo"), (("--in-chans", "1"), "notmnist"),
                                           (("--domain", "notmnist"), "notmnist")])
def test_init_without_prior_uses_the_domain_of_the_input_channels(tmp_path, extra, domain):
    result = invoke("init", "resnet10t", "--out", str(tmp_path / "out"), *extra)
    assert result.exit_code == 0, result.output
    used = json.loads((tmp_path / "out" / "config.json").read_text())["dwp_init"]["priors"]
    assert used and all(name.startswith(f"dwp/{domain}-") for name in used)
    assert f"dwp/{domain}-3x3" in used  # resnet10t is built from 3x3 convs
