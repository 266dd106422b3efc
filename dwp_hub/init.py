"""init_from_prior: initialise a network's convolution kernels with samples of deep weight priors (paper §4.2–4.3).

Every ``nn.Conv2d`` (subclasses included: timm's Conv2dSame and StdConv2d, depthwise and grouped convs) whose
k×k kernel size has a prior gets one independent z ~ N(0, I) per kernel and the decoder mean μ_φ(z) as that
kernel, as the paper does. Other layers keep their weights.

A prior carries the weight scale of the networks it was learnt from (the reference 7x7 prior's samples have ~4x
the norm of Xavier kernels), which need not suit the network being initialised, hence ``rescale``:

- ``"match"`` (default): multiply each layer by one factor so that its root-mean-square equals the one the
  model's own init gave it. The prior decides the kernels' shapes, the architecture keeps the scale its
  authors chose and that its normalisation, residual branches and learning-rate defaults were tuned for.
  The default because it is the only mode that cannot make a working architecture's activations explode or
  vanish, and for a prior learnt on the same architecture (the paper's setting) it is close to ``"none"``; the
  paper's Fig. 4 (training/results) ties it with the others on the MNIST CNN and puts it ahead on the conv VAE.
- ``"fan_in"``: root-mean-square sqrt(2 / fan_in), Kaiming's ReLU scale (He et al. 2015).
- ``"none"``: the raw decoder means (the paper's setting, where prior and network share an architecture).

Weight-standardised convolutions (timm StdConv2d, ScaledStdConv2d and their "Same" variants) re-normalise
each filter in their forward pass, so for them only the kernels' shapes matter; the report notes it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from .decoder_mean import DecoderMean
from .prior import DWPrior
from .prior_spec import Priors, ResolvedPrior, resolve_priors
from .progress import progress_bar
from .timm_convs import WEIGHT_STANDARDISED_CLASSES

RESCALE_MODES = ("match", "fan_in", "none")
DEFAULT_RESCALE = "match"
# Kernels decoded per decoder call: large enough for efficient matrix products, small enough that the
# decoder's buffers stay small (3 x 4096 x 144 floats, ~7 MB, for the 3x3 decoder).
DEFAULT_CHUNK_SIZE = 4096
KAIMING_GAIN = math.sqrt(2.0)  # ReLU gain of Kaiming initialisation


@dataclass(frozen=True)
class LayerInit:
    """One initialised convolution: which prior, how many kernels, which factor was applied."""

    name: str
    conv: str  # class name of the module
    kernel_size: int
    prior: str
    kernels: int
    scale: float  # factor applied to the raw decoder means (1.0 for rescale="none")
    rms_before: float  # root-mean-square of the weight the model's own init gave
    rms_after: float
    note: str = ""


@dataclass(frozen=True)
class SkippedConv:
    """A convolution left as it was, and why."""

    name: str
    kernel_size: tuple[int, int]
    kernels: int
    reason: str


@dataclass
class InitReport:
    """What init_from_prior did, layer by layer in module order; ``str(report)`` is a table and a summary."""

    rescale: str
    rows: list[LayerInit | SkippedConv] = field(default_factory=list)  # every conv, in module order
    priors: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> revision / SHA-256, priors used

    @property
    def layers(self) -> list[LayerInit]:
        return [r for r in self.rows if isinstance(r, LayerInit)]

    @property
    def skipped(self) -> list[SkippedConv]:
        return [r for r in self.rows if isinstance(r, SkippedConv)]

    @property
    def kernels(self) -> int:
        return sum(r.kernels for r in self.layers)

    def table(self) -> str:
        """One row per conv layer: its prior and scale, or why it kept its own init."""
        lines = [f"{'layer':40} {'conv':10} {'kernel':>6} {'kernels':>9}  {'prior':20} {'rms init':>8} "
                 f"{'rms new':>8} {'scale':>7}  note"]
        for r in self.rows:
            if isinstance(r, LayerInit):
                lines.append(f"{r.name:40} {r.conv:10} {r.kernel_size:>4}x{r.kernel_size:<1} {r.kernels:>9,}  "
                             f"{r.prior:20} {r.rms_before:>8.4f} {r.rms_after:>8.4f} {r.scale:>7.3f}  {r.note}")
            else:
                k = f"{r.kernel_size[0]}x{r.kernel_size[1]}"
                lines.append(f"{r.name:40} {'':10} {k:>6} {r.kernels:>9,}  {'-':20} {'':>8} {'':>8} {'':>7}  "
                             f"kept: {r.reason}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: layers and kernels initialised, from which priors, with which rescale."""
        by_prior: dict[str, int] = {}
        for r in self.layers:
            by_prior[r.prior] = by_prior.get(r.prior, 0) + r.kernels
        used = ", ".join(f"{n:,} from {p}" for p, n in by_prior.items())
        total = len(self.layers) + len(self.skipped)
        return (f"initialised {len(self.layers)} of {total} conv layers, {self.kernels:,} kernels ({used}), "
                f"rescale={self.rescale}; {len(self.skipped)} kept their own init")

    def to_dict(self) -> dict:
        """JSON-ready record of the init (what `dwp-hub init` stores under ``dwp_init`` in config.json)."""
        return {"rescale": self.rescale, "priors": self.priors, "layers": [asdict(r) for r in self.layers],
                "skipped": [asdict(r) for r in self.skipped]}

    def __str__(self) -> str:
        return f"{self.table()}\n{self.summary()}"


