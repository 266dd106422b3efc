"""Kernel sets: norm threshold from the histogram, split by source net; Gaussian yardsticks; resumable loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from click.testing import CliRunner, Result

from training import loops
from training.baselines import full_gaussian_loglik, isotropic_gaussian_loglik
from training.training_state import load_tensors, read_meta, save_tensors
from training.kernel_sets import build_kernel_set, choose_threshold, pooled_kernel_set


def lognormal_norms(rng, modes):
    return np.concatenate([10 ** rng.normal(center, 0.15, n) for center, n in modes])


def test_threshold_falls_in_the_trough_between_dead_and_used_kernels():
    rng = np.random.default_rng(0)
    norms = lognormal_norms(rng, [(-4.0, 2000), (-1.0, 6000)])
    t = choose_threshold(norms)
    assert 10 ** -3.4 < t.value < 10 ** -1.6
    assert t.method.startswith("trough")
    assert (norms >= t.value).sum() == 6000


def test_threshold_also_finds_a_majority_of_dead_kernels():
    rng = np.random.default_rng(1)
    norms = lognormal_norms(rng, [(-5.0, 7000), (-1.5, 3000)])
    t = choose_threshold(norms)
    assert t.method.startswith("trough") and (norms >= t.value).sum() == 3000


def test_threshold_keeps_the_highest_norm_mode_above_several_dead_modes():
    # As the paper's source protocol leaves them (L2 on the conv layers, 100 epochs): most kernels dead, in modes
    # spread over decades; the used ones ~9%, alone at the top. A dead mode's bumps are no trough to cut at.
    rng = np.random.default_rng(3)
    norms = lognormal_norms(rng, [(-6.0, 3000), (-4.5, 2000), (-3.0, 1200), (0.0, 600)])
    t = choose_threshold(norms)
    assert t.method.startswith("trough")
    assert (norms >= t.value).sum() == 600


def test_threshold_keeps_a_used_mode_with_a_shallow_bump():
    rng = np.random.default_rng(4)
    norms = lognormal_norms(rng, [(-5.0, 3000), (-1.3, 3000), (-0.8, 2000)])
    t = choose_threshold(norms)
    assert (norms >= t.value).sum() == 5000


def test_threshold_without_a_trough_drops_only_the_tiny_tail():
    rng = np.random.default_rng(2)
    norms = lognormal_norms(rng, [(-1.0, 5000)])
    t = choose_threshold(norms)
    assert t.method.startswith("no trough")
    assert math.isclose(t.value, 0.1 * float(np.median(norms)))


def test_kernel_set_holds_out_whole_source_nets(tmp_path):
    nets = []
    for i in range(3):
        w = torch.full((4, 2, 5, 5), float(i + 1))  # net i's kernels are constant i + 1
        w[0, 0] = 1e-6 * (i + 1)  # one dead kernel per net
        nets.append(save_tensors(tmp_path / f"net-{i}.safetensors", {"features.3.weight": w,
                                                                     "features.0.weight": torch.ones(4, 1, 7, 7)}, {}))
    meta = build_kernel_set(nets, ("features.3",), 5, heldout_nets=1, out=tmp_path / "k.safetensors",
                            hist_png=tmp_path / "hist.png", title="test")
    sets, saved = load_tensors(tmp_path / "k.safetensors")
    assert saved == read_meta(tmp_path / "k.safetensors") and saved["kernels_total"] == 24
    assert meta["kernels_kept"] == 21 and meta["train_kept"] == 14 and meta["heldout_kept"] == 7
    assert sets["train"].shape == (14, 5, 5) and sets["heldout"].shape == (7, 5, 5)
    assert torch.all(sets["heldout"] == 3.0) and set(sets["train"].unique().tolist()) == {1.0, 2.0}
    assert sets["heldout_net"].unique().tolist() == [2]
    assert meta["heldout_nets"] == ["net-2.safetensors"] and (tmp_path / "hist.png").stat().st_size > 0


def test_exported_net_files_pool_with_another_builds_heldout_part(tmp_path):
    from training.experiments import export_kernels

    nets = []
    for i in range(2):
        w = torch.full((8, 4, 5, 5), float(i + 1))  # net i's kernels are constant i + 1
        w[:, 0] = 1e-6  # a quarter of each net's kernels dead
        nets.append(save_tensors(tmp_path / f"net-{i}.safetensors", {"features.3.weight": w}, {}))
    build_set = tmp_path / "build.safetensors"
    save_tensors(build_set, {"train": torch.full((5, 5, 5), 9.0), "heldout": torch.full((6, 5, 5), 3.0)}, {})
    files = [tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "held.safetensors"]
    def export(*args: str) -> Result:
        return CliRunner().invoke(export_kernels.main, list(args))

    for net, out in zip(nets, files):
        assert export("--net", str(net), "--layer", "features.3", "--kernel-size", "5", "--out", str(out)).exit_code == 0
    assert export("--kernel-set", str(build_set), "--part", "heldout", "--as", "heldout", "--out",
                  str(files[2])).exit_code == 0
    parts, meta = load_tensors(files[0])
    assert parts["train"].shape == (32, 5, 5) and parts["heldout"].shape == (0, 5, 5)
    assert meta["net"] == str(nets[0]) and meta["layer"] == "features.3"
    train, held, record = pooled_kernel_set(files)
    assert record["kernels_in_file"] == 70 and record["kernels_kept"] == 54
    assert set(train.unique().tolist()) == {1.0, 2.0} and len(train) == 48
    assert torch.all(held == 3.0) and len(held) == 6
    before = files[0].read_bytes()
    taken = export("--net", str(nets[1]), "--layer", "features.3", "--kernel-size", "5", "--out", str(files[0]))
    assert taken.exit_code == 2 and "exists already" in taken.output
    with pytest.raises(FileExistsError):
        export_kernels.export(torch.ones(2, 5, 5), "train", files[0], {})
    assert files[0].read_bytes() == before
    wrong = export("--net", str(nets[0]), "--layer", "features.3", "--kernel-size", "7", "--out",
                   str(tmp_path / "c.safetensors"))
    assert wrong.exit_code == 2 and "not 7x7" in wrong.output
    assert not (tmp_path / "c.safetensors").exists()


def test_full_covariance_gaussian_matches_the_density_it_was_fitted_to():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(9, 9, generator=g, dtype=torch.float64) * 0.3
    cov = a @ a.T + 0.05 * torch.eye(9, dtype=torch.float64)
    true = torch.distributions.MultivariateNormal(torch.zeros(9, dtype=torch.float64), cov)
    train = true.sample((200_000,)).float().view(-1, 3, 3)
    test = true.sample((500,)).float().view(-1, 3, 3)
    full = full_gaussian_loglik(train, test)
    exact = true.log_prob(test.double().flatten(1)).float()
    assert torch.allclose(full.mean(), exact.mean(), atol=0.02)
    assert float(isotropic_gaussian_loglik(train, test).mean()) < float(full.mean()) - 1.0


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    acc = Accelerator(cpu=True)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 6, generator=g), torch.randint(0, 3, (200,), generator=g)

    def run(epochs: int, ckpt, init: torch.nn.Module) -> torch.nn.Module:
        model = torch.nn.Linear(6, 3)
        model.load_state_dict(init.state_dict())
        spec = loops.LoopSpec(epochs=epochs, batch_size=32, lr=1e-2, seed=3, desc="t")
        loops.run_training(acc, model, (x, y), spec, ckpt, loops.classifier_loss(1e-3), progress=False)
        return model

    torch.manual_seed(0)
    init = torch.nn.Linear(6, 3)
    straight = run(4, tmp_path / "a.safetensors", init)
    run(2, tmp_path / "b.safetensors", init)  # stops after 2 epochs, as if interrupted …
    assert read_meta(tmp_path / "b.safetensors")["epoch"] == 2
    # … and a 4-epoch run on the same checkpoint takes over at epoch 2. Its linear LR decay is over 4
    # epochs from the start, unlike the 2-epoch run's, so compare against a straight run that was
    # itself interrupted at the same point of the same 4-epoch schedule.
    partial = tmp_path / "c.safetensors"
    spec4 = loops.LoopSpec(epochs=4, batch_size=32, lr=1e-2, seed=3, desc="t")
    model = torch.nn.Linear(6, 3)
    model.load_state_dict(init.state_dict())
    loops.CHECKPOINT_EVERY_S, saved = 0.0, loops.CHECKPOINT_EVERY_S
    try:
        class Stop(Exception):
            pass

        calls = {"n": 0}
        base = loops.classifier_loss(1e-3)

        def loss_stopping_in_epoch_3(m, batch):
            calls["n"] += 1
            if calls["n"] > 2 * math.ceil(200 / 32):
                raise Stop
            return base(m, batch)

        try:
            loops.run_training(acc, model, (x, y), spec4, partial, loss_stopping_in_epoch_3, progress=False)
        except Stop:
            pass
    finally:
        loops.CHECKPOINT_EVERY_S = saved
    assert read_meta(partial)["epoch"] == 2
    resumed = torch.nn.Linear(6, 3)
    loops.run_training(acc, resumed, (x, y), spec4, partial, loops.classifier_loss(1e-3), progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_training_keeps_no_epoch_data_alive(tmp_path):
    """Each epoch's shuffled copy of the data is released: Accelerate keeps every loader it prepares, which
    grew one 7-net source build to 12 GB (killed) before run_training released them."""
    import gc
    import weakref

    acc = Accelerator(cpu=True)
    x, y = torch.randn(300, 6), torch.randint(0, 3, (300,))
    spec = loops.LoopSpec(epochs=5, batch_size=64, lr=1e-2, seed=0, desc="t")
    copies: list[weakref.ref] = []
    original = loops.TensorDataset.__init__

    def track(self, *tensors):
        original(self, *tensors)
        copies.extend(weakref.ref(t) for t in tensors)

    loops.TensorDataset.__init__ = track
    try:
        loops.run_training(acc, torch.nn.Linear(6, 3), (x, y), spec, tmp_path / "c.safetensors",
                           loops.classifier_loss(0.0), progress=False)
    finally:
        loops.TensorDataset.__init__ = original
    gc.collect()
    assert len(copies) == 10 and all(ref() is None for ref in copies)  # 5 epochs × (x, y), none alive


def test_training_flushes_subnormal_floats_to_zero_and_restores_them_after(tmp_path):
    """Weights that L2 decays towards 0 turn subnormal, which slowed a CPU source net 3×; training flushes them."""
    subnormal = torch.finfo(torch.float32).tiny / 4
    seen: list[float] = []

    def loss(model, batch):
        seen.append((torch.full((), subnormal) * 1.0).item())
        return loops.classifier_loss(0.0)(model, batch)

    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    spec = loops.LoopSpec(epochs=1, batch_size=32, lr=1e-2, seed=0, desc="t")
    loops.run_training(Accelerator(cpu=True), torch.nn.Linear(6, 3), (x, y), spec, tmp_path / "c.safetensors", loss,
                       progress=False)
    assert seen == [0.0, 0.0]
    assert (torch.full((), subnormal) * 1.0).item() > 0


def test_l2_on_features_penalises_the_conv_layers_biases_included_and_not_the_classifier():
    from training.source_nets import build_source_net

    net = build_source_net("fconv-mnist", (2, 3), 10, (1, 28, 28))
    batch = (torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    ce = loops.classifier_loss(0.0)(net, batch)
    conv = sum(p.pow(2).sum() for p in net.features.parameters())
    weights = sum(p.pow(2).sum() for p in net.parameters() if p.dim() > 1)
    assert torch.allclose(loops.classifier_loss(0.5, "features")(net, batch), ce + 0.5 * conv)
    assert torch.allclose(loops.classifier_loss(0.5)(net, batch), ce + 0.5 * weights)
    loops.classifier_loss(1.0, "features")(net, batch).backward()
    assert net.classifier.weight.grad.abs().sum() > 0  # from the cross-entropy only:
    ce_grad = torch.autograd.grad(loops.classifier_loss(0.0)(net, batch), net.classifier.weight)[0]
    assert torch.allclose(net.classifier.weight.grad, ce_grad)
    with pytest.raises(ValueError, match="features"):
        loops.classifier_loss(1.0, "features")(torch.nn.Linear(3, 2),
                                               (torch.zeros(1, 3), torch.zeros(1, dtype=torch.long)))
    with pytest.raises(ValueError, match="unknown L2 scope"):
        loops.classifier_loss(1.0, "all")


def test_threshold_reads_no_modes_into_a_few_kernels():
    rng = np.random.default_rng(5)
    norms = lognormal_norms(rng, [(-0.3, 16)])
    assert choose_threshold(norms).method.startswith("no trough")
