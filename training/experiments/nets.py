"""The networks of the experiments: the paper's MNIST classifier and appendix G's convolutional VAE.

- The classifier is the source architecture ``FConvMNIST`` (appendix H.2: 7×7 conv → LeakyReLU → max-pool →
  5×5 conv → LeakyReLU → max-pool → linear) at widths (32, 128), or scaled by k for Fig. 3.
- ``ConvVAE`` follows appendix G's table: encoder 7×7 conv (64, stride 2) → 5×5 conv (128) → two linear
  heads; decoder 5×5 transposed convs (128, 64 stride 2, 1 stride 2) from a z_dim×1×1 map. A Bernoulli
  likelihood over pixel intensities in [0, 1]; the ELBO is reported in nats per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.source_nets import FConvMNIST

PAPER_WIDTHS = (32, 128)


def classifier(scale: float = 1.0, num_classes: int = 10) -> FConvMNIST:
    """The paper's MNIST net with both conv widths multiplied by `scale` (at least one filter each)."""
    widths = tuple(max(1, round(w * scale)) for w in PAPER_WIDTHS)
    return FConvMNIST(widths, num_classes=num_classes)


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every convolution and transposed convolution of `model`, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def xavier_(model: nn.Module, generator: torch.Generator) -> None:
    """Glorot/Xavier-uniform weights for every (transposed) conv of `model`; biases keep their init."""
    for _, m in conv_layers(model):
        nn.init.xavier_uniform_(m.weight, generator=generator)


class ConvVAE(nn.Module):
    """Appendix G's MNIST VAE (28×28×1 images, latent `z_dim`)."""

    def __init__(self, z_dim: int = 16) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 64, 7, stride=2), nn.ELU(),  # 28 -> 11
            nn.Conv2d(64, 128, 5), nn.ELU(),  # 11 -> 7
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(128 * 7 * 7, z_dim)
        self.fc_logvar = nn.Linear(128 * 7 * 7, z_dim)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(z_dim, 128, 5), nn.ELU(),  # 1 -> 5
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ELU(),  # 5 -> 13
            nn.ConvTranspose2d(64, 1, 5, stride=2, padding=1, output_padding=1),  # 13 -> 28, logits
        )

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image ELBO (nats), one reparameterised z: E_q log p(x|z) − KL(q(z|x) ‖ N(0, I))."""
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        logits = self.decoder(z[:, :, None, None])
        log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return log_lik - kl