def dwp_table(priors: Priors) -> dict[int, ResolvedPrior]:
    """Kernel size -> deep weight prior, from any form of ``dwp_hub.prior_spec``; baselines are refused here."""
    table = resolve_priors(priors)
    for entry in table.values():
        if not isinstance(entry.prior, DWPrior):
            raise ValueError(f"{entry.label!r} is a closed-form VI prior with no kernels to sample; "
                             "init_from_prior needs deep weight priors (a name, folder, DWPrior or domain)")
    return table


def _rms(w: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(w, dtype=torch.float32)) / math.sqrt(w.numel())


def _scale(rescale: str, rms_before: float, rms_raw: float, fan_in: int) -> tuple[float, str]:
    """The factor for a layer's raw samples, and a note when it is not the one asked for."""
    if rescale == "none":
        return 1.0, ""
    if rms_raw == 0.0:
        return 1.0, "the prior's samples are all zero: not rescaled"
    if rescale == "match":
        if rms_before > 0.0:
            return rms_before / rms_raw, ""
        return KAIMING_GAIN / math.sqrt(fan_in) / rms_raw, "own init is all zeros: fan_in scale used"
    return KAIMING_GAIN / math.sqrt(fan_in) / rms_raw, ""


def _skip_reason(conv: nn.Conv2d, table: Mapping[int, ResolvedPrior]) -> str | None:
    kh, kw = conv.kernel_size
    if kh != kw or kh not in table:
        return f"no prior for {kh}x{kw} kernels"
    if isinstance(conv.weight, nn.parameter.UninitializedParameter):
        return "its weight is not materialised yet (lazy module): run a forward pass first"
    if parametrize.is_parametrized(conv, "weight"):
        return "its weight is parametrised (torch.nn.utils.parametrize); the kernels applied are computed"
    return None


