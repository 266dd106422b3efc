"""Source networks: the CNNs whose learnt kernels the priors are fitted to.

* ``fconv-mnist`` — the paper's notMNIST/MNIST net (appendix H.2): 7×7 conv → LeakyReLU → max-pool →
  5×5 conv → LeakyReLU → max-pool → linear. The paper used widths 256/512; widths are a parameter.
  Its first layer gives the 7×7 kernels (one input channel: one kernel per filter), its second the 5×5.
* ``conv3x3-mnist`` — ours, for 3×3 kernels on 28×28 glyphs: 3×3 conv (width a) → LeakyReLU → max-pool →
  3×3 conv (b) → LeakyReLU → max-pool → 3×3 conv (c) → LeakyReLU → linear, all convs padded. The
  inner two layers give the 3×3 kernels (a·b + b·c per net); the first layer, with one input channel,
  is not used, since 3×3 kernels in practice sit inside networks, behind other convolutions.
* ``cifar-net`` — the paper's CIFAR-100 source net (appendix H.3): 7×7, 5×5, 5×5, 5×5 convs with batch
  norm and LeakyReLU, max-pool after the first, then a 512-unit batch-normed hidden layer.
* ``resnet-cifar`` — ours, for 3×3 kernels on 32×32 photographs: the CIFAR ResNet of He et al. (2016) with
  one basic block per stage: 3×3 stem (width a) → blocks of widths a, b, c (stride 1, 2, 2) → global
  average pool → linear. Every 3×3 conv inside a block gives kernels; the stem, with three input
  channels, does not, as in ``conv3x3-mnist``.
"""

from __future__ import annotations

import torch
from torch import nn

LEAK = 0.01


class FConvMNIST(nn.Module):
    """Appendix H.2 source net for 1×28×28 inputs."""

    def __init__(self, widths: tuple[int, int] = (256, 512), num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        w1, w2 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w1, 7), nn.LeakyReLU(LEAK), nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 5), nn.LeakyReLU(LEAK), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        side = ((image_size - 6) // 2 - 4) // 2
        self.classifier = nn.Linear(w2 * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Conv3x3MNIST(nn.Module):
    """Our 3×3 source net for 1×28×28 inputs (see the module docstring)."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 64), num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, a, 3, padding=1), nn.LeakyReLU(LEAK), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1), nn.LeakyReLU(LEAK), nn.MaxPool2d(2),
            nn.Conv2d(b, c, 3, padding=1), nn.LeakyReLU(LEAK),
            nn.Flatten(),
        )
        side = image_size // 4
        self.classifier = nn.Linear(c * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CIFARNet(nn.Module):
    """Appendix H.3 source net for 3×32×32 inputs."""

    def __init__(self, widths: tuple[int, int, int, int] = (128, 256, 256, 512), num_classes: int = 100,
                 in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        a, b, c, d = widths
        side = (image_size - 6) // 2 - 12

        def block(i: int, o: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, k), nn.BatchNorm2d(o), nn.LeakyReLU(LEAK)]

        self.features = nn.Sequential(
            *block(in_channels, a, 7), nn.MaxPool2d(2), *block(a, b, 5), *block(b, c, 5), *block(c, d, 5), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(d * side * side, 512), nn.BatchNorm1d(512), nn.LeakyReLU(LEAK), nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3×3 convs with batch norm and a residual connection (1×1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """A CIFAR-style ResNet with one basic block per stage, for 3×32×32 inputs (see the module docstring)."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10, in_channels: int = 3,
                 image_size: int = 32) -> None:
        super().__init__()
        a, b, c = widths
        self.stem = nn.Sequential(nn.Conv2d(in_channels, a, 3, 1, 1, bias=False), nn.BatchNorm2d(a), nn.ReLU())
        self.blocks = nn.Sequential(BasicBlock(a, a, 1), BasicBlock(a, b, 2), BasicBlock(b, c, 2))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blocks(self.stem(x)))


RESNET_CIFAR_3X3_LAYERS = tuple(f"blocks.{i}.conv{j}" for i in range(3) for j in (1, 2))

SOURCE_ARCHITECTURES: dict[str, type[nn.Module]] = {
    "fconv-mnist": FConvMNIST,
    "conv3x3-mnist": Conv3x3MNIST,
    "cifar-net": CIFARNet,
    "resnet-cifar": ResNetCIFAR,
}


SOURCE_INITS = ("default", "xavier")


def build_source_net(arch: str, widths: tuple[int, ...], num_classes: int, image_shape: tuple[int, ...],
                     init: str = "default") -> nn.Module:
    """Instantiate source architecture `arch` for images of shape (C, H, W).

    init: "default" keeps PyTorch's layer init; "xavier" redraws every conv and linear weight Xavier-normal
    (biases kept), the original implementation's init of its source nets.
    """
    if arch not in SOURCE_ARCHITECTURES:
        raise ValueError(f"unknown source architecture {arch!r}; known: {sorted(SOURCE_ARCHITECTURES)}")
    if init not in SOURCE_INITS:
        raise ValueError(f"unknown source-net init {init!r}; known: {', '.join(SOURCE_INITS)}")
    c, h, _ = image_shape
    model = SOURCE_ARCHITECTURES[arch](tuple(widths), num_classes=num_classes, in_channels=c, image_size=h)
    if init == "xavier":
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
    return model


def channels_last_is_safe(model: nn.Module) -> bool:
    """Whether `model` can train in channels-last layout (faster on CPU) without the oneDNN weight-gradient bug.

    The weight gradient of a strided 1×1 conv with fewer than 8 input channels, channels-last, hangs or crashes in
    the AVX2 kernel of torch 2.14's oneDNN (seen on an AVX2-only AMD EPYC with 2–7 input channels; the same conv in
    the default layout ran clean there). The tiny ResNet's 4-channel shortcut is such a conv.
    """
    return not any(m.kernel_size == (1, 1) and m.stride != (1, 1) and m.in_channels < 8
                   for m in conv_layers(model).values())


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The model's conv layers by name, in order ('features.0', 'features.3', …)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
