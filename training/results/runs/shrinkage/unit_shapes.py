"""Shape statistics of 5x5 kernel sets, each kernel scaled to unit norm (`unit_shapes.txt`, issue #12, session 31).

    PYTHONPATH=. python training/results/runs/shrinkage/unit_shapes.py [POSTERIOR...] > training/results/runs/shrinkage/unit_shapes.txt

Session 30 found the authors' 5x5 gain in its kernels' shapes. This prints, for each set, the mean share of a unit
kernel's energy at spatial frequency 0 (its mean), in the first ring of the 5x5 DFT (|k| = 0.2 cycles a weight), the
second (0.28-0.4) and above; in the centre 3x3 (uniform: 0.36); its correlation with itself turned by 180° and
transposed (+1 even, −1 odd); the correlation of neighbouring weights (smoothness); and the share of kernels whose
weights sum above zero. Sets: the authors' prior (measurement only: samples with decoder noise, and decoder means,
20,000 each), our shipped 5x5's training kernels and the held-out ones (GPU net 2, 256/512), our kernels under the
8 symmetries with `dense_vae --shape-noise` 0.5 and 1 (one draw, seed 5), the shipped prior's samples and means.
Each POSTERIOR (a `posteriors.py run` file) adds the 5x5 layer's μ, its kernels above the median norm.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from dwp_hub import DWPrior
from training.compare_priors import reference_prior
from training.experiments.dense_vae import dihedral, kernel_set, perturb

N = Path("training/results/runs/narrow-sources")


def row(name: str, kernels: torch.Tensor) -> None:
    """Print the statistics of one set of 5x5 kernels, each scaled to unit norm (all-zero kernels left out)."""
    w = kernels.reshape(-1, 5, 5).double()
    norms = w.flatten(1).norm(dim=1)
    w = w[norms > 0] / norms[norms > 0][:, None, None]
    power = torch.fft.fft2(w).abs() ** 2 / 25  # Parseval: sums to 1 over the 25 frequencies
    f = torch.fft.fftfreq(5).abs()
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    share = [power[:, radius == 0].sum(1), power[:, (radius > 0) & (radius < 0.21)].sum(1),
             power[:, (radius > 0.21) & (radius < 0.41)].sum(1), power[:, radius > 0.41].sum(1)]
    centre = (w[:, 1:4, 1:4] ** 2).sum((1, 2))
    turned = (w * w.flip(1, 2)).sum((1, 2))
    transposed = (w * w.transpose(1, 2)).sum((1, 2))
    neighbours = ((w[:, 1:] * w[:, :-1]).sum((1, 2)) + (w[:, :, 1:] * w[:, :, :-1]).sum((1, 2))) * 25 / 40
    stats = [s.mean().item() for s in (*share, centre, turned, transposed, neighbours)]
    above = (w.flatten(1).sum(1) > 0).double().mean().item()
    print(f"{name:44s} {len(w):6d}  " + "  ".join(f"{v:+.3f}" for v in stats) + f"  {above:.2f}")


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'5x5 kernels, unit norm':44s} {'n':>6s}  {'f=0':>6s}  {'ring1':>6s}  {'ring2':>6s}  {'high':>6s}  "
          f"{'centre':>6s}  {'rot180':>6s}  {'transp':>6s}  {'nbcorr':>6s}  sum>0")
    g = torch.Generator().manual_seed(0)
    authors = reference_prior(5)
    row("the authors' prior, samples with noise", authors.sample(20000, generator=g, noise=True))
    row("the authors' prior, decoder means", authors.sample(20000, generator=g, noise=False))
    train, held, _ = kernel_set([N / "heavy-net-0200-5x5.safetensors", N / "light-net-0200-5x5.safetensors",
                                 N / "gpu-net2-heldout-5x5.safetensors"])
    row("our training kernels (32/64 nets)", train)
    row("our held-out kernels (GPU net 2, 256/512)", held)
    torch.manual_seed(5)
    for r in (0.5, 1.0):
        row(f"ours, 8 symmetries, shape noise {r:g}", perturb(dihedral(train), 0.0, r))
    shipped = DWPrior.from_pretrained("dwp/notmnist-5x5")
    row("shipped prior, samples with noise", shipped.sample(20000, generator=g, noise=True))
    row("shipped prior, decoder means", shipped.sample(20000, generator=g, noise=False))
    for path in sys.argv[1:]:
        mu = load_file(path)["features.3.mu"].reshape(-1, 5, 5)
        norms = mu.flatten(1).norm(dim=1)
        row(f"posterior μ, {Path(path).stem}", mu[norms > norms.median()])


if __name__ == "__main__":
    main()
