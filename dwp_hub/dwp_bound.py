"""The deep weight prior's KL bound for one layer (paper eq. 7, Algorithm 1), with kernel subsampling.

For each kernel w_ij of a layer with posterior q(w) = N(μ, diag σ²):

    KL(q ‖ p̂) ≤ −H(q) + E_{w~q}[ KL(r(z|w; ψ_l) ‖ N(0, I)) − E_{z~r} log p(w|z; φ) ]
              = −H(q) − E_{w~q}[ ELBO_ψ,φ(w) ],

the negative entropy (closed form) minus the kernel VAE's evidence lower bound (eq. 4) at a posterior
sample, with the reverse model r(z|w; ψ_l) as its encoder. φ (the prior's decoder) is frozen and shared
by every layer that uses the prior; ψ_l starts as a copy of the prior's encoder and is trained with θ.
"""

from __future__ import annotations

import copy

import torch

from .gaussian import gaussian_entropy
from .prior import DWPrior
from .stored_gradients import StoredGradientSum
from .subsample import posterior_sample
from .weight_priors import WeightPrior

# Floats in the widest activation of one VAE pass of the bound (4 MiB). On CPU every fresh tensor above glibc's mmap
# threshold (at most 32 MB) is page-faulted in on its first write: a clamp into a new (262,144 × 32)-float tensor
# took 21 ms, into reused memory 2 ms. Passing a layer's kernels through the VAE in parts whose activations stay
# below this made the exact bound (1 thread) 1.8× faster over resnet18's 262,144-kernel 3x3 layers with a dense32
# prior, 1.4× over 65,536 kernels with the bundled 3x3 VAE and 1.2× over the paper net's 4,096 5x5 kernels.
PASS_FLOATS = 2**20


class DWPBound(WeightPrior):
    """Eq. 7 for one conv layer: the auxiliary upper bound on KL(q(w) ‖ p̂(w)), vectorised over its kernels.

    ``aux`` is a DWPrior whose decoder is `prior`'s (shared, frozen) and whose encoder is this layer's
    reverse model r(z|w; ψ_l): a trainable copy of the prior's encoder, or the prior's own (frozen, shared)
    encoder when ``train_reverse`` is False. The decoder of `prior` is frozen in place.

    ``subsample``: estimate the expectation term on that many kernels drawn without replacement each call,
    scaled by (kernels / subsample), so the estimate stays unbiased; the entropy is always exact. This is
    where most of DWP-VI's cost goes, so it is the knob for speed. None uses every kernel. The kernels go through
    the VAE ``vae_pass`` at a time (None: as many as keep its widest activation within PASS_FLOATS).

    ``stored_gradients``: ``"saga"`` or ``"sag"`` estimates the expectation term in training (gradients
    enabled) with stored per-kernel gradients (``dwp_hub.stored_gradients``): with probability
    ``refresh_prob`` a subset of ``subsample`` kernels (None: ⌈√n⌉), ``samples`` draws each, is evaluated
    and every other kernel gets its last gradient (or, without gradients, its last value). ``kl(...,
    subsample=m)`` still gives the plain estimate on m kernels (``subsample=n``: every kernel).
    """

    name = "dwp"

    def __init__(self, prior: DWPrior, subsample: int | None = None, train_reverse: bool = True,
                 stored_gradients: str | None = None, refresh_prob: float = 1.0, samples: int = 1) -> None:
        super().__init__()
        if subsample is not None and (not isinstance(subsample, int) or subsample < 1):
            raise ValueError(f"subsample must be a positive integer or None, got {subsample!r}")
        prior.decoder.requires_grad_(False)
        if train_reverse:
            aux = DWPrior(prior.config)
            aux.decoder = prior.decoder
            aux.encoder = copy.deepcopy(prior.encoder).requires_grad_(True)
            aux.source = prior.source
        else:
            prior.encoder.requires_grad_(False)
            aux = prior
        self.aux = aux
        self.subsample = subsample
        self.stored = (StoredGradientSum(stored_gradients, subsample, refresh_prob, samples)
                       if stored_gradients is not None else None)
        self.train_reverse = train_reverse
        k = prior.kernel_size
        self.kernel_size = (k, k)
        self.vae_pass: int | None = None  # kernels per VAE pass; None: set from PASS_FLOATS on first use

    def as_kernels(self, t: torch.Tensor) -> torch.Tensor:
        """A (out, in/groups, k, k) weight tensor as (kernels, k, k), checking the kernel shape."""
        if tuple(t.shape[-2:]) != self.kernel_size:
            raise ValueError(f"prior is over {self.kernel_size} kernels, got weights of shape {tuple(t.shape)}")
        return t.reshape(-1, *self.kernel_size)

    def kl(self, mu: torch.Tensor, log_sigma2: torch.Tensor, subsample: int | None = None) -> torch.Tensor:
        """One reparameterised estimate of the layer's bound (eq. 7); `subsample` overrides the layer's."""
        mu, log_sigma2 = self.as_kernels(mu), self.as_kernels(log_sigma2)
        neg_entropy = -gaussian_entropy(log_sigma2)  # exact, over every kernel
        if self.stored is not None and subsample is None:
            return neg_entropy + self.stored(mu, log_sigma2, self._term)
        w, scale = posterior_sample(mu, log_sigma2, subsample or self.subsample)  # one w ~ q per kernel
        return neg_entropy - scale * sum(self.aux.elbo(part).sum() for part in w.split(self._pass_kernels()))

    @torch.no_grad()
    def _pass_kernels(self) -> int:
        """Kernels per VAE pass: PASS_FLOATS over the floats one kernel makes in the VAE's widest layer output."""
        if self.vae_pass is None:
            widest = []

            def record(module: torch.nn.Module, inputs: tuple, out: torch.Tensor | tuple) -> None:
                widest.append(max(t.numel() for t in (out if isinstance(out, tuple) else (out,))))

            hooks = [m.register_forward_hook(record) for m in self.aux.modules() if next(m.children(), None) is None]
            ref = next(self.aux.decoder.parameters())
            try:  # no random draw: the caller's random stream stays as it was
                z_mu, _ = self.aux.encode(torch.zeros(1, *self.kernel_size, dtype=ref.dtype, device=ref.device))
                self.aux.decode(z_mu)
            finally:
                for hook in hooks:
                    hook.remove()
            # a multiple of 16 kernels: CPU randn fills blocks of 16, so the passes draw the z one pass would
            self.vae_pass = max(16, PASS_FLOATS // max(widest) // 16 * 16)
        return self.vae_pass

    def _term(self, w: torch.Tensor, psi_scale: float) -> torch.Tensor:
        """−ELBO_ψ(w) per kernel (eq. 7's expectation term); the gradient reaching ψ is multiplied by psi_scale."""
        params = None
        if psi_scale != 1.0 and self.train_reverse:
            params = {name: p.detach() + psi_scale * (p - p.detach()) for name, p in self.aux.encoder.named_parameters()}
        return -self.aux.elbo(w, params)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, subsample={self.subsample}, train_reverse={self.train_reverse}"
