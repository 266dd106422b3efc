"""The protocol of every experiment, in one place: the full setting and the ``--quick`` smoke setting.

Everything a number on the results page depends on is a field here. Each CSV row carries a hash of how its
run was done (``protocol``: the setting without its grid fields, the target data and the prior names), so
rows made under different settings are never mixed up, and ``OUT/settings-<experiment>.json`` records
the full setting next to the CSV. Any field can be changed from the command line (``--set``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from fractions import Fraction


# Metadata of a field added after runs were recorded: at its default it is left out of the protocol hash, so those
# runs' hash stays what it was (run_protocol).
ADDED_LATER = {"omit_at_default": True}


@dataclass(frozen=True)
class Fig2Settings:
    """Variational inference with little data (Fig. 2, appendix C), identical for every prior."""

    sizes: tuple[int, ...] = (50, 100, 200, 500, 1000)
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = ("dwp", "normal", "log-uniform", "mv-gaussian", "deterministic")
    steps: int = 2000
    init: str = "prior"  # μ of both convs: "prior" = samples of the 7x7/5x5 DWPs (decoder means, rescale none), every
    # method, as the paper's code; "prior-noise" = with the decoder's noise; "xavier" = Glorot-uniform (variants)
    batch_size: int = 32  # min(N, batch_size) images per step
    lr: float = 1e-3  # μ, biases, the linear layer and the DWP reverse models; decays linearly to 0
    lr_log_sigma2: float = 1e-2  # log σ²: a log-scale parameter moves 10× faster; decays linearly to 0
    init_log_sigma2: float = -10.0  # σ = 0.0067: the posterior starts nearly deterministic
    kl_subsample: int | None = 128  # KL cross term on this many kernels per layer per step, every prior; None: exact
    # How DWP uses those kernels: "subsample" (scaled by kernels/subset, as every prior) or "sag" / "saga" (every
    # kernel gets its stored gradient each step and the subset refreshes its own; dwp_hub/stored_gradients.py).
    dwp_estimator: str = field(default="subsample", metadata=ADDED_LATER)
    # Every width of the net (convs and hidden linear layer) times this factor: the natural panel's CIFAR net is
    # too big for the CPU grid at the paper's widths, so its factor is chosen by `estimate` and recorded per run.
    width_scale: float = field(default=1.0, metadata=ADDED_LATER)
    eval_samples: int = 10  # ensemble size of the test prediction
    eval_batch: int = 1000
    max_test: int | None = None  # None: every image not drawn is a test image


@dataclass(frozen=True)
class GapSettings:
    """Appendix B: the auxiliary bound against IWAE after DWP-VI trained with the Fig. 2 protocol (``vi``)."""

    vi: Fig2Settings = field(default_factory=Fig2Settings)
    sizes: tuple[int, ...] = (50, 1000)
    seeds: tuple[int, ...] = (0, 1)
    iwae_samples: int = 10_000
    max_kernels: int = 32  # kernels per layer the IWAE estimate is computed on (scaled to the layer)
    prior_z_samples: int = 1000  # z ~ p(z) per kernel for the bound with r(z|w) = p(z)


@dataclass(frozen=True)
class Fig3Settings:
    """Random feature extraction: convs frozen at their init, only the linear classifier trained."""

    scales: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    seeds: tuple[int, ...] = tuple(range(10))  # the paper averaged 10 runs
    inits: tuple[str, ...] = ("dwp", "filters", "xavier")
    train_size: int = 4000  # stratified draw from the target; the rest is the test set
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3  # Adam, linear decay to 0
    max_test: int | None = None


@dataclass(frozen=True)
class Fig4Settings:
    """Convergence from different inits: MNIST CNN accuracy and conv-VAE ELBO against training step."""

    seeds: tuple[int, ...] = (0, 1, 2)
    inits: tuple[str, ...] = ("xavier", "filters", "dwp", "dwp:match", "dwp:fan_in")
    train_size: int = 4000
    batch_size: int = 32
    lr: float = 1e-3  # Adam, constant (default hyper-parameters, as in the paper's §4)
    cnn_steps: int = 600
    vae_steps: int = 1000
    vae_z_dim: int = 16
    eval_points: int = 10  # evaluations at roughly log-spaced steps, step 0 included
    max_test: int | None = None


FULL = {"fig2": Fig2Settings(), "gap": GapSettings(), "fig3": Fig3Settings(), "fig4": Fig4Settings()}

# Fig. 2 on natural images (a photo target, data.PhotoTarget): sizes are training tiles per class, 0 = all of them.
# The same protocol as the MNIST panel otherwise. width_scale 0.25 (367,520 parameters) by `estimate` on 2 CPU cores:
# the grid of every method and a second prior domain's DWP (90 runs) took an estimated 171 min of one core (85 of
# two); 0.5 would take 464 (232), past the 3 hours the grid may use.
NATURAL_FIG2 = Fig2Settings(sizes=(5, 10, 20, 50, 0), width_scale=0.25)
QUICK_NATURAL_FIG2 = Fig2Settings(sizes=(2, 0), seeds=(0,), steps=6, batch_size=16, kl_subsample=16, eval_samples=2,
                                  eval_batch=500, width_scale=0.125)

QUICK_FIG2 = Fig2Settings(sizes=(20, 40), seeds=(0,), steps=12, batch_size=20, kl_subsample=32, eval_samples=2,
                          max_test=200)
QUICK = {
    "fig2": QUICK_FIG2,
    "gap": GapSettings(vi=QUICK_FIG2, sizes=(20,), seeds=(0,), iwae_samples=64, max_kernels=8, prior_z_samples=16),
    "fig3": Fig3Settings(scales=(1 / 16, 1 / 8), seeds=(0,), train_size=100, steps=15, batch_size=50, max_test=200),
    "fig4": Fig4Settings(seeds=(0,), inits=("xavier", "filters", "dwp", "dwp:match"), train_size=100, batch_size=20,
                         cnn_steps=6, vae_steps=6, vae_z_dim=4, eval_points=3, max_test=200),
}

# Fields that only say which runs exist (each run's id names its point on the grid), not how a run is done.
GRID_FIELDS = {"sizes", "seeds", "methods", "scales", "inits"}


def settings_for(experiment: str, quick: bool, kind: str = "mnist"):
    """The default setting of `experiment`; `kind` "photo" (a photo target) gives the natural Fig. 2 panel's."""
    if kind == "photo":
        if experiment != "fig2":
            raise ValueError(f"{experiment} has no natural-image panel: a photo target is for fig2 only")
        return QUICK_NATURAL_FIG2 if quick else NATURAL_FIG2
    return (QUICK if quick else FULL)[experiment]


