"""Shapes of the session-28 fits beside the shipped priors and the authors' (`shapes.txt`).

    PYTHONPATH=. python training/results/runs/vae-objective/shapes.py > training/results/runs/vae-objective/shapes.txt

For each prior folder in build/beta, build/beta/conv and build/beta/distill: E‖μ‖² and E tr Σ of the decoder at
4,096 latents z ~ N(0, I) (what init draws, and the decoder's noise), the held-out IWAE recorded at the fit (the
distilled `authors*` fits: on held-out samples of the authors' prior; the authors' own: on our held-out kernels), and the
mean norm and variance in the top 1/2/4/8 principal directions of the decoder means.
"""

from pathlib import Path

import torch

from dwp_hub import DWPrior
from training.compare_priors import reference_prior, spectrum

B = Path("build/beta")
for k in (7, 5):
    shipped = DWPrior.from_pretrained(f"dwp/notmnist-{k}x{k}")
    folders = sorted([*B.glob(f"notmnist-{k}x{k}-*"), *(B / "conv").glob(f"notmnist-{k}x{k}-*"),
                      *(B / "distill").glob(f"authors*-{k}x{k}-*")])
    rows = [("shipped", shipped)] + [(f.name, DWPrior.from_pretrained(str(f))) for f in folders if f.is_dir()]
    rows.append(("authors'", reference_prior(k)))
    train, held = shipped.source_kernels("train"), shipped.source_kernels("heldout")
    print(f"\n{k}x{k}: training kernels E|w|2 {train.flatten(1).pow(2).sum(1).mean():.4f}, mean norm "
          f"{train.flatten(1).norm(dim=1).mean():.3f}; held-out kernels mean norm {held.flatten(1).norm(dim=1).mean():.3f},"
          f" spectrum {spectrum(held)}")
    for name, prior in rows:
        with torch.no_grad():
            mu, var = prior.decode(torch.randn(4096, prior.z_dim, generator=torch.Generator().manual_seed(0)))
        iwae = (prior.log_prob(held, 1000, generator=torch.Generator().manual_seed(1), progress=False).mean().item()
                if name == "authors'" else prior.provenance.get("heldout_iwae_loglik", float("nan")))
        print(f"{name:42s} E|mu|2 {mu.flatten(1).pow(2).sum(1).mean():.5f}  E tr var {var.flatten(1).sum(1).mean():.5f}"
              f"  held-out IWAE {iwae:7.2f}  mean norm {mu.flatten(1).norm(dim=1).mean():.3f}  spectrum {spectrum(mu)}")
