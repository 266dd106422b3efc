"""What in the source data moves the source nets' 5x5 shapes? One short net per variant (issue #12, sessions 31-32).

    PYTHONPATH=. python training/results/runs/glyph-size/glyph_nets.py VARIANT EPOCHS SEED

VARIANT ``base`` trains on the build's notMNIST-style renders as they are (all installed fonts, 6 jittered renders a
glyph, glyphs 20-28 pixels on their long side); a number S first crops each image to its ink and scales it to S pixels
on its long side, centred (``28``: glyphs that fill the box, as in notMNIST; ``20``: MNIST's digit box); ``shiftK``
moves each render by a random whole-pixel offset in [-K, K] along each axis, dropping ink pushed past the border
(offsets drawn once per split, so every epoch sees the same images: more spatial spread than the renders' own);
``invertP`` turns a fixed random P percent of the renders into dark glyphs on a white box (x -> 1 - x), to see whether
glyphs of both polarities move the kernels' sign balance and shapes; ``labelsP`` keeps the renders and gives a fixed
random P percent of the training images a label drawn uniformly from the ten (test labels untouched), as a noisy dataset
would; ``standard`` keeps the renders and standardises every image with the training split's pixel mean and std
(background -0.57 and full ink 2.14 instead of 0 and 1), as a pipeline that normalises its inputs would feed them.
The net is the paper's source protocol at widths 32/64 (Xavier init, Adam 1e-3 decaying linearly to 0, batch 256,
L2 1e-3 on the conv layers), for EPOCHS epochs, torch seed SEED. Prints the test accuracy, how many second-layer kernels
are above norm 0.05 and their unit-norm shape statistics (`shrinkage/unit_shapes.py`), and writes every second-layer
kernel as a kernel-set file ``glyph-<VARIANT>-5x5.safetensors`` here (``glyph-<VARIANT>-s<SEED>-5x5`` for SEED > 0), for
``dense_vae --kernel-set``, and the first layer's as ``…-7x7.safetensors`` (session 32 on). Uses the render cache of
``python -m training build`` under build/paper3/work/data (rendered on first use).
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from training.checkpoint import save_tensors
from training.datasets import notmnist_style
from training.loops import l2_parameters
from training.source_nets import build_source_net

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shrinkage"))
from unit_shapes import row  # noqa: E402

HERE = Path(__file__).parent


def to_side(images: np.ndarray, side: int) -> np.ndarray:
    """Each 28×28 uint8 image cropped to its ink, scaled (aspect kept) to `side` pixels on its long side, centred."""
    out = np.zeros_like(images)
    for i, image in enumerate(images):
        ys, xs = np.nonzero(image)
        if len(ys) == 0:
            continue
        crop = Image.fromarray(image[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        scale = side / max(crop.size)
        size = (max(1, min(28, round(crop.size[0] * scale))), max(1, min(28, round(crop.size[1] * scale))))
        small = np.asarray(crop.resize(size, Image.LANCZOS))
        y0, x0 = (28 - size[1]) // 2, (28 - size[0]) // 2
        out[i, y0:y0 + size[1], x0:x0 + size[0]] = small
    return out


def shifted(data: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Each (1, 28, 28) image moved by a random offset in [-k, k] on each axis; what leaves the box is dropped."""
    rng = np.random.default_rng(seed)
    out = torch.zeros_like(data)
    for i, (dy, dx) in enumerate(rng.integers(-k, k + 1, size=(len(data), 2))):
        ys, yd = (slice(0, 28 - dy), slice(dy, 28)) if dy >= 0 else (slice(-dy, 28), slice(0, 28 + dy))
        xs, xd = (slice(0, 28 - dx), slice(dx, 28)) if dx >= 0 else (slice(-dx, 28), slice(0, 28 + dx))
        out[i, :, yd, xd] = data[i, :, ys, xs]
    return out


def images(data: torch.Tensor, variant: str, seed: int) -> torch.Tensor:
    """The (n, 1, 28, 28) images in [0, 1] of `variant`: as rendered (``base``, ``labelsP``, ``standard``), moved by
    `shifted` or partly inverted (offsets and inverted images drawn with `seed`), or rescaled by `to_side`."""
    if variant in ("base", "standard") or variant.startswith("labels"):
        return data
    if variant.startswith("shift"):
        return shifted(data, int(variant[5:]), seed)
    if variant.startswith("invert"):
        flip = torch.from_numpy(np.random.default_rng(seed).random(len(data)) < int(variant[6:]) / 100)
        return torch.where(flip[:, None, None, None], 1 - data, data)
    raw = (data[:, 0] * 255).round().to(torch.uint8).numpy()  # the renders' exact bytes
    return torch.from_numpy(to_side(raw, int(variant))).float().div(255)[:, None]


def noisy_labels(labels: torch.Tensor, percent: int, seed: int) -> torch.Tensor:
    """`labels` with a fixed random `percent` of them replaced by a class drawn uniformly from the ten."""
    rng = np.random.default_rng(seed)
    hit = torch.from_numpy(rng.random(len(labels)) < percent / 100)
    drawn = torch.from_numpy(rng.integers(0, 10, size=len(labels))).to(labels.dtype)
    return torch.where(hit, drawn, labels)


def main() -> None:
    variant, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    data = notmnist_style("build/paper3/work/data", progress=False)
    xtr, ytr = images(data.train.tensors[0], variant, 0), data.train.tensors[1]
    xte, yte = images(data.test.tensors[0], variant, 1), data.test.tensors[1]
    if variant.startswith("labels"):
        ytr = noisy_labels(ytr, int(variant[6:]), 0)
    if variant == "standard":
        mean, std = xtr.mean(), xtr.std()
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    print(variant, "ink mean", round(xtr.mean().item(), 4), "images", len(xtr), flush=True)
    torch.manual_seed(seed)
    net = build_source_net("fconv-mnist", (32, 64), 10, (1, 28, 28), init="xavier")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps = epochs * (len(xtr) // 256)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    order = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=order)
        for i in range(0, len(xtr) - 255, 256):
            idx = perm[i:i + 256]
            penalty = sum(p.pow(2).sum() for p in l2_parameters(net, "features"))
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx]) + 1e-3 * penalty
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    kernels = net.features[3].weight.detach().reshape(-1, 5, 5)
    norms = kernels.flatten(1).norm(dim=1)
    kept = norms > 0.05
    print(f"{variant} epochs {epochs} acc {acc:.4f} {time.time() - t0:.0f}s; 5x5 norm>0.05: {kept.sum().item()} "
          f"of {len(norms)}, median {norms[kept].median():.3f}")
    row(f"{variant} e{epochs} 5x5 >0.05", kernels[kept])
    name = variant if seed == 0 else f"{variant}-s{seed}"
    record = {"made_by": "training/results/runs/glyph-size/glyph_nets.py", "variant": variant, "epochs": str(epochs),
              "seed": str(seed), "test_accuracy": f"{acc:.4f}"}
    for k, w in ((5, kernels), (7, net.features[0].weight.detach().reshape(-1, 7, 7))):
        save_tensors(HERE / f"glyph-{name}-{k}x{k}.safetensors", {"train": w, "heldout": torch.zeros(0, k, k)}, record)


if __name__ == "__main__":
    main()
