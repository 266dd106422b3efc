"""bayesianize on real timm models and on the convolutions it must refuse; ELBO and ensemble helpers."""

import copy
import re

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import StdConv2d, create_conv2d
from torch import nn

from dwp_hub import (BayesConv2d, DWPBound, DWPrior, LogUniformPrior, MultivariateGaussianPrior, NormalPrior,
                     PriorNotFoundError, bayes_mode, bayesianize, elbo_loss, evaluate, expected_calibration_error, kl,
                     parameter_groups, predict_proba)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def priors() -> dict[int, DWPrior]:
    torch.manual_seed(0)
    return {k: DWPrior.for_kernel_size(k, "test").eval() for k in (3, 5, 7)}


def _convs(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("arch, table, subsample", [
    ("resnet18", {7: 7, 3: "log-uniform"}, None),  # 7x7 stem with DWP, 3x3 log-uniform, 1x1 fallback N(0,1)
    ("convnext_atto", {7: 7}, None),  # 12 depthwise 7x7 layers with DWP, full bound
    ("efficientnet_b0", {5: 5, 3: 3}, 32),  # depthwise 5x5 and 3x3 with DWP, 32 kernels per layer and step
])
def test_timm_models(arch, table, subsample, priors):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    reference = copy.deepcopy(model).eval()
    convs = _convs(model)
    spec = {k: (priors[v] if isinstance(v, int) else v) for k, v in table.items()}
    report = bayesianize(model, spec, fallback="normal", subsample=subsample)
    assert [r.name for r in report.layers] == convs  # every conv, in module order
    assert len(report.converted) == len(convs), str(report)
    assert {n for n, m in model.named_modules() if isinstance(m, BayesConv2d)} == set(convs)
    for r in report.layers:
        k = r.kernel_size[0]
        expected = "normal (fallback)" if k not in table else (table[k] if isinstance(table[k], str) else "DWPrior")
        assert r.prior.startswith(expected), (r, expected)
    dwp_layers = [m for m in model.modules() if isinstance(m, BayesConv2d) and isinstance(m.prior, DWPBound)]
    assert dwp_layers and all(m.prior.aux.decoder is dwp_layers[0].prior.aux.decoder
                              for m in dwp_layers if m.kernel_size == dwp_layers[0].kernel_size)

    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))  # mean mode is the deterministic network, exactly

    model.train()
    loss = elbo_loss(model(x), torch.tensor([1, 7]), kl(model), dataset_size=1000)
    assert torch.isfinite(loss)
    loss.backward()
    groups = parameter_groups(model)
    for role in ("mean", "log_sigma2", "reverse"):
        assert groups[role] and all(p.grad is not None and torch.isfinite(p.grad).all() for p in groups[role]), role


def test_timm_dynamic_same_padding_and_weight_standardisation_are_handled():
    torch.manual_seed(0)
    same = create_conv2d(3, 8, 5, stride=2, padding="same")  # timm picks Conv2dSame (dynamic padding)
    assert type(same).__name__ == "Conv2dSame"
    model = nn.Sequential(same, nn.ReLU(), StdConv2d(8, 8, 3), nn.Conv2d(8, 4, 3, padding=1, padding_mode="reflect"))
    reference = copy.deepcopy(model)
    report = bayesianize(model, "normal")
    assert [r.converted for r in report.layers] == [True, False, True]
    assert "StdConv2d standardises its weight" in report.layers[1].reason
    assert isinstance(model[2], StdConv2d) and model[0].same_pad
    model.eval()
    for size in [(17, 17), (20, 15)]:
        x = torch.randn(2, 3, *size)
        assert torch.equal(model(x), reference(x))


class _Doubling(nn.Conv2d):
    def forward(self, x):
        return 2 * super().forward(x)


class _OnlyInit(nn.Conv2d):
    """A subclass that changes nothing about the computation: converted."""

    def reset_parameters(self):
        nn.init.zeros_(self.weight)


