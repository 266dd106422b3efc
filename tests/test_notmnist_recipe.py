"""The shipped notMNIST priors' recipe: glyph-variant source nets and the refit script's kernel files and settings."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from training.fonts import matplotlib_font_dir
from training.glyph_variants import check_variant, describe, main, noisy_labels, shifted, to_side, variant_images
from training.training_state import load_tensors

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training" / "rebuild_notmnist.sh"
BUNDLED = ROOT / "dwp_hub" / "bundled"


def test_to_side_scales_the_ink_to_the_long_side_and_centres_it() -> None:
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 2:8, 3:6] = 255  # 6 tall, 3 wide, top left
    out = to_side(image, 20)[0]
    ys, xs = np.nonzero(out > 127)
    assert ys.max() - ys.min() + 1 == 20 and 9 <= xs.max() - xs.min() + 1 <= 11
    assert abs((ys.min() + ys.max()) / 2 - 13.5) <= 1 and abs((xs.min() + xs.max()) / 2 - 13.5) <= 1


def test_shift_moves_ink_within_the_box_and_drops_what_leaves_it() -> None:
    data = torch.zeros(200, 1, 28, 28)
    data[:, 0, 13, 13] = 1.0
    out = shifted(data, 3, seed=0)
    assert torch.all(out.sum((1, 2, 3)) == 1)
    ys, xs = torch.nonzero(out[:, 0], as_tuple=True)[1:]
    assert ys.min() == 10 and ys.max() == 16 and xs.min() == 10 and xs.max() == 16
    edge = torch.zeros(200, 1, 28, 28)
    edge[:, 0, 0, 0] = 1.0
    assert 0 < shifted(edge, 3, seed=0).sum() < 200  # moved up or left: gone


def test_invert_and_label_noise_hit_about_their_share_and_are_fixed_by_the_seed() -> None:
    data = torch.zeros(2000, 1, 28, 28)
    inverted = variant_images(data, "invert25", seed=0)
    share = (inverted.flatten(1).mean(1) == 1).float().mean().item()
    assert 0.22 < share < 0.28 and torch.equal(inverted, variant_images(data, "invert25", seed=0))
    labels = torch.zeros(5000, dtype=torch.int64)
    changed = (noisy_labels(labels, 20, seed=0) != 0).float().mean().item()
    assert 0.2 * 0.9 * 0.85 < changed < 0.2 * 0.9 * 1.15  # a redrawn label is 0 again one time in ten


def test_variant_names_are_checked_and_described() -> None:
    assert describe("28") == "notmnist-style, glyphs rescaled to 28 px"
    assert describe("labels20") == "notmnist-style, 20% of training labels redrawn"
    for bad in ("shift", "29", "0", "invert-5", "bases"):
        with pytest.raises(ValueError, match="unknown glyph variant"):
            check_variant(bad)
    result = CliRunner().invoke(main, ["shrink5", "30", "0"])
    assert result.exit_code == 2 and "unknown glyph variant 'shrink5'" in result.output


def test_a_variant_net_writes_both_layers_kernels_and_its_record(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["invert50", "1", "2", "--out", str(out), "--data-dir", str(tmp_path / "data"),
            "--font-dir", str(matplotlib_font_dir())]
    threads = torch.get_num_threads()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == threads
    five, meta = load_tensors(out / "glyph-invert50-s2-5x5.safetensors")
    seven, _ = load_tensors(out / "glyph-invert50-s2-7x7.safetensors")
    assert five["train"].shape == (64 * 32, 5, 5) and five["heldout"].shape == (0, 5, 5)
    assert seven["train"].shape == (32, 7, 7)
    assert meta["variant"] == "invert50" and meta["seed"] == "2"
    record = json.loads((out / "glyph-nets.json").read_text())["glyph-invert50-s2"]
    assert record["dataset"] == "notmnist-style, 50% of renders inverted" and record["epochs"] == 1
    assert record["widths"] == [32, 64] and 0 <= record["test_accuracy"] <= 1


def _fits() -> list[dict[str, list[str]]]:
    """The dense_vae commands of the rebuild script, its variables expanded, each as {option: [values]}."""
    env: dict[str, str] = {}

    def expand(text: str) -> str:
        text = re.sub(r"\$\{1:-([^}]*)\}", r"\1", text)  # the script's default OUT
        return re.sub(r"\$(\w+)", lambda m: env[m.group(1)], text)

    fits = []
    for line in re.sub(r"\\\n\s*", "", SCRIPT.read_text()).splitlines():
        if line.startswith("eval "):
            words = shlex.split(expand(shlex.split(line)[1]))
            assert words[:3] == ["python", "-m", "training.experiments.dense_vae"]
            options: dict[str, list[str]] = {}
            for key, value in zip(words[3:], words[4:]):
                if key.startswith("--"):
                    options.setdefault(key, []).append(value)
            fits.append(options)
        elif re.match(r"[A-Z0-9]+=", line):
            for word in shlex.split(line):
                name, _, value = word.partition("=")
                env[name] = expand(value)
    return fits


def test_the_rebuild_script_fits_each_shipped_prior_to_its_own_kernels_with_its_settings() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    fits = _fits()
    assert len(fits) == 2
    for options in fits:
        name, files = options["--kernel-set"][0].split("=", 1)
        provenance = json.loads((BUNDLED / f"dwp--{name}" / "provenance.json").read_text())
        paths = [ROOT / f for f in files.split("+")]
        missing = [str(p) for p in paths + [ROOT / s for s in options["--sources"]] if not p.is_file()]
        assert not missing, f"{name}: the rebuild script names missing files {missing}"
        assert [p.name for p in paths] == [Path(f).name for f in provenance["kernel_set"].split("+")]
        shipped = shlex.split(provenance["fit_command"])
        for option in ("--steps", "--batch", "--augment", "--z-dim", "--architectures", "--lr-schedule", "--seed"):
            if option in shipped:
                assert options.get(option) == [shipped[shipped.index(option) + 1]], (name, option)
            else:
                assert option not in options, (name, option)
