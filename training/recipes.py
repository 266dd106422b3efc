"""Build recipes: for each prior name, the data, source networks, kernel layers and VAE schedule.

Priors that share a ``SourceRecipe`` share its trained networks (e.g. notmnist-7x7 and notmnist-5x5 take
the first and second layer of the same nets). ``tiny()`` shrinks a recipe to seconds on a CPU, for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .loops import L2_SCOPES
from .pinned_wheels import FACENET_PYTORCH, RAPIDOCR_ONNXRUNTIME, PinnedWheel
from .source_nets import RESNET_CIFAR_3X3_LAYERS, SOURCE_INITS


@dataclass(frozen=True)
class SourceRecipe:
    """A family of independently seeded source CNNs trained on one data set."""

    name: str
    dataset: str
    arch: str
    widths: tuple[int, ...]
    num_nets: int
    heldout_nets: int  # the last nets' kernels form the held-out kernel split
    epochs: int
    batch_size: int = 128
    l2: float = 1e-3  # coefficient of the sum of squared weights added to the loss (paper: 1e-3 notMNIST, 1e-4 CIFAR)
    # What the L2 term covers (training/loops.py): "weights", every weight of the net, or "features", the conv
    # layers' weights and biases and not the classifier, as the original implementation's train-net.py.
    l2_on: str = "weights"
    lr: float = 1e-3
    # Initial weights: "default" (PyTorch's layer init) or "xavier" (Xavier-normal conv and linear weights, as the
    # original implementation's source nets). PyTorch's init gives a 1-channel 7x7 conv kernels of norm 0.58,
    # Xavier 0.09: what training adds to that start is what the kernel set (and so the prior) sees.
    init: str = "default"
    # Net i is seeded seed·1000 + first_seed + i: machines that cannot share files (GPU leases) train disjoint nets
    # by giving each its own first_seed, and their kernel sets are pooled later (experiments/dense_vae.py).
    first_seed: int = 0

    def tiny(self) -> "SourceRecipe":
        widths = {"fconv-mnist": (8, 8), "conv3x3-mnist": (4, 8, 8), "cifar-net": (4, 8, 8, 8),
                  "resnet-cifar": (4, 8, 8)}[self.arch]
        return replace(self, name=f"{self.name}-tiny", widths=widths, num_nets=2, heldout_nets=1, epochs=1, batch_size=64)


HELDOUT_UNITS = ("checkpoint", "layer")


@dataclass(frozen=True)
class CheckpointSources:
    """Source networks given as trained checkpoints (training/source_checkpoints.py, training/source_readers.py)
    instead of trained here.

    `checkpoints` are safetensors specs or source files (.onnx, .pt/.pth, .npy/.npz); with a `wheel`, paths
    inside that pinned wheel (training/pinned_wheels.py), each read against its pinned SHA-256.

    Held out, with `heldout_by` "checkpoint": the last `heldout_nets` checkpoints; with a single checkpoint, or
    `heldout_by` "layer", every `heldout_every`-th k×k layer of them all in order (a network cannot be held out
    from itself, and one file holding nearly all the kernels makes a per-file split lopsided); with a single
    layer a random 1/`heldout_every` of its kernels.
    """

    checkpoints: tuple[str, ...]
    heldout_nets: int = 1
    heldout_every: int = 5
    heldout_by: str = "checkpoint"
    wheel: PinnedWheel | None = None
    # Read .pt/.pth files that no recipe pins (weights only; the pickle is still parsed): the user's explicit choice.
    trust_unpinned_pickle: bool = False

    def __post_init__(self) -> None:
        if self.heldout_by not in HELDOUT_UNITS:
            raise ValueError(f"heldout_by {self.heldout_by!r}: known: {', '.join(HELDOUT_UNITS)}")

    def tiny(self) -> "CheckpointSources":
        return self


@dataclass(frozen=True)
class PriorRecipe:
    """One prior: which kernels of which source nets, and how the VAE is fitted and evaluated."""

    name: str
    domain: str
    kernel_size: int
    source: SourceRecipe | CheckpointSources
    layers: tuple[str, ...]  # of the source nets trained here; every k×k layer of checkpoints
    vae_epochs: int
    # A floor on the VAE's optimiser steps: each epoch passes over enough copies of the training kernels to give at
    # least this many in ``vae_epochs`` epochs. 300 epochs of 757 kernels are 1,800 steps, after which the 7x7
    # decoder means had collapsed to nearly one blob (held-out IWAE 83.44 nats); 10,000 steps gave 87.91 and varied
    # samples.
    vae_min_steps: int = 10_000
    max_train_kernels: int = 100_000  # random subset of the kept training kernels the VAE sees
    vae_batch_size: int = 128
    vae_lr: float = 1e-3
    iwae_samples: int = 1000
    iwae_kernels: int = 2000
    z_dim: int | None = None  # None: the architecture's paper default (dwp_hub/architectures.py)
    architecture: str | None = None  # the VAE's (dwp_hub/architectures.py); None: the paper's for the kernel size
    # Latent sizes tried besides the paper default; the best on half of the held-out kernels ships, scored on
    # the other half (training/build.py). Empty: the paper default (or z_dim) only.
    z_candidates: tuple[int, ...] = ()
    tiny_build: bool = False

    def tiny(self) -> "PriorRecipe":
        return replace(self, source=self.source.tiny(), vae_epochs=2, vae_min_steps=0, max_train_kernels=2000,
                       iwae_samples=20, iwae_kernels=50, tiny_build=True)

    def vae_repeats_for(self, train_kernels: int) -> int:
        """How many copies of the `train_kernels` kernels one VAE epoch passes over: 1, or enough for ``vae_epochs``
        epochs to take at least ``vae_min_steps`` steps (whole epochs of a few steps each would spend most of
        their time on per-epoch overhead)."""
        steps_per_epoch = math.ceil(self.vae_min_steps / self.vae_epochs)
        return max(1, math.ceil(steps_per_epoch * self.vae_batch_size / max(1, train_kernels)))


NOTMNIST_FCONV = SourceRecipe("notmnist-fconv", "notmnist-style", "fconv-mnist", (256, 128), num_nets=16,
                              heldout_nets=2, epochs=5, batch_size=256)
NOTMNIST_CONV3 = SourceRecipe("notmnist-conv3x3", "notmnist-style", "conv3x3-mnist", (32, 64, 64), num_nets=12,
                              heldout_nets=2, epochs=5, batch_size=256)
MNIST5K_FCONV = SourceRecipe("mnist5k-fconv", "mnist-5k", "fconv-mnist", (256, 128), num_nets=12, heldout_nets=2,
                             epochs=20)
MNIST5K_CONV3 = SourceRecipe("mnist5k-conv3x3", "mnist-5k", "conv3x3-mnist", (32, 64, 64), num_nets=12,
                             heldout_nets=2, epochs=20)
CIFAR100_NET = SourceRecipe("cifar100-net", "cifar100", "cifar-net", (128, 256, 256, 512), num_nets=10,
                            heldout_nets=2, epochs=300, l2=1e-4)

# Photographs (training/photos.py, training/photo_tiles.py): source nets learn which training photo a 32×32
# tile comes from. The paper's CIFAR net gives 7x7 (first layer) and 5x5 kernels, a CIFAR ResNet the 3x3
# ones. Widths, counts and epochs are what 2 CPU cores train in about an hour (training/results/natural).
PHOTO_PRETEXT = "photo-id"
PHOTO_CIFARNET = SourceRecipe("photo-cifarnet", PHOTO_PRETEXT, "cifar-net", (128, 64, 64, 128), num_nets=8,
                              heldout_nets=2, epochs=6, l2=1e-4)
# photo-7x7's own nets: a first layer of 512 filters gives 1,536 7x7 kernels per net (128 gives 384); the first
# layer's cost per kernel barely changes with its width (measured: 0.79-0.92 s per kernel). Xavier init: with
# PyTorch's default init (element std 0.048 here, 5x Xavier's 0.0089) the first layer sits behind batch norm, and
# Adam's absolute steps left its kernels at a median cosine of 0.978 to their own init after 6 epochs (from
# Xavier's: 0.70-0.73). Four nets, two at a time, take about an hour of 2 CPU cores.
PHOTO_CIFARNET_WIDE = SourceRecipe("photo-cifarnet-wide-xavier", PHOTO_PRETEXT, "cifar-net", (512, 32, 64, 128),
                                   num_nets=4, heldout_nets=1, epochs=6, l2=1e-4, init="xavier")
PHOTO_RESNET = SourceRecipe("photo-resnet", PHOTO_PRETEXT, "resnet-cifar", (16, 32, 64), num_nets=4, heldout_nets=1,
                            epochs=10, l2=1e-4)

# Files inside the pinned wheels; the last of each is held out when held out by file.
MTCNN_MEMBERS = tuple(f"facenet_pytorch/data/{net}.pt" for net in ("onet", "pnet", "rnet"))
PPOCR_MEMBERS = tuple(f"rapidocr_onnxruntime/models/{m}.onnx" for m in
                      ("ch_PP-OCRv4_det_infer", "ch_PP-OCRv4_rec_infer", "ch_ppocr_mobile_v2.0_cls_infer"))

RECIPES: dict[str, PriorRecipe] = {
    r.name: r
    for r in (
        PriorRecipe("notmnist-7x7", "notmnist", 7, NOTMNIST_FCONV, ("features.0",), vae_epochs=300),
        PriorRecipe("notmnist-5x5", "notmnist", 5, NOTMNIST_FCONV, ("features.3",), vae_epochs=20),
        PriorRecipe("notmnist-3x3", "notmnist", 3, NOTMNIST_CONV3, ("features.3", "features.6"), vae_epochs=30,
                    z_candidates=(4, 8)),  # and the paper's 2, chosen only if it scores best
        PriorRecipe("mnist-7x7", "mnist", 7, MNIST5K_FCONV, ("features.0",), vae_epochs=300),
        PriorRecipe("mnist-5x5", "mnist", 5, MNIST5K_FCONV, ("features.3",), vae_epochs=30),
        PriorRecipe("mnist-3x3", "mnist", 3, MNIST5K_CONV3, ("features.3", "features.6"), vae_epochs=30),
        # The photo priors are dense VAEs, so that the exact DWP bound stays cheap: RGB models take them by
        # default (dwp_hub/domains.py). A dense fit is cheap enough for 50,000 steps, and needs them: at 11,520
        # the 5x5 one scored below the full-covariance Gaussian. training/results/natural compares them with the
        # paper's convolutional VAEs fitted to the same kernels.
        PriorRecipe("photo-7x7", "photo", 7, PHOTO_CIFARNET_WIDE, ("features.0",), vae_epochs=60,
                    vae_min_steps=50_000, architecture="dwp-dense-7x7", z_candidates=(4, 8)),
        PriorRecipe("photo-5x5", "photo", 5, PHOTO_CIFARNET, ("features.4", "features.7", "features.10"),
                    vae_epochs=15, vae_min_steps=50_000, max_train_kernels=50_000, architecture="dwp-dense-5x5",
                    z_candidates=(8,)),
        # photo-3x3 at width 32: nearly all of an RGB timm model's kernels are 3x3, and at width 64 the exact bound
        # made resnet18 at batch 32 of 224x224 1.35-1.49x an N(0,1) step (width 32: 1.16-1.30x), for 0.03 nats a
        # kernel (training/results/natural).
        PriorRecipe("photo-3x3", "photo", 3, PHOTO_RESNET, RESNET_CIFAR_3X3_LAYERS, vae_epochs=30,
                    vae_min_steps=50_000, architecture="dwp-dense32-3x3", z_candidates=(4,)),
        # Trained networks from pinned wheels, fitted with dense VAEs for the same reason.
        # MTCNN held out by file: its order onet, pnet, rnet holds out rnet (1,428 of 8,370 kernels). PP-OCR's
        # 3x3 kernels sit 95% in the detector, so text-3x3 holds out every 5th layer across the three models.
        PriorRecipe("face-3x3", "face", 3, CheckpointSources(MTCNN_MEMBERS, wheel=FACENET_PYTORCH), (),
                    vae_epochs=30, architecture="dwp-dense-3x3", z_candidates=(4, 8)),
        PriorRecipe("text-3x3", "text", 3, CheckpointSources(PPOCR_MEMBERS, heldout_by="layer",
                                                             wheel=RAPIDOCR_ONNXRUNTIME), (),
                    vae_epochs=30, architecture="dwp-dense-3x3", z_candidates=(4, 8)),
        PriorRecipe("text-5x5", "text", 5, CheckpointSources(PPOCR_MEMBERS, wheel=RAPIDOCR_ONNXRUNTIME), (),
                    vae_epochs=30, architecture="dwp-dense-5x5", z_candidates=(8,)),
        PriorRecipe("cifar100-7x7", "cifar", 7, CIFAR100_NET, ("features.0",), vae_epochs=300),
        PriorRecipe("cifar100-5x5", "cifar", 5, CIFAR100_NET, ("features.4", "features.7", "features.10"),
                    vae_epochs=30),
    )
}


# VAE epochs of a prior built from checkpoints, by kernel size (as the recipes above).
CHECKPOINT_VAE_EPOCHS = {7: 300, 5: 30, 3: 30}


def checkpoint_recipe(name: str, checkpoints: tuple[str, ...], kernel_size: int | None = None,
                      domain: str | None = None, z_dim: int | None = None,
                      trust_unpinned_pickle: bool = False) -> PriorRecipe:
    """A recipe for prior `name` (``<domain>-<k>x<k>``) from trained checkpoints: no data, no source training.

    `trust_unpinned_pickle` lets .pt/.pth checkpoints that no recipe pins be read (weights only)."""
    stem, _, size = name.rpartition("-")
    k = kernel_size
    if k is None and size.count("x") == 1 and size.split("x")[0] == size.split("x")[1] and size.split("x")[0].isdigit():
        k = int(size.split("x")[0])
    if k not in CHECKPOINT_VAE_EPOCHS:
        raise ValueError(f"prior {name!r}: give --kernel-size (3, 5 or 7) or a name ending in -3x3, -5x5 or -7x7")
    if not checkpoints:
        raise ValueError("give at least one --checkpoint")
    sources = CheckpointSources(tuple(checkpoints), trust_unpinned_pickle=trust_unpinned_pickle)
    return PriorRecipe(name, domain or stem or name, k, sources, (),
                       vae_epochs=CHECKPOINT_VAE_EPOCHS[k], z_dim=z_dim)


SOURCE_FIELDS = ("widths", "num_nets", "heldout_nets", "epochs", "batch_size", "l2", "l2_on", "lr", "init",
                 "first_seed")
TEXT_SOURCE_FIELDS = {"init": SOURCE_INITS, "l2_on": L2_SCOPES}
TINY_SOURCE_FIELDS = ("widths", "num_nets", "heldout_nets", "epochs", "batch_size")  # what SourceRecipe.tiny() sets


def with_source_settings(recipe: PriorRecipe, settings: dict[str, str]) -> PriorRecipe:
    """`recipe` with source-net fields changed (an ablation), e.g. ``{"l2": "1e-4", "widths": "256,512"}``.

    The source recipe's name gets the changes appended, so its nets never mix with the original's.
    """
    if not isinstance(recipe.source, SourceRecipe):
        raise ValueError(f"prior {recipe.name!r} has no source nets trained here to change")
    changes: dict[str, object] = {}
    for key, value in settings.items():
        if key not in SOURCE_FIELDS:
            raise ValueError(f"unknown source setting {key!r}; known: {', '.join(SOURCE_FIELDS)}")
        if key in TEXT_SOURCE_FIELDS and value not in TEXT_SOURCE_FIELDS[key]:
            raise ValueError(f"source setting {key}={value!r}: known: {', '.join(TEXT_SOURCE_FIELDS[key])}")
        try:
            changes[key] = (tuple(int(v) for v in value.split(",")) if key == "widths" else
                            value if key in TEXT_SOURCE_FIELDS else float(value) if key in ("l2", "lr") else int(value))
        except ValueError:
            raise ValueError(f"source setting {key}={value!r}: not a valid value") from None
    source = replace(recipe.source, name=f"{recipe.source.name}-{source_settings_suffix(settings)}", **changes)
    return replace(recipe, source=source)


def source_settings_of(recipe: PriorRecipe) -> dict[str, str]:
    """The ``--source-set`` settings that turn the named recipe's source nets into `recipe`'s (empty: none)."""
    named = RECIPES.get(recipe.name)
    if named is None or not isinstance(recipe.source, SourceRecipe) or not isinstance(named.source, SourceRecipe):
        return {}
    base = named.source.tiny() if recipe.tiny_build else named.source
    return {key: ",".join(map(str, value)) if key == "widths" else f"{value:g}" if isinstance(value, float) else
            str(value) for key in SOURCE_FIELDS if (value := getattr(recipe.source, key)) != getattr(base, key)}


def source_settings_suffix(settings: dict[str, str]) -> str:
    return "-".join(f"{k}{settings[k].replace(',', 'x')}" for k in sorted(settings))


def get_recipe(name: str, tiny: bool = False) -> PriorRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown prior {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name].tiny() if tiny else RECIPES[name]