def test_unfaithful_convolutions_are_reported_not_changed(priors):
    weight_normed = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(4, 4, 3))
    hooked = nn.Conv2d(4, 4, 3)
    hooked.register_forward_hook(lambda m, i, o: o)
    model = nn.Sequential(_Doubling(4, 4, 3), weight_normed, hooked, nn.Conv2d(4, 4, (1, 7)), nn.Conv2d(4, 4, 5),
                          nn.ConvTranspose2d(4, 4, 3), _OnlyInit(4, 4, 3), nn.Conv2d(4, 4, 1))
    before = list(model)
    # A prior given for a kernel size it does not model is refused before anything changes (one grammar with
    # init_from_prior), rather than reported layer by layer.
    for key in ((1, 7), 5):
        with pytest.raises(ValueError, match=rf"priors\[{re.escape(repr(key))}\] is .*not a prior over"):
            bayesianize(model, {key: priors[7], 3: "normal"})
        assert list(model) == before
    report = bayesianize(model, {3: "normal"})
    reasons = {r.name: (r.converted, r.reason) for r in report.layers}
    assert "overrides forward" in reasons["0"][1]
    assert "parametrised" in reasons["1"][1]
    assert "hooks" in reasons["2"][1]
    assert reasons["3"] == (False, "no prior for 1x7 kernels and no fallback")
    assert reasons["4"] == (False, "no prior for 5x5 kernels and no fallback")
    assert "not an nn.Conv2d" in reasons["5"][1]
    assert reasons["6"] == (True, "")
    assert reasons["7"] == (False, "no prior for 1x1 kernels and no fallback")
    assert [m is b for m, b in zip(model, before)] == [True] * 6 + [False, True]
    assert "1 of 8 convolution layers converted" in str(report)


def test_ties_names_errors_and_options(tmp_path, priors):
    shared = nn.Conv2d(3, 3, 7, padding=3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    report = bayesianize(model, {7: priors[7]}, init_log_sigma2=-6.0)
    assert model[0] is model[2] and isinstance(model[0], BayesConv2d) and len(report.layers) == 1
    assert model[0].weight is shared.weight and torch.equal(model[0].log_sigma2, torch.full_like(shared.weight, -6.0))
    assert bayesianize(model, "normal").layers == []  # nothing left to convert; priors' own convs untouched

    folder = priors[5].save_pretrained(tmp_path / "p5")
    gauss = MultivariateGaussianPrior.fit(torch.randn(100, 3, 3))
    model = nn.Sequential(nn.Conv2d(1, 2, 5), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 1))
    report = bayesianize(model, {5: str(folder), 3: gauss}, fallback="log-uniform")
    assert [r.prior for r in report.layers] == [str(folder), "multivariate-gaussian", "log-uniform (fallback)"]
    assert isinstance(model[0].prior, DWPBound) and model[1].prior is gauss
    assert isinstance(model[2].prior, LogUniformPrior)
    assert torch.isfinite(kl(model))

    with pytest.raises(TypeError, match="a prior must be"):
        bayesianize(nn.Sequential(nn.Conv2d(1, 1, 3)), {3: 42})
    with pytest.raises(ValueError, match="wrap a lone conv"):
        bayesianize(nn.Conv2d(1, 1, 3), "normal")


