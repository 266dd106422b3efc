"""A 5x5 prior's decoder, frozen, with a freshly initialised encoder fitted to our 5x5 source kernels (issue #12).

    PYTHONPATH=. python training/results/runs/shrinkage/refit_encoder.py --decoder-of reference \
        --out build/shrinkage/authors-decoder
    PYTHONPATH=. python training/results/runs/shrinkage/refit_encoder.py --decoder-of dwp/notmnist-5x5 \
        --out build/shrinkage/ours-fresh-encoder

Splits what a prior gives the DWP bound between its decoder p(w|z) and its encoder, which starts the reverse model
r(z|w) of eq. 7: the encoder is re-initialised (seed 0) and fitted by the ELBO (eq. 4; Adam, lr 1e-3 with cosine
decay, 5,000 steps of 128 kernels drawn with replacement) to the narrow 5x5 training kernels, the decoder untouched.
Prints the held-out IWAE (1,000 samples) before and after and saves a prior folder. A folder holding the authors'
decoder is for measurement only: it stays under build/ and is never bundled, pushed or committed.
"""

import argparse
import time
from pathlib import Path

import torch

from dwp_hub.architectures import ARCHITECTURES
from training.experiments.dense_vae import kernel_set, save_folder, score
from training.experiments.priors import PriorSet

N = Path("training/results/runs/narrow-sources")
FILES = [N / "heavy-net-0200-5x5.safetensors", N / "light-net-0200-5x5.safetensors",
         N / "gpu-net2-heldout-5x5.safetensors"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--decoder-of", required=True, help="'reference' (the authors' 5x5) or a prior name or folder")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    prior = PriorSet({5: a.decoder_of}).dwp(5)
    train, held, record = kernel_set(FILES)
    before = score(prior, held, 1000, 1)
    torch.manual_seed(0)
    arch = ARCHITECTURES[prior.config.architecture]
    prior.encoder = arch.encoder(prior.z_dim).to(memory_format=torch.channels_last)
    prior.decoder.requires_grad_(False)
    torch.manual_seed(0)  # the ELBO's latent draws
    opt = torch.optim.Adam(prior.encoder.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    order = torch.Generator().manual_seed(0)
    prior.train()
    t0 = time.monotonic()
    for _ in range(a.steps):
        loss = -prior.elbo(train[torch.randint(len(train), (128,), generator=order)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    prior.eval()
    prior.decoder.requires_grad_(True)
    after = score(prior, held, 1000, 1)
    print(f"held-out IWAE {before:.3f} -> {after:.3f} nats per kernel; {time.monotonic() - t0:.0f} s")
    prior.provenance = {"fitted_by": "training/results/runs/shrinkage/refit_encoder.py", "decoder_of": a.decoder_of,
                        "encoder_steps": a.steps, "heldout_iwae_loglik": round(after, 3), "iwae_samples": 1000,
                        **record}
    save_folder(prior, Path(a.out), train, held, 0)


if __name__ == "__main__":
    main()
