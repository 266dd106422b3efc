"""The paper's baseline priors over conv weights, each with KL(q‖p) in closed form for q = N(μ, diag σ²).

- ``NormalPrior``: N(0, s²) per weight (the paper's "standard normal", s = 1).
- ``LogUniformPrior``: p(|w|) ∝ 1/|w| per weight, KL by the approximation of Molchanov et al. (2017).
- ``MultivariateGaussianPrior``: N(m, Σ) over whole k×k kernels, fitted by maximum likelihood to source
  kernels (paper appendix C).

Every prior is an ``nn.Module`` with ``kl(mu, log_sigma2)`` taking the layer's (out, in/groups, kh, kw)
posterior parameters and returning a scalar; the deep weight prior's bound has the same interface
(``dwp_hub.dwp_bound``). ``kernel_size`` is None for priors that accept any kernel shape.

``SubsampledKL`` estimates any of these KLs on a random subset of a layer's kernels per call, the way the DWP
bound is estimated, so that ``bayesianize(subsample=m)`` gives every prior the same estimator.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from .gaussian import gaussian_entropy, kl_to_standard_normal
from .prior import DWPrior
from .subsample import kernel_subset

# Molchanov et al. (2017), eq. 14: −KL(q ‖ log-uniform) ≈ k1·σ(k2 + k3·log α) − ½·log(1 + 1/α) − k1.
LOG_UNIFORM_K1 = 0.63576
LOG_UNIFORM_K2 = 1.87320
LOG_UNIFORM_K3 = 1.48695
# Appendix C's Gaussian: this fraction of the mean per-weight variance is added to the covariance's diagonal.
GAUSSIAN_JITTER = 1e-4
# Keeps log μ² finite where μ = 0 exactly (α → ∞ there, where the KL is flat in μ anyway).
LOG_UNIFORM_MU2_EPS = 1e-16


class WeightPrior(nn.Module):
    """Base class: a prior over a conv layer's weights that knows KL(q‖p) for a factorised Gaussian q."""

    name = "prior"
    kernel_size: tuple[int, int] | None = None  # None: any kernel shape
    # True when the prior factorises over kernels, so that kl() is a sum of one term per kernel and can be
    # estimated on a subset of them (SubsampledKL). A subclass whose kernels are dependent leaves it False.
    per_kernel: bool = False

    def kl(self, mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
        """KL(q ‖ p) for the posterior N(mu, diag exp(log_sigma2)) of one layer's (out, in/groups, kh, kw) weight."""
        raise NotImplementedError


class NormalPrior(WeightPrior):
    """N(0, std²) independently per weight; KL in closed form."""

    name = "normal"
    per_kernel = True

    def __init__(self, std: float = 1.0) -> None:
        super().__init__()
        if not std > 0:
            raise ValueError(f"std must be positive, got {std!r}")
        self.std = float(std)

    def kl(self, mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
        # KL(N(μ,σ²) ‖ N(0,s²)) = KL(N(μ/s, σ²/s²) ‖ N(0,1)): the KL is invariant to rescaling both.
        s = self.std
        return kl_to_standard_normal((mu / s).flatten(), (log_sigma2.exp() / s**2).flatten())

    def extra_repr(self) -> str:
        return f"std={self.std}"


def log_uniform_kl(mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
    """Per-weight KL(N(μ,σ²) ‖ log-uniform) up to the prior's (infinite) constant, Molchanov et al. (2017) eq. 14.

    With α = σ²/μ²: KL ≈ k1 − k1·sigmoid(k2 + k3·log α) + ½·log(1 + 1/α). Zero as α → ∞.
    """
    log_alpha = log_sigma2 - torch.log(mu * mu + LOG_UNIFORM_MU2_EPS)
    neg_kl = (LOG_UNIFORM_K1 * torch.sigmoid(LOG_UNIFORM_K2 + LOG_UNIFORM_K3 * log_alpha)
              - 0.5 * nn.functional.softplus(-log_alpha) - LOG_UNIFORM_K1)
    return -neg_kl


class LogUniformPrior(WeightPrior):
    """The improper log-uniform prior p(|w|) ∝ 1/|w| per weight (Kingma et al. 2015; Molchanov et al. 2017)."""

    name = "log-uniform"
    per_kernel = True

    def kl(self, mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
        return log_uniform_kl(mu, log_sigma2).sum()


class MultivariateGaussianPrior(WeightPrior):
    """N(m, Σ) over flattened k×k kernels (appendix C); KL(N(μ, diag σ²) ‖ N(m, Σ)) in closed form.

    Build it with ``fit(kernels)`` (maximum likelihood on source kernels) or ``from_pretrained(name)``
    (fit to the ``kernels.safetensors`` shipped in a prior folder).
    """

    name = "multivariate-gaussian"
    per_kernel = True

    def __init__(self, mean: torch.Tensor, covariance: torch.Tensor) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64)
        k = mean.shape[-1]
        if mean.shape != (k, k):
            raise ValueError(f"mean must be a (k, k) kernel, got shape {tuple(mean.shape)}")
        covariance = torch.as_tensor(covariance, dtype=torch.float64)
        d = k * k
        if covariance.shape != (d, d):
            raise ValueError(f"covariance of {k}x{k} kernels must be ({d}, {d}), got {tuple(covariance.shape)}")
        chol, info = torch.linalg.cholesky_ex(0.5 * (covariance + covariance.T))
        if info.item() != 0 or not torch.isfinite(covariance).all():
            raise ValueError("covariance is not symmetric positive definite")
        self.kernel_size = (k, k)
        self.register_buffer("mean", mean.flatten().float())
        self.register_buffer("precision", torch.cholesky_inverse(chol).float())
        self.register_buffer("log_det", (2 * chol.diagonal().log().sum()).float())

    @classmethod
    def fit(cls, kernels: torch.Tensor, jitter: float = GAUSSIAN_JITTER) -> "MultivariateGaussianPrior":
        """Maximum-likelihood N(m, Σ) of `kernels` (n, k, k): sample mean and the 1/n sample covariance.

        ``jitter`` × (mean variance) is added to Σ's diagonal so it stays invertible when some directions of
        kernel space are (nearly) unused, e.g. with fewer than k² kernels. This is the one fit of the
        package: the VI baseline of Fig. 2 and the yardstick on each prior's card both use it.
        """
        if kernels.dim() != 3 or kernels.shape[1] != kernels.shape[2]:
            raise ValueError(f"kernels must have shape (n, k, k), got {tuple(kernels.shape)}")
        if kernels.shape[0] < 2:
            raise ValueError("need at least 2 kernels to fit a Gaussian")
        if not torch.isfinite(kernels).all():
            raise ValueError("kernels contain NaN or inf")
        x = kernels.detach().to("cpu", torch.float64).flatten(1)
        mean = x.mean(0)
        centred = x - mean
        cov = centred.T @ centred / x.shape[0]
        cov = cov + jitter * cov.diagonal().mean().clamp_min(1e-12) * torch.eye(x.shape[1], dtype=torch.float64)
        return cls(mean.view(kernels.shape[1], -1), cov)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, split: str = "train", jitter: float = GAUSSIAN_JITTER,
                        **load_kwargs) -> "MultivariateGaussianPrior":
        """Fit to the source kernels (``kernels.safetensors``, tensor `split`) of a deep weight prior."""
        return cls.fit(DWPrior.from_pretrained(name_or_path, **load_kwargs).source_kernels(split), jitter=jitter)

    def log_prob(self, kernels: torch.Tensor) -> torch.Tensor:
        """log N(w | m, Σ) per kernel of `kernels` (n, k, k), computed in float64."""
        d = self.mean.numel()
        x = kernels.reshape(-1, d).double() - self.mean.double()
        quad = ((x @ self.precision.double()) * x).sum(-1)
        return (-0.5 * (d * math.log(2 * math.pi) + self.log_det.double() + quad)).float()

    def kl(self, mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
        # KL(N(μ, diag σ²) ‖ N(m, Σ)) = ½ [tr(Σ⁻¹ diag σ²) + (μ−m)ᵀ Σ⁻¹ (μ−m) − d + log|Σ| − Σ log σ²]
        if tuple(mu.shape[-2:]) != self.kernel_size:
            raise ValueError(f"prior is over {self.kernel_size} kernels, got weights of shape {tuple(mu.shape)}")
        d = self.mean.numel()
        mu, log_sigma2 = mu.reshape(-1, d), log_sigma2.reshape(-1, d)
        diff = mu - self.mean
        trace = log_sigma2.exp() @ self.precision.diagonal()
        quad = ((diff @ self.precision) * diff).sum(-1)
        per_kernel = 0.5 * (trace + quad - d + self.log_det - log_sigma2.sum(-1))
        return per_kernel.sum()

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class SubsampledKL(WeightPrior):
    """`prior`'s KL estimated on `subsample` random kernels of the layer per call, unbiased; None: exact.

    A KL that factorises over kernels splits as KL(q ‖ p) = −H(q) + Σ_kernels (KL_i + H_i), the entropy of q
    plus a cross term per kernel, the same split as the DWP bound (eq. 7, ``dwp_hub.dwp_bound``). Like the bound,
    this estimate keeps the entropy exact and takes the cross term on m kernels drawn without replacement,
    scaled by n/m (``dwp_hub.subsample``). Keeping one estimator for every prior matters when priors are
    compared: a subsampled term reaches each kernel only on the steps it is drawn, scaled by n/m, which inflates
    Adam's second-moment estimate and slows that layer's parameters (by up to √(n/m)).

    ``bayesianize(subsample=m)`` wraps each closed-form prior in one of these per layer; ``prior`` stays the
    exact one.
    """

    def __init__(self, prior: WeightPrior, subsample: int | None) -> None:
        super().__init__()
        if subsample is not None and (not isinstance(subsample, int) or subsample < 1):
            raise ValueError(f"subsample must be a positive integer or None, got {subsample!r}")
        if not prior.per_kernel:
            raise ValueError(f"subsample={subsample} needs a KL that is a sum of one term per kernel, and "
                             f"{type(prior).__name__} does not declare one (per_kernel is False): use subsample=None, "
                             "or set per_kernel = True on a prior whose kernels are independent")
        self.prior = prior
        self.subsample = subsample
        self.kernel_size = prior.kernel_size
        self.name = prior.name
        self.per_kernel = True

    def kl(self, mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
        """One unbiased estimate of ``prior.kl(mu, log_sigma2)``: exact entropy, cross term on the subset."""
        kh, kw = mu.shape[-2:]
        mu, log_sigma2 = mu.reshape(-1, 1, kh, kw), log_sigma2.reshape(-1, 1, kh, kw)
        idx, scale = kernel_subset(mu.shape[0], self.subsample, mu.device)
        if idx is None:
            return self.prior.kl(mu, log_sigma2)
        part_mu, part_ls = mu[idx], log_sigma2[idx]
        cross = self.prior.kl(part_mu, part_ls) + gaussian_entropy(part_ls)  # Σ_subset (KL_i + H_i)
        return -gaussian_entropy(log_sigma2) + scale * cross

    def extra_repr(self) -> str:
        return f"subsample={self.subsample}"
