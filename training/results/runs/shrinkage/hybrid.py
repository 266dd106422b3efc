"""Kernel sets that swap shapes and norms between the authors' 5x5 samples and our kernels (issue #12, session 30).

    PYTHONPATH=. python training/results/runs/shrinkage/hybrid.py SAMPLES OURS OUT_DIR

SAMPLES is the 20,000 samples of the authors' 5x5 VAE with decoder noise (`vae-objective/authors_samples.py`;
measurement only, never shipped); OURS the shipped 5x5's kernel-set files, '+'-joined, filtered by the build's rule
(`dense_vae.kernel_set`). Writes five kernel-set files for `dense_vae --kernel-set`:

- ``their-shapes-our-norms.safetensors``: each of the authors' samples rescaled to a norm drawn (with replacement,
  seed 0) from our training kernels' norms; held out: their held-out samples, rescaled the same way.
- ``our-shapes-their-norms.safetensors``: our training kernels under the 8 symmetries of the square (25,944, about
  as many as the samples), each rescaled to a norm drawn from the samples' norms; held out: ours, rescaled so.
- ``our-shapes-their-spread.safetensors``: as the second, with the drawn norms scaled by our training kernels' median
  norm over the samples' (0.111 / 0.175): their spread of norms (no small-norm tail) at our scale.
- ``our-kernels-negative-sums.safetensors``: our training kernels under the 8 symmetries, norms and shapes as they
  are, but a quarter of those whose weights sum above zero negated (drawn with seed 0), so that 38% sum above
  zero, as 39% of the samples do (ours: 51%); held out: ours as they are.
- ``our-kernels-positive-sums.safetensors``: its control, a quarter of those summing below zero negated instead.

A prior fitted to the first keeps the authors' shapes with our small-norm tail; one fitted to the second keeps our
shapes with their norms; the third tells the spread of the norms from their scale; the fourth and fifth change only
how many of our kernels sum above zero, in opposite directions. Fig. 2 with each (runs README, session 30) says
which property carries the gain. Each file comes out byte for byte the same whether or not the later ones are
written.
"""

import sys
from pathlib import Path

import torch

from training.checkpoint import load_tensors, save_tensors
from training.experiments.dense_vae import dihedral, kernel_set


def renorm(kernels: torch.Tensor, norms: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """`kernels` each scaled to a norm drawn with replacement from `norms`."""
    drawn = norms[torch.randint(len(norms), (len(kernels),), generator=g)]
    return kernels / kernels.flatten(1).norm(dim=1)[:, None, None] * drawn[:, None, None]


def negate_quarter(kernels: torch.Tensor, above: bool, g: torch.Generator) -> torch.Tensor:
    """A copy of `kernels` with a quarter (drawn) of those summing above zero (`above`), or below, negated."""
    sums = kernels.flatten(1).sum(1)
    flip = ((sums > 0) if above else (sums < 0)) & (torch.rand(len(kernels), generator=g) < 0.25)
    return torch.where(flip[:, None, None], -kernels, kernels)


def save(name: str, train: torch.Tensor, held: torch.Tensor) -> None:
    save_tensors(out / f"{name}.safetensors", {"train": train, "heldout": held},
                 {"made_by": "training/results/runs/shrinkage/hybrid.py"})


samples = load_tensors(sys.argv[1])[0]
train, held, _ = kernel_set([Path(p) for p in sys.argv[2].split("+")])
turned = dihedral(train)
out = Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
g = torch.Generator().manual_seed(0)
ours, theirs = train.flatten(1).norm(dim=1), samples["train"].flatten(1).norm(dim=1)
save("their-shapes-our-norms", renorm(samples["train"], ours, g), renorm(samples["heldout"], ours, g))
save("our-shapes-their-norms", renorm(turned, theirs, g), renorm(held, theirs, g))
spread = theirs * ours.median() / theirs.median()
save("our-shapes-their-spread", renorm(turned, spread, g), renorm(held, spread, g))
save("our-kernels-negative-sums", negate_quarter(turned, True, g), held)
save("our-kernels-positive-sums", negate_quarter(turned, False, g), held)
for name in ("their-shapes-our-norms", "our-shapes-their-norms", "our-shapes-their-spread",
             "our-kernels-negative-sums", "our-kernels-positive-sums"):
    t = load_tensors(out / f"{name}.safetensors")[0]
    n = t["train"].flatten(1).norm(dim=1)
    print(f"{name}: train {len(t['train'])}, held out {len(t['heldout'])}, norm q10/q50/q90 "
          f"{n.quantile(0.1):.3f}/{n.median():.3f}/{n.quantile(0.9):.3f}, CV {n.std() / n.mean():.2f}, "
          f"summing above zero {(t['train'].flatten(1).sum(1) > 0).float().mean():.2f}")
