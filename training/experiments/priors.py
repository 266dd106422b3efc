"""The priors and source kernels an experiment uses, loaded once per process.

Names resolve as everywhere in dwp_hub (``DWPrior.from_pretrained``): a bundled name loads the bundled copy
without any Hub request, so runs are reproducible offline; ``NAME@REV`` pins a Hub commit. The name
``reference`` is the paper authors' own VAE for that kernel size (``training/compare_priors.py``), loaded in
memory for measurement only: it ships no source kernels, so the appendix C Gaussian cannot be fitted to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dwp_hub import DWPrior, MultivariateGaussianPrior
from dwp_hub.prior_folder import KERNELS_NAME, WEIGHTS_NAME

from ..compare_priors import REFERENCE_DIR, REFERENCE_WEIGHTS, reference_prior

DEFAULT_PRIORS = {7: "dwp/notmnist-7x7", 5: "dwp/notmnist-5x5"}
REFERENCE = "reference"
# Provenance fields of a prior's config.json copied into the experiment records and the results page.
PROVENANCE_KEYS = ("dataset", "num_source_nets", "source_architecture", "source_widths", "source_training",
                   "source_test_accuracy_mean", "kernels_train", "heldout_iwae_loglik", "heldout_fullcov_gaussian_loglik")


@dataclass
class PriorSet:
    """DWPs, source kernels and fitted multivariate Gaussians by kernel size, each loaded on first use."""

    names: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    _dwp: dict[int, DWPrior] = field(default_factory=dict, repr=False)
    _kernels: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _mvg: dict[int, MultivariateGaussianPrior] = field(default_factory=dict, repr=False)

    def name(self, k: int) -> str:
        if k not in self.names:
            raise KeyError(f"no prior configured for {k}x{k} kernels (have {sorted(self.names)})")
        return self.names[k]

    def dwp(self, k: int) -> DWPrior:
        """The deep weight prior over k×k kernels (frozen, eval mode, on the CPU)."""
        if k not in self._dwp:
            name = self.name(k)
            prior = reference_prior(k) if name == REFERENCE else DWPrior.from_pretrained(name)
            prior = prior.requires_grad_(False).eval()
            if prior.kernel_size != k:
                raise ValueError(f"prior {self.name(k)!r} is over {prior.kernel_size}x{prior.kernel_size} kernels, "
                                 f"configured for {k}x{k}")
            self._dwp[k] = prior
        return self._dwp[k]

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

    def folder(self, k: int) -> Path:
        """The folder the k×k prior was read from (bundled, local or in the Hub cache; the authors' own folder)."""
        if self.name(k) == REFERENCE:
            return REFERENCE_DIR / f"vae{k}x{k}"
        return self.dwp(k).source.path

    def fingerprint(self) -> str:
        """SHA-1 over every configured prior's weight and source-kernel files: changes when a prior is rebuilt."""
        h = hashlib.sha1()
        for k, name in sorted(self.names.items()):
            for f in (REFERENCE_WEIGHTS,) if name == REFERENCE else (WEIGHTS_NAME, KERNELS_NAME):
                path = self.folder(k) / f
                h.update(f"{k}:{f}:".encode())
                h.update(path.read_bytes() if path.is_file() else b"absent")
        return h.hexdigest()

    def describe(self) -> dict[str, dict]:
        """What each configured prior is (name, folder, where its kernels came from), for the records."""
        out = {}
        for k, name in sorted(self.names.items()):
            if name == REFERENCE:
                out[f"{k}x{k}"] = {"name": name, "folder": str(self.folder(k)),
                                   "note": "the paper authors' VAE, loaded in memory for measurement only"}
                continue
            prov = self.dwp(k).provenance
            out[f"{k}x{k}"] = {"name": name, "folder": str(self.folder(k)), **self.dwp(k).source.to_dict(),
                               **{key: prov[key] for key in PROVENANCE_KEYS if key in prov}}
        return out