def test_paper_mnist_net_with_the_bundled_priors_and_baselines():
    """Appendix H.2's Bayesian MNIST net with each of the paper's priors, by name as a user would write it."""
    torch.manual_seed(0)

    def net():
        return nn.Sequential(nn.Conv2d(1, 32, 7), nn.LeakyReLU(0.01), nn.MaxPool2d(2), nn.Conv2d(32, 128, 5),
                             nn.LeakyReLU(0.01), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1152, 10))

    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    gaussians = {k: MultivariateGaussianPrior.from_pretrained(f"dwp/notmnist-{k}x{k}") for k in (7, 5)}
    specs = ({7: "dwp/notmnist-7x7", 5: "dwp/notmnist-5x5"}, "notmnist", ["notmnist-7x7", "dwp/notmnist-5x5@" + "x"],
             gaussians, {7: "gaussian:dwp/notmnist-7x7", 5: "gaussian:notmnist-5x5"}, "normal", "log-uniform")
    for spec in specs:
        model = net()
        if "@" in str(spec):  # a revision asks for the Hub, which the tests keep offline
            with pytest.raises(PriorNotFoundError, match="offline"):
                bayesianize(model, spec)
            continue
        report = bayesianize(model, spec, subsample=16)
        assert len(report.converted) == 2 and report.layers[1].kernels == 4096
        loss = elbo_loss(model(x), y, kl(model), dataset_size=50)
        loss.backward()
        assert torch.isfinite(loss) and model[3].log_sigma2.grad.abs().sum() > 0
        if spec == "notmnist":  # the domain shorthand: only the priors used are recorded, each with its SHA-256
            assert [r.prior for r in report.converted] == ["dwp/notmnist-7x7", "dwp/notmnist-5x5"]
            assert set(report.priors) == {"dwp/notmnist-7x7", "dwp/notmnist-5x5"}
            assert all(len(r["sha256"]) == 64 and r["origin"] == "bundled" for r in report.priors.values())


def test_elbo_loss_scales_the_data_term_to_the_dataset():
    logits, y = torch.randn(4, 10), torch.tensor([0, 3, 3, 9])
    nll_sum = -F.log_softmax(logits, -1)[torch.arange(4), y].sum()
    torch.testing.assert_close(elbo_loss(logits, y, torch.tensor(5.0), dataset_size=100), nll_sum * 25 + 5)
    torch.testing.assert_close(elbo_loss(logits, y, torch.tensor(5.0), 100, kl_weight=0.5), nll_sum * 25 + 2.5)


def test_ensemble_prediction_and_metrics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    bayesianize(model, "normal", init_log_sigma2=-1.0)
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    model.train()
    torch.manual_seed(1)
    probs = predict_proba(model, x, num_samples=4)
    torch.manual_seed(1)
    model.eval()
    with torch.no_grad(), bayes_mode(model, "sample"):
        manual = torch.stack([F.softmax(model(x), -1) for _ in range(4)]).mean(0)
    torch.testing.assert_close(probs, manual)
    model.train()
    predict_proba(model, x, 2)
    assert model.training and model[0].mode is None
    with torch.no_grad():
        mean_probs = F.softmax(model.eval()(x), -1)
    torch.testing.assert_close(predict_proba(model, x, num_samples=0), mean_probs)

    metrics = evaluate(model, [(x[:3], y[:3]), (x[3:], y[3:])], num_samples=3)
    assert set(metrics) == {"accuracy", "nll", "ece"} and 0 <= metrics["ece"] <= 1


def test_expected_calibration_error_against_a_direct_loop():
    g = torch.Generator().manual_seed(0)
    probs = F.softmax(3 * torch.randn(500, 4, generator=g), -1)
    y = torch.randint(0, 4, (500,), generator=g)
    conf, pred = probs.max(-1)
    ece = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.float().mean() * ((pred[inside] == y[inside]).float().mean() - conf[inside].mean()).abs()
    assert expected_calibration_error(probs, y, bins=10) == pytest.approx(ece.item(), abs=1e-6)
    perfect = F.one_hot(y, 4).float()
    assert expected_calibration_error(perfect, y) == pytest.approx(0.0, abs=1e-7)


def test_closed_form_priors_are_shared_and_accept_any_shape():
    prior = NormalPrior(0.5)
    model = nn.Sequential(nn.Conv2d(2, 2, (1, 7)), nn.Conv2d(2, 2, 2))
    report = bayesianize(model, prior)
    assert all(r.converted for r in report.layers) and model[0].prior is model[1].prior is prior
