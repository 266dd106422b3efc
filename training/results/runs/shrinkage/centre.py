"""Where each prior's decoder sends the centre of its latent space, and how many shapes its means span (`centre.txt`).

    PYTHONPATH=. python training/results/runs/shrinkage/centre.py 5 PRIOR... > training/results/runs/shrinkage/centre.txt
    PYTHONPATH=. python training/results/runs/shrinkage/centre.py 7 PRIOR... >> training/results/runs/shrinkage/centre.txt

For each prior of kernel size K (a name or folder, or ``reference`` for the authors' VAE, measurement only): the norm
of the decoder mean at z = 0, then, over 20,000 draws z ~ N(0, I) cut into six bins of ‖z‖ (quantiles 0, 0.1, 0.3,
0.5, 0.7, 0.9, 1), the median norm of the decoder mean and the median decoder σ (a weight) in each bin; last, the
share of the decoder means' energy (each mean scaled to unit norm) in their top 1, 3 and 6 principal directions.
A prior whose centre decodes to a near-zero kernel with its smallest σ is densest at zero (rays.txt); the authors'
decodes its centre to a learnt kernel's norm with its largest σ.
"""

import sys

import torch

from training.experiments.priors import PriorSet

torch.set_num_threads(1)
k = int(sys.argv[1])
print(f"{k}x{k} prior{'':37s} m(0)  decoder-mean norm / σ by ‖z‖ bin (inner to outer){'':27s} top1  top3  top6")
for name in sys.argv[2:]:
    prior = PriorSet({k: name}).dwp(k)
    z = torch.randn(20000, prior.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mu, var = prior.decode(z)
        centre = prior.decode(torch.zeros(1, prior.config.z_dim))[0].norm().item()
    radius, norm, sigma = z.norm(dim=1), mu.flatten(1).norm(dim=1), var.sqrt().flatten(1).mean(1)
    edges = torch.quantile(radius, torch.tensor([0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]))
    bins = [(radius >= lo) & (radius <= hi) for lo, hi in zip(edges[:-1], edges[1:])]
    cells = " ".join(f"{norm[b].median():.3f}/{sigma[b].median():.3f}" for b in bins)
    unit = (mu.flatten(1) / norm[:, None]).double()
    energy = torch.linalg.eigvalsh(unit.T @ unit / len(unit)).flip(0).cumsum(0)
    share = energy / energy[-1]
    print(f"{name[-45:]:45s} {centre:6.3f}  {cells}  {share[0]:.2f}  {share[2]:.2f}  {share[5]:.2f}", flush=True)
