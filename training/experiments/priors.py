"""The priors and source kernels an experiment uses, loaded once per process.

Names resolve as everywhere in dwp_hub (``DWPrior.from_pretrained``): a bundled name loads the bundled copy
without any Hub request, so runs are reproducible offline; ``NAME@REV`` pins a Hub commit. The name
``reference`` is the paper authors' own VAE for that kernel size (``training/compare_priors.py``), loaded in
memory for measurement only: it ships no source kernels, so the appendix C Gaussian cannot be fitted to it.

``init_names`` optionally gives other priors for the μ init of Fig. 2 than for its KL, so that an experiment can
tell what a prior does through its samples from what it does through its density.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dwp_hub import DWPrior, MultivariateGaussianPrior
from dwp_hub.prior_folder import KERNELS_NAME, WEIGHTS_NAME

from ..compare_priors import REFERENCE_DIR, REFERENCE_WEIGHTS, reference_prior
from ..research_architectures import RESEARCH_ARCHITECTURES  # noqa: F401  (registers them: priors may use them)

DEFAULT_PRIORS = {7: "dwp/notmnist-7x7", 5: "dwp/notmnist-5x5"}
REFERENCE = "reference"
# Provenance fields of a prior's config.json copied into the experiment records and the results page.
PROVENANCE_KEYS = ("dataset", "num_source_nets", "source_architecture", "source_widths", "source_training",
                   "source_test_accuracy_mean", "kernels_train", "heldout_iwae_loglik", "heldout_fullcov_gaussian_loglik")


@dataclass
class PriorSet:
    """DWPs, source kernels and fitted multivariate Gaussians by kernel size, each loaded on first use."""

    names: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    init_names: dict[int, str] = field(default_factory=dict)  # μ-init priors where they differ from `names`
    _dwp: dict[tuple[str, int], DWPrior] = field(default_factory=dict, repr=False)  # by (name, kernel size)
    _kernels: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _mvg: dict[int, MultivariateGaussianPrior] = field(default_factory=dict, repr=False)

    def domain(self, init: bool = False) -> str:
        """The domain of the KL's priors (`init`: of the μ-init priors), for the natural panel's ``prior`` column.

        A prior's domain is its name without the Hub owner, revision and kernel-size suffix ("dwp/photo-7x7" →
        "photo"; a folder: its last part); two kernel sizes from different domains give "D7+D5".
        """
        names = {k: self.init_names.get(k, n) for k, n in self.names.items()} if init else self.names
        parts = [re.sub(rf"-{k}x{k}$", "", Path(n.partition("@")[0].rstrip("/")).name) for k, n in
                 sorted(names.items(), reverse=True)]
        return "+".join(dict.fromkeys(parts))

    def name(self, k: int) -> str:
        if k not in self.names:
            raise KeyError(f"no prior configured for {k}x{k} kernels (have {sorted(self.names)})")
        return self.names[k]

    def dwp(self, k: int) -> DWPrior:
        """The deep weight prior over k×k kernels (frozen, eval mode, on the CPU)."""
        return self._load(self.name(k), k)

    def init_dwp(self, k: int) -> DWPrior:
        """The prior whose samples initialise μ of k×k kernels: `init_names[k]` if given, else the prior itself."""
        return self._load(self.init_names[k], k) if k in self.init_names else self.dwp(k)

    def _load(self, name: str, k: int) -> DWPrior:
        if (name, k) not in self._dwp:  # "reference" names one prior per kernel size
            prior = reference_prior(k) if name == REFERENCE else DWPrior.from_pretrained(name)
            prior = prior.requires_grad_(False).eval()
            if prior.kernel_size != k:
                raise ValueError(f"prior {name!r} is over {prior.kernel_size}x{prior.kernel_size} kernels, "
                                 f"configured for {k}x{k}")
            self._dwp[name, k] = prior
        return self._dwp[name, k]

    def source_kernels(self, k: int) -> torch.Tensor:
        """The real source kernels shipped with the k×k prior (tensor "train" of kernels.safetensors)."""
        if k not in self._kernels:
            if self.name(k) == REFERENCE:
                raise ValueError(f"the authors' {k}x{k} prior ships no source kernels (no Gaussian baseline with it)")
            self._kernels[k] = self.dwp(k).source_kernels("train")
        return self._kernels[k]

    def mv_gaussian(self, k: int) -> MultivariateGaussianPrior:
        """Appendix C's baseline: N(m, Σ) fitted by maximum likelihood to the same source kernels."""
        if k not in self._mvg:
            self._mvg[k] = MultivariateGaussianPrior.fit(self.source_kernels(k))
        return self._mvg[k]

    def folder(self, k: int, name: str | None = None) -> Path:
        """The folder prior `name` (default: the k×k prior) was read from (bundled, local or in the Hub cache; the
        authors' own folder)."""
        name = name or self.name(k)
        if name == REFERENCE:
            return REFERENCE_DIR / f"vae{k}x{k}"
        return self._load(name, k).source.path

    def fingerprint(self) -> str:
        """SHA-1 over every configured prior's weight and source-kernel files: changes when a prior is rebuilt.

        The init priors enter only when there are any, so that a set without them keeps its earlier fingerprint.
        """
        h = hashlib.sha1()
        for tag, names in (("", self.names), ("init ", self.init_names)):
            for k, name in sorted(names.items()):
                for f in (REFERENCE_WEIGHTS,) if name == REFERENCE else (WEIGHTS_NAME, KERNELS_NAME):
                    path = self.folder(k, name) / f
                    h.update(f"{tag}{k}:{f}:".encode())
                    h.update(path.read_bytes() if path.is_file() else b"absent")
        return h.hexdigest()

    def describe(self) -> dict[str, dict]:
        """What each configured prior is (name, folder, where its kernels came from), for the records."""
        out = {f"{k}x{k}": self._describe(k, name) for k, name in sorted(self.names.items())}
        out.update({f"init {k}x{k}": self._describe(k, name) for k, name in sorted(self.init_names.items())})
        return out

    def _describe(self, k: int, name: str) -> dict:
        if name == REFERENCE:
            return {"name": name, "folder": str(self.folder(k, name)),
                    "note": "the paper authors' VAE, loaded in memory for measurement only"}
        prior = self._load(name, k)
        return {"name": name, "folder": str(self.folder(k, name)), **prior.source.to_dict(),
                **{key: prior.provenance[key] for key in PROVENANCE_KEYS if key in prior.provenance}}