def run_protocol(settings) -> dict:
    """The setting without its grid fields: everything that decides how a single run is done."""
    out = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.metadata.get("omit_at_default") and value == f.default:
            continue
        if f.name not in GRID_FIELDS:
            out[f.name] = run_protocol(value) if is_dataclass(value) else value
    return out


def _parse_value(text: str, like):
    """`text` converted to the type of the current value `like` (tuples: comma-separated; fractions allowed)."""
    if isinstance(like, tuple):
        kind = type(like[0]) if like else str
        return tuple(_parse_value(t.strip(), kind()) for t in text.split(",") if t.strip())
    if isinstance(like, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(like, float):
        return float(Fraction(text))
    if isinstance(like, int) or like is None:
        return None if text.lower() == "none" else int(text)
    return text


def with_overrides(settings, assignments: list[str]):
    """Apply ``field=value`` / ``sub.field=value`` assignments (e.g. ``steps=500``, ``vi.kl_subsample=512``)."""
    for assignment in assignments:
        path, sep, text = assignment.partition("=")
        if not sep:
            raise ValueError(f"override {assignment!r}: expected FIELD=VALUE")
        settings = _assign(settings, path.split("."), text, assignment)
    return settings


def _assign(settings, path: list[str], text: str, assignment: str):
    names = {f.name for f in fields(settings)}
    if path[0] not in names:
        raise ValueError(f"override {assignment!r}: {type(settings).__name__} has no field {path[0]!r} "
                         f"(fields: {', '.join(sorted(names))})")
    current = getattr(settings, path[0])
    if len(path) > 1:
        return replace(settings, **{path[0]: _assign(current, path[1:], text, assignment)})
    try:
        return replace(settings, **{path[0]: _parse_value(text, current)})
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"override {assignment!r}: {e}") from None
