"""Norms of the kept 5x5 source kernels beside the authors' prior's samples (`norms.txt`).

    PYTHONPATH=. python training/results/runs/shrinkage/norms.py > training/results/runs/shrinkage/norms.txt

For each 5x5 kernel-set file the sessions fitted priors to, the kernels its own build threshold keeps (as
``training.kernel_sets.choose_threshold`` on the file's norms), their norm quantiles and coefficient of variation; then
the same for 4,096 samples of the authors' 5x5 VAE, with and without its decoder noise (their source kernels are not
available; the samples are what their prior believes them to be), and for an isotropic Gaussian for scale. GPU
net 2's held-out kernels are in both folders (the same 601).
"""

from pathlib import Path

import torch

from training.checkpoint import load_tensors
from training.compare_priors import reference_prior
from training.kernel_sets import choose_threshold

R = Path("training/results/runs")
FILES = [R / "narrow-sources" / f for f in ("heavy-net-0200-5x5.safetensors", "light-net-0200-5x5.safetensors",
                                            "gpu-net2-heldout-5x5.safetensors")] + [
    R / "paper-sources-gpu" / "kernels-5x5-kept.safetensors"]
Q = torch.tensor([0.01, 0.1, 0.25, 0.5, 0.75, 0.9])


def row(name: str, w: torch.Tensor) -> None:
    n = w.flatten(1).norm(dim=1)
    print(f"{name:52s} {len(n):5d}  " + "  ".join(f"{v:.3f}" for v in torch.quantile(n, Q))
          + f"   {(n.std() / n.mean()).item():.3f}")


print(f"{'kernels':52s} {'n':>5s}  " + "  ".join(f"q{int(100 * q):02d}  " for q in Q) + "   CV")
for path in FILES:
    for part, w in load_tensors(path)[0].items():
        if w.dim() == 3 and len(w):
            norms = w.flatten(1).norm(dim=1)
            row(f"{path.parent.name}/{path.name} {part}", w[norms >= choose_threshold(norms.numpy()).value])
ref = reference_prior(5)
row("authors' 5x5 VAE, samples with decoder noise", ref.sample(4096, torch.Generator().manual_seed(0), noise=True))
row("authors' 5x5 VAE, decoder means", ref.sample(4096, torch.Generator().manual_seed(0)))
row("isotropic Gaussian, std 0.0175 (our held-out kernels' rms)",
    0.0175 * torch.randn(4096, 5, 5, generator=torch.Generator().manual_seed(0)))
