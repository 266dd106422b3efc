"""Where a DWP posterior's conv kernels end up at N = 50, under each 5x5 prior (`posteriors.txt`).

    PYTHONPATH=. python training/results/runs/shrinkage/posteriors.py run NAME PRIOR7 PRIOR5 INIT5 SEED
    PYTHONPATH=. python training/results/runs/shrinkage/posteriors.py stats build/shrinkage/*.safetensors

``run`` trains one Fig. 2 DWP run exactly as ``python -m training.experiments fig2`` does (official split, N = 50,
split seed SEED, the default settings; PRIOR5 in the KL, μ of the 5x5 layer initialised from INIT5's samples) and saves
each Bayesian layer's μ and log σ² to ``build/shrinkage/NAME-sSEED.safetensors`` (not committed), printing its test
metrics. ``stats`` prints, for the 5x5 layer of each saved run, the kernels' norm quantiles, the posterior σ and the
ratio of the kernels' rms to σ (signal to noise), and their log-density under our shipped 5x5 prior and the authors'
(IWAE, 100 samples, 1,024 kernels); the first row is the initial μ (4,096 samples of our shipped 5x5, seed 0). A
second table gives the 7x7 layer's norms and σ.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dwp_hub import DWPrior
from dwp_hub.bayes_conv import bayes_layers
from training.compare_priors import reference_prior
from training.experiments import fig2
from training.experiments.context import RunContext, configure_device
from training.experiments.data import load_target
from training.experiments.priors import PriorSet
from training.experiments.settings import settings_for, with_overrides

OUT = Path("build/shrinkage")


def run(name: str, prior7: str, prior5: str, init5: str, seed: int) -> None:
    s = with_overrides(settings_for("fig2", False), ["sizes=50", "methods=dwp", f"seeds={seed}"])
    ctx = RunContext(configure_device("cpu", 1), load_target("mnist"), PriorSet({7: prior7, 5: prior5}, {5: init5}),
                     OUT / "logs")
    train_idx, test_idx = ctx.target.split(50, seed, s.max_test)
    with ctx.run_log(f"{name}-s{seed}") as log:
        net, info = fig2.train_vi("dwp", train_idx, s, seed, ctx, log)
        metrics = fig2.test_metrics(net, test_idx, s, ctx)
        log(f"test {metrics}")
    tensors = {}
    for layer_name, layer in bayes_layers(net):
        tensors[f"{layer_name}.mu"] = layer.weight.detach().contiguous()
        tensors[f"{layer_name}.log_sigma2"] = layer.log_sigma2.detach().contiguous()
    save_file(tensors, str(OUT / f"{name}-s{seed}.safetensors"))
    print(name, seed, json.dumps(metrics), f"kl {info['kl']:.1f}", flush=True)


def stats(files: list[str]) -> None:
    priors = {"ours": DWPrior.from_pretrained("dwp/notmnist-5x5"), "authors'": reference_prior(5)}
    init = priors["ours"].sample(4096, generator=torch.Generator().manual_seed(0))
    rows = [("initial μ (our 5x5's samples)", init, None)]
    for f in files:
        t = load_file(f)
        rows.append((Path(f).stem, t["features.3.mu"].flatten(0, 1), t["features.3.log_sigma2"].flatten(0, 1)))
    print(f"{'5x5 layer':32s} {'norm q10':>8s} {'q50':>6s} {'q90':>6s} {'σ q50':>7s} {'rms/σ':>6s}"
          + "".join(f"  {n + ' IWAE':>14s}" for n in priors))
    for name, w, log_sigma2 in rows:
        n = w.flatten(1).norm(dim=1)
        q = torch.quantile(n, torch.tensor([0.1, 0.5, 0.9]))
        sigma = (0.5 * log_sigma2).exp().median().item() if log_sigma2 is not None else float("nan")
        lls = [p.log_prob(w[:1024], 100, generator=torch.Generator().manual_seed(1), progress=False).mean().item()
               for p in priors.values()]
        print(f"{name:32s} {q[0]:8.3f} {q[1]:6.3f} {q[2]:6.3f} {sigma:7.4f} {w.pow(2).mean().sqrt() / sigma:6.2f}"
              + "".join(f"  {ll:14.2f}" for ll in lls), flush=True)
    print(f"\n{'7x7 layer':32s} {'norm q10':>8s} {'q50':>6s} {'q90':>6s} {'σ q50':>7s} {'rms/σ':>6s}")
    for f in files:
        t = load_file(f)
        w, sigma = t["features.0.mu"].flatten(0, 1), (0.5 * t["features.0.log_sigma2"]).exp().median().item()
        q = torch.quantile(w.flatten(1).norm(dim=1), torch.tensor([0.1, 0.5, 0.9]))
        snr = w.pow(2).mean().sqrt() / sigma
        print(f"{Path(f).stem:32s} {q[0]:8.3f} {q[1]:6.3f} {q[2]:6.3f} {sigma:7.4f} {snr:6.2f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif sys.argv[1] == "stats":
        stats(sys.argv[2:])
    else:
        raise SystemExit(__doc__)