@torch.no_grad()
def _init_layer(name: str, conv: nn.Conv2d, prior: DWPrior, decoder_mean: DecoderMean, label: str, rescale: str,
                generator: torch.Generator | None, chunk_size: int, noise: bool) -> LayerInit:
    w = conv.weight
    k = prior.kernel_size
    n = w.shape[0] * w.shape[1]
    rms_before = _rms(w)
    target = w if w.is_contiguous() else torch.empty(w.shape, dtype=w.dtype, device=w.device)
    flat = target.view(n, k, k)
    # As DWPrior.sample does: all of the layer's z first (z_dim/k² of the layer's own size), so the result
    # does not depend on chunk_size; then decode and write a chunk at a time, so the decoder's activations
    # never exceed one chunk's.
    ref = next(prior.parameters())
    z = torch.randn(n, prior.z_dim, generator=generator, dtype=ref.dtype, device=ref.device)
    eps = torch.empty(n, k, k, dtype=ref.dtype, device=ref.device).normal_(generator=generator) if noise else None
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        if noise:  # p(w|z): the decoder's mean plus its noise
            mu, var = prior.decode(z[start:stop])
            flat[start:stop] = mu + var.sqrt() * eps[start:stop]
        else:
            decoder_mean(z[start:stop], out=flat[start:stop])
    scale, note = _scale(rescale, rms_before, _rms(target), fan_in=w[0].numel())
    if scale != 1.0:
        target.mul_(scale)
    if target is not w:
        w.copy_(target)
    cls = type(conv).__name__
    if cls in WEIGHT_STANDARDISED_CLASSES:
        note = "; ".join(filter(None, [note, f"{cls} standardises each filter in forward: only kernel shapes count"]))
    elif conv.groups > 1:
        note = note or ("depthwise" if conv.groups == conv.in_channels else f"groups={conv.groups}")
    return LayerInit(name, cls, k, label, n, scale, rms_before, _rms(w), note)


def init_from_prior(model: nn.Module, priors: Priors, rescale: str = DEFAULT_RESCALE,
                    generator: torch.Generator | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                    progress: bool | None = None, noise: bool = False) -> InitReport:
    """Replace, in place, the kernels of every conv whose kernel size has a prior by samples of it; return a report.

    priors: any form of ``dwp_hub.prior_spec`` that names deep weight priors: a name, ``NAME@REV``, folder
        or DWPrior; a domain shorthand (``"notmnist"``: every bundled or cached ``dwp/notmnist-{k}x{k}``);
        a list of these; or a mapping ``{k: prior}``. One prior per kernel size.
    rescale: "match" (default), "fan_in" or "none"; see the module docstring for what each does and why.
    generator: torch.Generator on the priors' device for reproducible draws (None: torch's global RNG).
        Layers are drawn in module order, so the same seed gives the same weights.
    chunk_size: kernels decoded and written at a time; it bounds the decoder's extra memory and does not
        change the result (all of a layer's z are drawn before decoding, as in DWPrior.sample).
    progress: a tqdm bar over the kernels decoded (None: on a terminal only).
    noise: add the decoder's noise to its mean, i.e. draw each kernel from p(w|z) rather than take μ_φ(z). On
        the bundled 7x7 prior this doubles the mean kernel norm (0.22 → 0.42, the norm of its own source
        kernels): decoder means of a small latent are averages.

    Raises ValueError if no convolution of `model` has a kernel size with a prior.
    """
    if rescale not in RESCALE_MODES:
        raise ValueError(f"rescale must be one of {', '.join(RESCALE_MODES)}; got {rescale!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    table = dwp_table(priors)
    report = InitReport(rescale)
    decoder_means = {k: DecoderMean(entry.prior.decoder) for k, entry in table.items()}
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    todo = sum(m.out_channels * (m.in_channels // m.groups) for _, m in convs if _skip_reason(m, table) is None)
    with progress_bar(todo, "init_from_prior", progress, unit="kernel") as bar:
        for name, module in convs:
            kernels = module.out_channels * (module.in_channels // module.groups)
            reason = _skip_reason(module, table)
            if reason is not None:
                report.rows.append(SkippedConv(name, tuple(module.kernel_size), kernels, reason))
                continue
            entry = table[module.kernel_size[0]]
            report.rows.append(_init_layer(name, module, entry.prior, decoder_means[module.kernel_size[0]],
                                           entry.label, rescale, generator, chunk_size, noise))
            report.priors.setdefault(entry.label, entry.record())
            bar.update(kernels)
    if not report.layers:
        sizes = sorted({f"{s.kernel_size[0]}x{s.kernel_size[1]}" for s in report.skipped}) or ["none"]
        have = ", ".join(f"{k}x{k}" for k in sorted(table))
        raise ValueError(f"no convolution of {type(model).__name__} matches a prior: its kernel sizes are "
                         f"{', '.join(sizes)}; the priors cover {have}")
    return report
