"""How much each 5x5 prior prefers the zero kernel to a learnt one (`rays.txt`).

    PYTHONPATH=. python training/results/runs/shrinkage/rays.py PRIOR... > training/results/runs/shrinkage/rays.txt

PRIOR is a prior name or folder, or ``reference`` (the authors' 5x5 VAE, measurement only). Along the ray from the zero
kernel through each of our 601 held-out 5x5 source kernels (GPU net 2's, as every session-26+ fit scores), the prior's
mean log-density (IWAE, 100 samples; appendix B) and ELBO (eq. 4, the per-kernel term of the DWP bound) at s × the
kernel for s in 0 … 1.5. Two tables: the kernels as they are, and each rescaled to their median norm first (the same
shapes at one norm). The last column, log p̂(learnt kernel) − log p̂(0), is negative for a prior that pulls kernels
towards zero: at N = 50 the KL dominates the DWP objective and the posterior follows it (posteriors.py).
"""

import sys
from pathlib import Path

import torch

from dwp_hub import DWPrior
from training.experiments.dense_vae import kernel_set
from training.experiments.priors import PriorSet

N = Path("training/results/runs/narrow-sources")
SCALES = (0.0, 0.25, 0.5, 1.0, 1.5)


def table(priors: dict[str, DWPrior], held: torch.Tensor) -> None:
    print("prior".ljust(44) + "".join(f"  ×{s:<4} IWAE / ELBO" for s in SCALES) + "   learnt − zero")
    for name, prior in priors.items():
        cells, iwae = [], []
        for s in SCALES:
            with torch.no_grad():
                ll = prior.log_prob(held * s, 100, generator=torch.Generator().manual_seed(1), progress=False).mean()
                torch.manual_seed(2)
                elbo = torch.stack([prior.elbo(held * s) for _ in range(5)]).mean()
            cells.append(f"  {ll:7.2f} / {elbo:7.2f}")
            iwae.append(ll.item())
        print(name[-44:].ljust(44) + "".join(cells) + f"   {iwae[SCALES.index(1.0)] - iwae[0]:+7.2f}", flush=True)


def main() -> None:
    torch.set_num_threads(1)
    _, held, _ = kernel_set([N / "heavy-net-0200-5x5.safetensors", N / "light-net-0200-5x5.safetensors",
                             N / "gpu-net2-heldout-5x5.safetensors"])
    priors = {name: PriorSet({5: name}).dwp(5) for name in sys.argv[1:]}
    norms = held.flatten(1).norm(dim=1)
    print(f"{len(held)} held-out 5x5 kernels, norms {norms.min():.3f}–{norms.max():.3f}, median {norms.median():.3f}")
    print("\nthe kernels as they are")
    table(priors, held)
    print("\neach kernel rescaled to the median norm")
    table(priors, held / norms[:, None, None] * norms.median())


if __name__ == "__main__":
    main()
