"""bayesianize: turn the convolutions of any torch/timm model into BayesConv2d layers with priors.

Walks the model, finds every ``nn.Conv2d`` by isinstance (so subclasses are caught), and replaces those
it can convert faithfully by a ``BayesConv2d`` whose mean is the conv's own weight Parameter. Layers it
cannot convert faithfully are left untouched and named in the report with the reason; nothing is
changed silently.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .bayes_conv import BayesConv2d
from .dwp_bound import DWPBound
from .init import init_from_prior
from .prior import DWPrior
from .prior_spec import PriorResolver, Priors, PriorSpec, ResolvedPrior
from .timm_convs import SAME_PAD_CLASSES, WEIGHT_STANDARDISED_CLASSES
from .weight_priors import SubsampledKL, WeightPrior


@dataclass
class LayerReport:
    """What bayesianize did with one convolution."""

    name: str
    kernel_size: tuple[int, int]
    kernels: int  # out_channels * in_channels / groups
    prior: str | None  # the prior it got (or would have got), None if none applies
    converted: bool
    reason: str = ""  # why it was not converted


@dataclass
class BayesianizeReport:
    """Per-layer outcome of bayesianize, in module order; ``str(report)`` is a readable table."""

    layers: list[LayerReport] = field(default_factory=list)
    priors: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> revision / SHA-256 of priors used

    @property
    def converted(self) -> list[LayerReport]:
        return [r for r in self.layers if r.converted]

    @property
    def skipped(self) -> list[LayerReport]:
        return [r for r in self.layers if not r.converted]

    def __str__(self) -> str:
        rows = [f"{'layer':40} {'kernel':>7} {'kernels':>9}  {'prior':28} status"]
        for r in self.layers:
            k = f"{r.kernel_size[0]}x{r.kernel_size[1]}"
            status = "converted" if r.converted else f"kept: {r.reason}"
            rows.append(f"{r.name:40} {k:>7} {r.kernels:>9,}  {(r.prior or '-'):28} {status}")
        n = sum(r.kernels for r in self.converted)
        rows.append(f"{len(self.converted)} of {len(self.layers)} convolution layers converted ({n:,} kernels)")
        return "\n".join(rows)


def _is_timm_same_pad(cls: type) -> bool:
    return cls.__name__ in SAME_PAD_CLASSES and cls.__module__.startswith("timm.")


def _unfaithful_reason(conv: nn.Conv2d) -> str | None:
    """Why replacing `conv` by a BayesConv2d would change what it computes, or None if it would not."""
    cls = type(conv)
    if cls.__name__ in WEIGHT_STANDARDISED_CLASSES:
        return (f"{cls.__name__} standardises its weight before the convolution, so a Gaussian posterior and a "
                f"kernel prior on the stored weight would not describe the kernels it applies")
    if parametrize.is_parametrized(conv):
        return "its weight is parametrised (torch.nn.utils.parametrize); the kernels applied are computed"
    if conv._forward_pre_hooks or conv._forward_hooks or conv._backward_hooks or conv._backward_pre_hooks:
        return "it has hooks (e.g. old-style weight_norm, feature taps) that replacing the module would drop"
    if not isinstance(conv.weight, nn.Parameter):
        return "its weight is not an nn.Parameter"
    if _is_timm_same_pad(cls):
        return None
    if cls.forward is not nn.Conv2d.forward or cls._conv_forward is not nn.Conv2d._conv_forward:
        return f"{cls.__module__}.{cls.__name__} overrides forward; its effect on the weight is unknown"
    return None


def _conv_like_reason(module: nn.Module) -> str | None:
    """For modules that are not nn.Conv2d but hold a 4-D weight (ConvTranspose2d, timm CondConv2d, ...)."""
    w = module._parameters.get("weight")
    if isinstance(w, torch.Tensor) and w.dim() == 4:
        return f"{type(module).__name__} is not an nn.Conv2d; only nn.Conv2d and its subclasses are converted"
    return None


def _walk(module: nn.Module, prefix: str = ""):
    """(name, parent, attribute, child) for every submodule, not descending into Bayesian layers or priors."""
    for attr, child in module._modules.items():
        if child is None:
            continue
        name = f"{prefix}.{attr}" if prefix else attr
        yield name, module, attr, child
        if not isinstance(child, (BayesConv2d, WeightPrior, DWPrior)):
            yield from _walk(child, name)


def _check_subsample(prior: WeightPrior | DWPrior, subsample: int | None) -> None:
    """Refuse a prior that `subsample` cannot apply to, before bayesianize changes anything."""
    if subsample is None or isinstance(prior, DWPrior):
        return
    if isinstance(prior, (DWPBound, SubsampledKL)):
        if prior.subsample != subsample:
            raise ValueError(f"{type(prior).__name__} brings its own subsample={prior.subsample}, and bayesianize "
                             f"was given subsample={subsample}: pass the bare prior, or the same subsample")
        return
    SubsampledKL(prior, subsample)  # raises for a prior whose KL is not a sum over kernels


class _LayerPriors:
    """The prior module each layer gets: a closed-form prior (shared; with `subsample`, wrapped per layer in a
    SubsampledKL around the shared one), or a DWPBound with its own reverse model.

    Each deep weight prior is copied and frozen once per device and dtype; the copy (decoder φ) is shared.
    """

    def __init__(self, subsample: int | None, train_reverse: bool, stored_gradients: str | None,
                 refresh_prob: float, samples: int) -> None:
        self.subsample = subsample
        self.train_reverse = train_reverse
        self.stored = dict(stored_gradients=stored_gradients, refresh_prob=refresh_prob, samples=samples)
        self._placed: dict[tuple[int, torch.device, torch.dtype], WeightPrior | DWPrior] = {}

    def for_layer(self, obj: WeightPrior | DWPrior, weight: torch.Tensor) -> WeightPrior:
        key = (id(obj), weight.device, weight.dtype)
        if key not in self._placed:
            if isinstance(obj, DWPrior):  # one frozen copy per prior, shared by all its layers
                placed = copy.deepcopy(obj).requires_grad_(False).eval()
                placed.source = obj.source
            else:
                placed = obj
            self._placed[key] = placed.to(device=weight.device, dtype=weight.dtype)
        placed = self._placed[key]
        if isinstance(placed, DWPrior):
            return DWPBound(placed, subsample=self.subsample, train_reverse=self.train_reverse, **self.stored)
        if self.subsample is None or isinstance(placed, (DWPBound, SubsampledKL)):
            return placed
        return SubsampledKL(placed, self.subsample)


def _lookup(table: dict, kh: int, kw: int) -> ResolvedPrior | None:
    return table.get(kh if kh == kw else (kh, kw), table.get(None))


def bayesianize(model: nn.Module, priors: Priors | None = None, fallback: PriorSpec | None = None, *,
                init_log_sigma2: float = -10.0, subsample: int | None = None, train_reverse: bool = True,
                stored_gradients: str | None = None, refresh_prob: float = 1.0, samples: int = 1,
                init_from: Priors | None = None, generator: torch.Generator | None = None) -> BayesianizeReport:
    """Replace, in place, the convolutions of `model` by BayesConv2d layers with priors; return a report.

    priors: any form of ``dwp_hub.prior_spec``, as for ``init_from_prior``: a DWP name, ``NAME@REV``, folder,
        ``DWPrior`` or domain shorthand (``"notmnist"``); ``"normal"``, ``"log-uniform"`` or
        ``"gaussian:NAME"`` (appendix C) or a ``WeightPrior``; a list of these; or ``{kernel_size: spec}``
        (keys ``k`` or ``(kh, kw)``). One prior per kernel size; "normal" and "log-uniform" cover every size.
    fallback: the prior of convs whose kernel size has no prior in `priors` (a shape-agnostic one such as
        "normal" or "log-uniform"); None leaves them deterministic.
    init_log_sigma2: initial log σ² of every converted weight (see BayesConv2d on why it matters).
    subsample: kernels per layer on which the KL is estimated each step (None: all, exact); unbiased. It applies
        to every prior: the DWP bound (eq. 7) and the closed-form KLs alike keep the entropy of q exact and take
        the rest on that many random kernels, scaled up (``SubsampledKL``). A ``WeightPrior`` whose KL is not a
        sum over kernels (``per_kernel`` False) is refused with a subsample.
    train_reverse: train each DWP layer's reverse model r(z|w; ψ_l) (True, paper) or keep the prior's encoder.
    stored_gradients, refresh_prob, samples: the DWP bound's stored-gradient estimator ("saga" or "sag", see
        ``DWPBound``); with it, `subsample` is the size of the DWP layers' refreshed subset (None: ⌈√kernels⌉
        per layer); closed-form priors still use the plain subsampled estimate.
    init_from: deep weight priors to sample the means μ from first (``init_from_prior`` with ``rescale="none"``,
        drawn with `generator`): the paper's protocol, used for every prior in its Fig. 2, baselines included.
        None keeps the model's own weights as μ.

    Each DWP prior is copied and frozen once; its copy (decoder φ) is shared by all layers using it, and
    each such layer gets its own reverse model. Layers that cannot be converted faithfully (weight-
    standardised convs, parametrised or hooked convs, unknown forward overrides, a kernel shape the prior
    does not model) are kept as they are and listed in ``report.skipped`` with the reason.
    Note: a model holding several DWP layers has the shared decoder under each layer's key in
    ``state_dict()``; save it with ``safetensors.torch.save_model``, which stores shared tensors once.
    """
    if isinstance(model, nn.Conv2d):
        raise ValueError("bayesianize replaces convolutions inside a model; wrap a lone conv in nn.Sequential")
    if subsample is not None and (not isinstance(subsample, int) or subsample < 1):
        raise ValueError(f"subsample must be a positive integer or None, got {subsample!r}")
    resolver = PriorResolver()
    table = resolver.resolve(priors) if priors is not None else {}
    fallback_prior = resolver.resolve(fallback).get(None) if fallback is not None else None
    if fallback is not None and fallback_prior is None:
        raise ValueError(f"fallback {fallback!r} is a prior over one kernel size; the fallback must apply to any "
                         "kernel size (e.g. 'normal' or 'log-uniform')")
    for entry in [*table.values(), fallback_prior]:
        if entry is not None:
            _check_subsample(entry.prior, subsample)
    layer_priors = _LayerPriors(subsample, train_reverse, stored_gradients, refresh_prob, samples)
    if init_from is not None:
        init_from_prior(model, init_from, rescale="none", generator=generator, progress=False)
    report = BayesianizeReport()
    replaced: dict[int, BayesConv2d] = {}
    seen: set[int] = set()

    for name, parent, attr, child in list(_walk(model)):
        if id(child) in replaced:  # the same conv reached through a second path: keep the tie
            setattr(parent, attr, replaced[id(child)])
            continue
        if id(child) in seen:
            continue
        seen.add(id(child))
        if isinstance(child, BayesConv2d):
            continue
        if not isinstance(child, nn.Conv2d):
            reason = _conv_like_reason(child)
            if reason:
                k = tuple(child.weight.shape[-2:])
                report.layers.append(LayerReport(name, k, child.weight.shape[0] * child.weight.shape[1], None, False, reason))
            continue
        kh, kw = child.kernel_size
        kernels = child.out_channels * (child.in_channels // child.groups)
        entry, how = _lookup(table, kh, kw), ""
        if entry is None and fallback_prior is not None:
            entry, how = fallback_prior, " (fallback)"
        if entry is None:
            report.layers.append(LayerReport(name, (kh, kw), kernels, None, False,
                                             f"no prior for {kh}x{kw} kernels and no fallback"))
            continue
        label = entry.label + how
        reason = _unfaithful_reason(child)
        if reason is not None:
            report.layers.append(LayerReport(name, (kh, kw), kernels, label, False, reason))
            continue
        same_pad = _is_timm_same_pad(type(child))
        layer = BayesConv2d.from_conv(child, layer_priors.for_layer(entry.prior, child.weight), init_log_sigma2,
                                      same_pad=same_pad)
        setattr(parent, attr, layer)
        replaced[id(child)] = layer
        report.layers.append(LayerReport(name, (kh, kw), kernels, label, True))
        report.priors.setdefault(entry.label, entry.record())
    return report
