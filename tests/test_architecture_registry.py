"""The architecture registry: the runtime knows only what it ships or documents; training registers the rest."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dwp_hub import DWPrior, PriorFormatError
from dwp_hub.architectures import (ARCHITECTURES, Architecture, DenseDecoder, DenseEncoder, get_architecture,
                                   register_architecture)

ROOT = Path(__file__).resolve().parents[1]


def test_the_runtime_registers_exactly_its_shipped_and_documented_families():
    bundled = {json.loads(p.read_text())["architecture"] for p in (ROOT / "dwp_hub" / "bundled").glob("*/config.json")}
    documented = {f"dwp-{family}-{k}x{k}" for family in ("vae", "dense", "dense32") for k in (7, 5, 3)}
    assert bundled <= documented
    code = "import dwp_hub.architectures as a; print(' '.join(sorted(a.ARCHITECTURES)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert set(out.split()) == documented


def test_a_folder_of_an_unregistered_architecture_loads_once_training_registers_it(tmp_path):
    """Written in a process that registered dwp-shell-5x5; refused by a fresh one until it imports the training
    tree's registrations."""
    from training.research_architectures import ShellDecoder

    torch.manual_seed(0)
    prior = DWPrior.for_kernel_size(5, "test", architecture="dwp-shell-5x5")
    assert isinstance(prior.decoder, ShellDecoder)
    prior.decoder.radius.fill_(0.37)
    folder = prior.save_pretrained(tmp_path / "shell")
    load = (f"from dwp_hub import DWPrior; p = DWPrior.from_pretrained({str(folder)!r}); "
            "print(p.config.architecture, round(p.decoder.radius.item(), 2))")
    fresh = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, cwd=ROOT)
    assert fresh.returncode != 0
    message = fresh.stderr.strip().splitlines()[-1]
    assert "PriorFormatError" in message and "unknown architecture 'dwp-shell-5x5'" in message
    assert "register_architecture" in message and "training.research_architectures" in message
    registered = subprocess.run([sys.executable, "-c", "import training.research_architectures; " + load],
                                capture_output=True, text=True, cwd=ROOT)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.split() == ["dwp-shell-5x5", "0.37"]


def test_register_architecture_adds_a_name_and_refuses_to_redefine_one():
    arch = Architecture("test-dense8-3x3", 3, 2, lambda z: DenseEncoder(3, 8, z), lambda z: DenseDecoder(3, 8, z),
                        "a registry test")
    with pytest.raises(ValueError, match="unknown architecture 'test-dense8-3x3'.*register_architecture"):
        DWPrior.for_kernel_size(3, "test", architecture=arch.name)
    assert register_architecture(arch) is arch and register_architecture(arch) is arch  # again: a no-op
    try:
        assert get_architecture(arch.name) is arch
        prior = DWPrior.for_kernel_size(3, "test", architecture=arch.name)
        assert prior.decoder.features[0].out_features == 8
        twin = Architecture(arch.name, 3, 2, arch.encoder, arch.decoder, "another")
        with pytest.raises(ValueError, match="already registered"):
            register_architecture(twin)
        with pytest.raises(ValueError, match="already registered"):
            register_architecture(Architecture("dwp-vae-5x5", 5, 4, arch.encoder, arch.decoder, "a clash"))
        with pytest.raises(TypeError, match="takes an Architecture"):
            register_architecture("dwp-vae-5x5")
    finally:
        del ARCHITECTURES[arch.name]
    with pytest.raises(ValueError, match="unknown architecture"):
        get_architecture(["not", "a", "name"])


def test_a_config_naming_an_unknown_architecture_is_refused_with_the_folder_named(tmp_path):
    folder = DWPrior.for_kernel_size(3, "test").save_pretrained(tmp_path / "p")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architecture": "dwp-nowhere-3x3"}))
    with pytest.raises(PriorFormatError, match=r"config.json.*unknown architecture 'dwp-nowhere-3x3'; registered: "):
        DWPrior.from_pretrained(folder)
