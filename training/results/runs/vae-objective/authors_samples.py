"""Kernel-set files of samples from the authors' notMNIST priors, with decoder noise (session 28; measurement only:
the files stay in build/ and the priors fitted to them are never bundled or pushed).

    PYTHONPATH=. python training/results/runs/vae-objective/authors_samples.py

authors-5x5 / authors-7x7: as many kernels as the shipped priors' training and held-out sets (3,243 + 601 and
53 + 22); authors-5x5-20k: 20,000 + 601.
"""

import torch

from training.checkpoint import save_tensors
from training.compare_priors import reference_prior

OUT = "build/beta/distill"
for name, k, n_train, n_held, seed in (("authors-5x5", 5, 3243, 601, 5), ("authors-7x7", 7, 53, 22, 7),
                                       ("authors-5x5-20k", 5, 20000, 601, 55)):
    s = reference_prior(k).sample(n_train + n_held, generator=torch.Generator().manual_seed(seed), noise=True)
    save_tensors(f"{OUT}/{name}.safetensors", {"train": s[:n_train], "heldout": s[n_train:]}, {})
    print(f"{name}: mean norm {s.flatten(1).norm(dim=1).mean():.3f}")
