"""The one grammar for naming priors, shared by ``init_from_prior``, ``bayesianize`` and the CLI.

A prior spec is one of:

- a deep weight prior by name (``"dwp/notmnist-7x7"``, ``"notmnist-7x7"``), ``"ORG/NAME@REV"``,
  ``"hf-hub:ORG/NAME"`` or a folder (parsed by ``dwp_hub.names.PriorName``; ``dwp_hub.hub`` says how each
  is found), or a ``DWPrior``;
- a domain shorthand: ``"notmnist"`` stands for every bundled or cached ``dwp/notmnist-KxK``, and
  ``"ORG/DOMAIN"`` for every cached ``ORG/DOMAIN-KxK``, one prior per kernel size;
- a baseline: ``"normal"`` (N(0, 1) per weight), ``"log-uniform"`` (Molchanov et al. 2017) — both for any
  kernel size — or ``"gaussian:SPEC"``, appendix C's multivariate Gaussian fitted to the source kernels
  shipped with the deep weight prior SPEC; or any ``WeightPrior`` object.

``priors`` arguments take one spec, a list of specs, or a mapping ``{kernel_size: spec}`` (keys ``k`` or
``(kh, kw)``). Each kernel size gets at most one prior; ``resolve_priors`` returns them keyed by kernel size,
with key ``None`` for a prior that applies to every kernel size.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from .hub import PriorSource, bundled_repo_id, list_priors
from .names import DEFAULT_ORG, PriorName
from .prior import DWPrior
from .weight_priors import LogUniformPrior, MultivariateGaussianPrior, NormalPrior, WeightPrior

PriorSpec = Union[str, os.PathLike, DWPrior, WeightPrior]
KernelKey = Union[int, tuple[int, int]]
Priors = Union[PriorSpec, Sequence[PriorSpec], Mapping[KernelKey, PriorSpec]]
BASELINES = {"normal": NormalPrior, "log-uniform": LogUniformPrior}
GAUSSIAN_PREFIX = "gaussian:"


@dataclass(frozen=True)
class ResolvedPrior:
    """One prior a spec stood for: the object, a label for reports, and where it came from."""

    prior: DWPrior | WeightPrior
    label: str
    source: PriorSource | None = None  # the deep weight prior it was loaded (or fitted) from

    @property
    def kernel_size(self) -> tuple[int, int] | None:
        """The (kh, kw) kernels it models, None for any."""
        if isinstance(self.prior, DWPrior):
            return (self.prior.kernel_size, self.prior.kernel_size)
        return self.prior.kernel_size

    def record(self) -> dict[str, Any]:
        """What a report or checkpoint records of it: the label and, for loaded priors, revision or SHA-256."""
        out: dict[str, Any] = {"prior": self.label}
        if self.source is not None:
            out.update({k: v for k, v in self.source.to_dict().items() if k != "name" and v is not None})
        return out


def domain_priors(domain: str) -> list[str]:
    """Names a domain shorthand stands for, one per kernel size, largest kernel first ([] if none).

    ``"notmnist"`` -> ``dwp/notmnist-{k}x{k}`` for every k bundled or in the local Hub cache;
    ``"my-org/cifar"`` -> ``my-org/cifar-{k}x{k}``. Bundled priors win over cached ones of the same name.
    """
    repo = domain if "/" in domain else f"{DEFAULT_ORG}/{domain}"
    pattern = re.compile(re.escape(repo) + r"-(\d+)x(\d+)")
    found: dict[int, str] = {}
    for info in list_priors():
        m = pattern.fullmatch(info.name)
        if m and m.group(1) == m.group(2) and int(m.group(1)) == info.kernel_size:
            found.setdefault(info.kernel_size, info.name)
    return [found[k] for k in sorted(found, reverse=True)]


class PriorResolver:
    """Turns specs into ResolvedPriors, loading each name once (equal names share one object)."""

    def __init__(self, **load_kwargs: Any) -> None:
        self.load_kwargs = load_kwargs  # revision-free from_pretrained options: cache_dir, token, ...
        self._loaded: dict[str, ResolvedPrior] = {}

    def _dwp(self, name: str) -> ResolvedPrior:
        if name not in self._loaded:
            prior = DWPrior.from_pretrained(name, **self.load_kwargs)
            self._loaded[name] = ResolvedPrior(prior, name, prior.source)
        return self._loaded[name]

    def expand(self, spec: PriorSpec) -> list[ResolvedPrior]:
        """The prior(s) one spec stands for: several for a domain shorthand, else one."""
        if isinstance(spec, DWPrior):
            k = spec.kernel_size
            label = spec.source.name if spec.source else f"DWPrior {k}x{k} ({spec.config.domain})"
            return [ResolvedPrior(spec, label, spec.source)]
        if isinstance(spec, WeightPrior):
            return [ResolvedPrior(spec, spec.name)]
        if not isinstance(spec, (str, os.PathLike)):
            raise TypeError(f"a prior must be a name, folder, domain, baseline name, DWPrior or WeightPrior, "
                            f"got {type(spec).__name__}")
        name = os.fspath(spec)
        if name in BASELINES:
            if name not in self._loaded:
                self._loaded[name] = ResolvedPrior(BASELINES[name](), name)
            return [self._loaded[name]]
        if name.startswith(GAUSSIAN_PREFIX):
            if name not in self._loaded:
                base = self._dwp(name[len(GAUSSIAN_PREFIX):])
                fitted = MultivariateGaussianPrior.fit(base.prior.source_kernels("train"))
                self._loaded[name] = ResolvedPrior(fitted, name, base.source)
            return [self._loaded[name]]
        parsed = PriorName.parse(name)
        if parsed.is_plain and bundled_repo_id(parsed.repo) is None:
            names = domain_priors(parsed.repo)
            if names:
                return [self._dwp(n) for n in names]
        return [self._dwp(name)]

    def resolve(self, priors: Priors) -> dict[KernelKey | None, ResolvedPrior]:
        """Kernel size (k, or (kh, kw) when not square; None: any) -> the prior for it."""
        table: dict[KernelKey | None, ResolvedPrior] = {}

        def put(key: KernelKey | None, entry: ResolvedPrior) -> None:
            if key in table:
                what = "every kernel size" if key is None else f"{_shape(key)} kernels"
                raise ValueError(f"two priors for {what}: {table[key].label} and {entry.label}; give one per "
                                 "kernel size")
            table[key] = entry

        if isinstance(priors, Mapping):
            for key, spec in priors.items():
                want = _key(key)
                entries = self.expand(spec)
                match = [e for e in entries if e.kernel_size in (None, _pair(want))]
                if not match:
                    got = ", ".join(f"{e.label} ({_shape(_key(e.kernel_size))})" for e in entries)
                    raise ValueError(f"priors[{key!r}] is {got}, not a prior over {_shape(want)} kernels")
                put(want, match[0])
        else:
            specs = [priors] if isinstance(priors, (str, os.PathLike, DWPrior, WeightPrior)) else list(priors)
            for spec in specs:
                for entry in self.expand(spec):
                    put(None if entry.kernel_size is None else _key(entry.kernel_size), entry)
        if not table:
            raise ValueError("no priors given")
        return table


def resolve_priors(priors: Priors, **load_kwargs: Any) -> dict[KernelKey | None, ResolvedPrior]:
    """Parse `priors` (module docstring) and load every prior it names, once each."""
    return PriorResolver(**load_kwargs).resolve(priors)


def _pair(key: KernelKey) -> tuple[int, int]:
    return (key, key) if isinstance(key, int) else tuple(key)


def _key(key: KernelKey | tuple[int, int]) -> KernelKey:
    """k for square kernels (given as k or (k, k)), (kh, kw) otherwise."""
    if isinstance(key, bool) or not isinstance(key, (int, tuple)) or (isinstance(key, tuple) and len(key) != 2):
        raise ValueError(f"a kernel-size key is k or (kh, kw), got {key!r}")
    kh, kw = _pair(key)
    return kh if kh == kw else (kh, kw)


def _shape(key: KernelKey) -> str:
    kh, kw = _pair(key)
    return f"{kh}x{kw}"
