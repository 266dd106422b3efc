"""DWPrior: one kernel VAE (paper §3.1, eq. 6) for one kernel size and data domain."""

from __future__ import annotations

import math
import operator
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard
from torch import nn

from .architectures import ARCHITECTURES, architecture_for, get_architecture
from .decoder_mean import DecoderMean
from .errors import PriorFormatError
from .gaussian import bounded_variance, kl_to_standard_normal, log_normal
from .hub import PriorSource, locate
from .prior_folder import (
    PriorConfig,
    PriorFiles,
    default_card,
    read_folder,
    write_folder,
)
from .progress import progress_bar
from .publish import PushResult, push_folder


class DWPrior(nn.Module):
    """A deep weight prior p̂(w) = ∫ p(w|z; φ) N(z|0, I) dz over k×k kernels.

    `encoder` is r(z|w) and `decoder` is p(w|z); both output diagonal Gaussians whose variances are
    ``config.var_floor + softplus(raw)``, so they never collapse below the floor (default 1e-6, i.e.
    std 1e-3) and never overflow. Kernels are passed as (n, k, k) tensors throughout.

    Besides its weights a prior carries the rest of its folder, so that saving or pushing a loaded prior
    writes everything it was loaded with: ``provenance`` (how it was built), ``card`` (README.md text,
    None until it has one) and the source-kernel samples (``source_kernels()``). ``source`` says where
    ``from_pretrained`` found it (None for a prior built in memory).

    ``from_pretrained``, ``save_pretrained`` and ``push_to_hub`` take huggingface_hub's usual arguments
    but are dwp-hub's own, not ``ModelHubMixin``'s: the folder is written atomically and whole, a push is
    validated and made in one commit, and bundled priors load without network access.
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        arch = ARCHITECTURES[config.architecture]
        # channels-last weights: the same math, ~1.17x faster convolutions over many small kernels on CPU
        # (forward and backward of the 5x5 VAE on 4,096 kernels); safetensors files store values, not layout
        self.encoder = arch.encoder(config.z_dim).to(memory_format=torch.channels_last)
        self.decoder = arch.decoder(config.z_dim).to(memory_format=torch.channels_last)
        self.provenance: dict[str, Any] = {}
        self.card: str | None = None
        self.kernels_file: bytes | None = None  # kernels.safetensors as read; see source_kernels()
        self.source: PriorSource | None = None

    @classmethod
    def for_kernel_size(cls, kernel_size: int, domain: str, z_dim: int | None = None,
                        provenance: dict[str, Any] | None = None, architecture: str | None = None,
                        **config_fields) -> "DWPrior":
        """A freshly initialised prior for `kernel_size`: the named `architecture` or the size's default."""
        arch = architecture_for(kernel_size) if architecture is None else get_architecture(architecture)
        cfg = PriorConfig(kernel_size=kernel_size, z_dim=z_dim or arch.default_z_dim,
                          architecture=arch.name, domain=domain, **config_fields)
        prior = cls(cfg)
        prior.provenance = dict(provenance or {})
        return prior

    @property
    def kernel_size(self) -> int:
        return self.config.kernel_size

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def _check_kernels(self, w: torch.Tensor) -> torch.Tensor:
        """`w` as (n, k, k) in the prior's dtype: any floating dtype is cast, other dtypes are refused."""
        k = self.kernel_size
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"expected kernels as a torch.Tensor of shape (n, {k}, {k}), got {type(w).__name__}")
        if w.dim() == 4 and w.shape[1] == 1:
            w = w[:, 0]
        if w.dim() != 3 or w.shape[1:] != (k, k):
            raise ValueError(f"expected kernels of shape (n, {k}, {k}), got {tuple(w.shape)}")
        if not w.is_floating_point():
            raise TypeError(f"expected floating-point kernels, got dtype {w.dtype}")
        return w.to(self._param().dtype)

    # --- the two Gaussians -------------------------------------------------------------------------
    def encode(self, w: torch.Tensor, encoder_params: dict[str, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """r(z|w): mean and variance of z, each (n, z_dim), for kernels w of shape (n, k, k).

        `encoder_params` replaces the encoder's parameters for this call (``torch.func.functional_call``).
        """
        w = self._check_kernels(w)
        if encoder_params is None:
            mu, raw = self.encoder(w[:, None])
        else:
            mu, raw = torch.func.functional_call(self.encoder, encoder_params, (w[:, None],))
        return mu, bounded_variance(raw, self.config.var_floor)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(w|z): mean and variance of w, each (n, k, k), for latents z of shape (n, z_dim)."""
        mu, raw = self.decoder(z)
        return mu, bounded_variance(raw, self.config.var_floor)

    # --- sampling ----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, noise: bool = False,
               chunk_size: int = 4096) -> torch.Tensor:
        """`n` kernels (n, k, k): decoder mean at z ~ N(0, I), plus decoder noise if `noise`.

        All random numbers are drawn up front (z is only n × z_dim), so the result for a given
        generator does not depend on `chunk_size`; decoding runs `chunk_size` kernels at a time,
        which bounds the extra memory for millions of kernels (4096 keeps a chunk's activations small;
        measured 1.1-1.25x faster than 65536 on CPU). Without noise only the decoder mean is evaluated, through
        DecoderMean (same function, several times faster; see decoder_mean.py).
        """
        n = _count("n", n, minimum=0)
        chunk_size = _count("chunk_size", chunk_size, minimum=1)
        ref = self._param()
        opts = dict(dtype=ref.dtype, device=ref.device)
        z = torch.randn(n, self.z_dim, generator=generator, **opts)
        out = torch.empty(n, self.kernel_size, self.kernel_size, **opts)
        if noise:
            out.normal_(generator=generator)
        decoder_mean = None if noise else DecoderMean(self.decoder)
        for start in range(0, n, chunk_size):
            part = slice(start, min(n, start + chunk_size))
            if noise:
                mu, var = self.decode(z[part])
                out[part] = mu + var.sqrt() * out[part]
            else:
                decoder_mean(z[part], out=out[part])
        return out

    # --- densities ---------------------------------------------------------------------------------
    def elbo(self, w: torch.Tensor, encoder_params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Per-kernel VAE bound (eq. 4), one reparameterised z: E_r log p(w|z) − KL(r(z|w) ‖ N(0,I)); shape (n,)."""
        w = self._check_kernels(w)
        z_mu, z_var = self.encode(w, encoder_params)
        z = z_mu + z_var.sqrt() * torch.randn_like(z_mu)
        w_mu, w_var = self.decode(z)
        return log_normal(w, w_mu, w_var, dims=2) - kl_to_standard_normal(z_mu, z_var)

    @torch.no_grad()
    def log_prob(self, w: torch.Tensor, num_samples: int = 1000, max_batch: int = 65536,
                 generator: torch.Generator | None = None, progress: bool | None = None) -> torch.Tensor:
        """IWAE estimate (appendix B, eq. 18) of log p̂(w) per kernel, shape (n,).

        log (1/K) Σ_k p(w|z_k) p(z_k) / r(z_k|w), z_k ~ r(z|w). Decoder passes are made at most
        `max_batch` (kernel, sample) pairs at a time and combined with a running logsumexp, so
        K = 10,000 fits in memory for any number of kernels. `progress`: a tqdm bar over the decoder
        passes (None: on a terminal only).
        """
        w = self._check_kernels(w)
        num_samples = _count("num_samples", num_samples, minimum=1)
        max_batch = _count("max_batch", max_batch, minimum=1)
        finite = torch.isfinite(w).flatten(1).all(1)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise ValueError(f"log_prob: {bad} of {len(w)} kernels hold NaN or infinite values (first at index "
                             f"{int((~finite).nonzero()[0])}); a density is defined for finite kernels only")
        z_mu, z_var = self.encode(w)
        n, k = w.shape[0], num_samples
        rows = max(1, min(n, max_batch // k))  # kernels per chunk
        cols = max(1, min(k, max_batch // rows))  # samples per chunk
        out = torch.empty(n, dtype=w.dtype, device=w.device)
        passes = math.ceil(n / rows) * math.ceil(k / cols)
        with progress_bar(passes, f"log_prob {n:,} kernels x {k:,} samples", progress) as bar:
            for r0 in range(0, n, rows):
                wr, mu, var = w[r0:r0 + rows], z_mu[r0:r0 + rows], z_var[r0:r0 + rows]
                acc = torch.full((wr.shape[0],), -math.inf, dtype=w.dtype, device=w.device)
                for c0 in range(0, k, cols):
                    s = min(cols, k - c0)
                    eps = torch.randn(wr.shape[0], s, self.z_dim, generator=generator, dtype=w.dtype, device=w.device)
                    z = mu[:, None] + var.sqrt()[:, None] * eps
                    w_mu, w_var = self.decode(z.reshape(-1, self.z_dim))
                    log_w = (log_normal(wr[:, None], w_mu.view(wr.shape[0], s, *w_mu.shape[1:]),
                                        w_var.view(wr.shape[0], s, *w_var.shape[1:]), dims=2)
                             + log_normal(z, torch.zeros_like(z), torch.ones_like(z), dims=1)
                             - log_normal(z, mu[:, None], var[:, None], dims=1))
                    acc = torch.logaddexp(acc, torch.logsumexp(log_w, dim=1))
                    bar.update()
                out[r0:r0 + rows] = acc - math.log(k)
        return out

    def source_kernels(self, split: str = "train") -> torch.Tensor:
        """The (n, k, k) source kernels of `split` ("train" or "heldout") shipped in kernels.safetensors."""
        sets = self.folder_files().kernel_sets()
        if split not in sets:
            raise PriorFormatError(f"kernels.safetensors of this prior has no tensor {split!r} (has {sorted(sets)})")
        return sets[split]

    # --- the folder and the Hub -----------------------------------------------------------------------
    def folder_files(self) -> PriorFiles:
        """Everything besides the weights that save_pretrained writes: config, provenance, card, kernels."""
        return PriorFiles(self.config, self.provenance, self.card, self.kernels_file)

    def generate_model_card(self) -> ModelCard:
        """This prior's card: the one it was loaded or given, else the minimal card its config implies."""
        return ModelCard(self.card if self.card is not None else default_card(self.config))

    def save_pretrained(self, save_directory: str | os.PathLike, *, overwrite: bool = False,
                        push_to_hub: bool = False, repo_id: str | None = None, **push_to_hub_kwargs) -> Any:
        """Write the whole prior folder to `save_directory` and return its path (or, with `push_to_hub`, the push).

        The folder gets model.safetensors, config.json and README.md (this prior's card, or a minimal one),
        and provenance.json and kernels.safetensors when the prior has them: a loaded prior is saved with
        everything it was loaded with. A missing folder, or one holding only prior files, is replaced
        atomically. A folder holding other files is refused (FileExistsError) unless `overwrite`; then the
        prior's files are replaced one by one and the other files are kept. Nothing else is ever deleted.
        """
        target = write_folder(save_directory, self.folder_files(), self.state_dict(), overwrite=overwrite)
        if push_to_hub:
            return self.push_to_hub(repo_id or target.name, **push_to_hub_kwargs)
        return target

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "DWPrior":
        """Load a prior folder strictly: safetensors only, every file and tensor checked (dwp_hub.prior_folder)."""
        files, tensors = read_folder(folder)
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the caller's RNG alone
            model = cls(files.config)
        model.load_state_dict(tensors)
        model.provenance, model.card, model.kernels_file = files.provenance, files.card, files.kernels
        return model.eval()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False, revision: str | None = None) -> "DWPrior":
        """Load a prior by bundled name, local folder or Hub repo id (grammar: ``dwp_hub.hub``).

        ``"dwp/notmnist-7x7"`` (or ``"notmnist-7x7"``) loads the copy bundled with dwp-hub, checked by
        SHA-256, without network access. The Hub is used for other ``ORG/NAME`` ids and whenever it is asked
        for: ``ORG/NAME@REV``, ``revision=``, ``force_download=True`` or the ``hf-hub:`` prefix; files come
        through the Hugging Face cache from one commit (``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_HOME``
        apply). ``prior.source`` records where it came from, with the commit or SHA-256 that pins it. An
        empty name is refused (ValueError); the current folder is ``"."``.
        """
        source = locate(pretrained_model_name_or_path, revision, cache_dir=cache_dir, force_download=force_download,
                        local_files_only=local_files_only, token=token)
        model = cls.from_folder(source.path)
        model.source = source
        return model

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                    token: str | bool | None = None, branch: str | None = None, create_pr: bool = False) -> PushResult:
        """Publish this prior's whole folder to the Hub repo `repo_id` in one commit; returns a PushResult.

        Arguments as huggingface_hub's ``ModelHubMixin.push_to_hub`` (those it has): `branch` is created from the default
        branch when missing, `create_pr` opens a pull request against it instead. The folder is the one
        save_pretrained writes (card, provenance and source kernels included), validated before any network
        access; prior files the repo holds and this prior has not are deleted in the same commit.
        """
        with tempfile.TemporaryDirectory(prefix="dwp-hub-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "prior")
            return push_folder(folder, repo_id, revision=branch, private=private, commit_message=commit_message,
                               create_pr=create_pr, token=token)

    def extra_repr(self) -> str:
        c = self.config
        return f"kernel_size={c.kernel_size}, z_dim={c.z_dim}, architecture={c.architecture}, domain={c.domain}"


def _count(what: str, value: Any, *, minimum: int) -> int:
    """`value` as an int >= `minimum` (Python, numpy or 0-d torch integers); TypeError/ValueError naming `what`."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r} ({type(value).__name__})") from None
    if number < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {number}")
    return number
