"""Is the zero kernel the densest kernel of each 5x5 prior? (`modes.txt`)

    PYTHONPATH=. python training/results/runs/shrinkage/modes.py PRIOR... > training/results/runs/shrinkage/modes.txt

For each prior (a name or folder, or ``reference`` for the authors' 5x5 VAE, measurement only): its log-density (IWAE,
100 samples) at the zero kernel and at 1,024 of its own decoder means (z ~ N(0, I), the kernels ``init`` draws), the
mean and the 90th percentile over those, and the norm of the means. Where the densest means lie above the zero kernel,
the prior has modes away from zero that a KL-dominated posterior can settle in (posteriors.py); where they lie below,
it draws kernels towards zero. The last column repeats the comparison with both sets blurred by Gaussian noise of
std 0.02 a weight, about the posterior σ that VI reaches in the 5x5 layer (E log p̂(means + ε) − E log p̂(ε), 512 of
each): what the KL sees averaged over the posterior's noise.
"""

import sys

import torch

from training.experiments.priors import PriorSet

torch.set_num_threads(1)
print(f"{'prior':46s} {'zero':>7s} {'means: mean':>12s} {'q90':>7s} {'max':>7s} {'q90 − zero':>11s}"
      f" {'mean norm':>10s} {'blurred: means − zero':>22s}")
for name in sys.argv[1:]:
    prior = PriorSet({5: name}).dwp(5)
    means = prior.sample(1024, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    zero = prior.log_prob(torch.zeros(1, 5, 5), 100, generator=g, progress=False).item()
    ll = prior.log_prob(means, 100, generator=g, progress=False)
    q90 = torch.quantile(ll, 0.9).item()
    noise = lambda: 0.02 * torch.randn(512, 5, 5, generator=g)  # noqa: E731
    blurred = (prior.log_prob(means[:512] + noise(), 100, generator=g, progress=False).mean()
               - prior.log_prob(noise(), 100, generator=g, progress=False).mean())
    print(f"{name[-46:]:46s} {zero:7.2f} {ll.mean():12.2f} {q90:7.2f} {ll.max():7.2f} {q90 - zero:+11.2f}"
          f" {means.flatten(1).norm(dim=1).mean():10.3f} {blurred:+22.2f}", flush=True)
