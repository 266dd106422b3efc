"""The networks of the experiments: the paper's MNIST classifier and appendix G's convolutional VAE.

- The classifier is the source architecture ``FConvMNIST`` (appendix H.2: 7×7 conv → LeakyReLU → max-pool →
  5×5 conv → LeakyReLU → max-pool → linear) at widths (32, 128), or scaled by k for Fig. 3.
- ``CIFARClassifier`` is the paper's Bayesian CIFAR-10 net (appendix H.3, ``CIFARNetNew``; table 3): 7×7 conv
  (128) → LeakyReLU → max-pool → 5×5 conv (256) → LeakyReLU → 5×5 conv (256) → LeakyReLU → linear 512 →
  LeakyReLU → linear to the classes, for 3×32×32 inputs. No batch norm: the paper uses it only in the source
  nets the priors learnt from, not in the nets its Fig. 2 trains. Every width is scaled by one factor.
- ``ConvVAE`` follows appendix G's table: encoder 7×7 conv (64, stride 2) → 5×5 conv (128) → two linear
  heads; decoder 5×5 transposed convs (128, 64 stride 2, 1 stride 2) from a z_dim×1×1 map. A Bernoulli
  likelihood over pixel intensities in [0, 1]; the ELBO is reported in nats per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.source_nets import LEAK, FConvMNIST

PAPER_WIDTHS = (32, 128)
CIFAR_WIDTHS = (128, 256, 256, 512)  # the three convs and the hidden linear layer


def classifier(scale: float = 1.0, num_classes: int = 10) -> FConvMNIST:
    """The paper's MNIST net with both conv widths multiplied by `scale` (at least one filter each)."""
    widths = tuple(max(1, round(w * scale)) for w in PAPER_WIDTHS)
    return FConvMNIST(widths, num_classes=num_classes)


class CIFARClassifier(nn.Module):
    """Appendix H.3's Bayesian CIFAR net (as a deterministic module; bayesianize makes its convs Bayesian)."""

    def __init__(self, widths: tuple[int, int, int, int] = CIFAR_WIDTHS, num_classes: int = 10,
                 in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        a, b, c, d = widths
        side = (image_size - 6) // 2 - 8  # 32 -> 26 -> 13 -> 9 -> 5
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, a, 7), nn.LeakyReLU(LEAK), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 5), nn.LeakyReLU(LEAK),
            nn.Conv2d(b, c, 5), nn.LeakyReLU(LEAK), nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(c * side * side, d), nn.LeakyReLU(LEAK), nn.Linear(d, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def cifar_classifier(scale: float = 1.0, num_classes: int = 10) -> CIFARClassifier:
    """The paper's Bayesian CIFAR net with every width (three convs, hidden linear) multiplied by `scale`."""
    return CIFARClassifier(tuple(max(1, round(w * scale)) for w in CIFAR_WIDTHS), num_classes=num_classes)


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

