"""Our notMNIST priors beside the paper authors' (measurement only): kernel norms, spectra, cross log-likelihoods.

    python -m training.compare_priors --out build/compare            # tables on stdout, sample grids as PNG
    python -m training.compare_priors --reference DIR                # the authors' VAEs elsewhere

The authors' two VAEs (``../shared/reference-priors/``, GPL-3.0) are loaded into our architectures in memory,
by key renames only (``weights_only=True``: plain tensors, nothing else is unpickled), with a variance floor
of 1e-12 where theirs has none. They are never saved, bundled or pushed. For each kernel size it prints

- the mean L2 norm of 4,096 kernels drawn from each prior (decoder means at z ~ N(0, I), as ``init`` draws
  them) and of our held-out source kernels (the authors' source kernels are not available);
- the share of variance in the top 1 / 2 / 4 / 8 principal directions of each of those sets;
- the median cosine similarity of each set's kernels to the nearest of our prior's training source kernels
  (turned and reflected, the square's 8 symmetries): a decoder mean that blends unlike kernels scores lower than
  one that looks like a learnt kernel (held-out source kernels score ~0.94 for 7x7);
- IWAE log-likelihoods (nats per kernel) of our held-out source kernels and of kernels sampled from each
  prior with decoder noise, under both priors (a prior scoring the other's samples low does not cover them).

``--kernel-set NAME=FILE[+FILE…]`` (repeatable) adds kernels of a build's kernel-set files (pooled and filtered by
the norm threshold as ``training.kernel_sets.pooled_kernel_set`` does, training and held-out kernels together) to the
norm, spectrum and log-likelihood tables of their kernel size: how close source nets trained some other way come
to the population the authors' prior was fitted to. (A set from nets our prior was trained on finds itself among
the training kernels: its nearest-source cosine is ~1 and says nothing.)
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from dwp_hub import DWPrior
from dwp_hub.architectures import architecture_for
from dwp_hub.images import kernel_grid, save_png
from dwp_hub.prior_folder import PriorConfig

from .cli_options import CONTEXT
from .kernel_sets import pooled_kernel_set

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference-priors"
REFERENCE_WEIGHTS = "vae_params.torch"  # in vae7x7/ and vae5x5/
RENAMES = (("encoder.fc_sigma.", "encoder.heads.fc_var."), ("encoder.fc_mu.", "encoder.heads.fc_mu."),
           ("encoder.fc_var.", "encoder.heads.fc_var."), ("decoder.decoder.", "decoder.features."),
           ("decoder.fc_mu.0.", "decoder.heads.fc_mu."), ("decoder.fc_var.0.", "decoder.heads.fc_var."),
           ("decoder.fc_mu.", "decoder.heads.fc_mu."), ("decoder.fc_var.", "decoder.heads.fc_var."))
NO_FLOOR = 1e-12  # theirs is softplus(raw) with no floor; ours adds var_floor


def reference_prior(k: int, root: Path = REFERENCE_DIR) -> DWPrior:
    """The authors' k×k notMNIST VAE as a DWPrior held in memory (measurement only)."""
    state = torch.load(root / f"vae{k}x{k}" / REFERENCE_WEIGHTS, map_location="cpu", weights_only=True)
    renamed = {}
    for name, tensor in state.items():
        for old, new in RENAMES:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        renamed[name] = tensor.float()
    arch = architecture_for(k)
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the caller's RNG alone
        prior = DWPrior(PriorConfig(kernel_size=k, z_dim=arch.default_z_dim, architecture=arch.name,
                                    domain="notmnist-reference", var_floor=NO_FLOOR))
    prior.load_state_dict(renamed)
    return prior.eval()


def spectrum(kernels: torch.Tensor, tops: tuple[int, ...] = (1, 2, 4, 8)) -> str:
    x = kernels.flatten(1).double()
    eig = torch.linalg.eigvalsh(torch.cov(x.T)).flip(0).clamp_min(0)
    share = eig.cumsum(0) / eig.sum()
    return " / ".join(f"{share[t - 1]:.2f}" for t in tops)


def nearest_cosine(kernels: torch.Tensor, reference: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Each kernel's largest cosine similarity to any reference kernel or its turns and reflections."""
    turned = [torch.rot90(reference, r, (1, 2)) for r in range(4)]
    ref = torch.nn.functional.normalize(torch.cat(turned + [t.flip(2) for t in turned]).flatten(1), dim=1)
    x = torch.nn.functional.normalize(kernels.flatten(1), dim=1)
    return torch.cat([(part @ ref.T).amax(1) for part in x.split(chunk)])


@click.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("build/compare"),
              show_default=True, help="Folder for the sample grids.")
@click.option("--reference", type=click.Path(file_okay=False, path_type=Path), default=REFERENCE_DIR,
              help="Folder with the authors' vae7x7/ and vae5x5/ [default: ../shared/reference-priors].")
@click.option("--kernels", "n_scored", type=click.IntRange(1), default=1000, show_default=True, help="Kernels scored per set.")
@click.option("--iwae-samples", type=click.IntRange(1), default=200, show_default=True, help="IWAE samples K.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samples and the IWAE draws.")
@click.option("--kernel-set", "kernel_sets", multiple=True, metavar="NAME=FILE[+FILE…]",
              help="Also measure the kept kernels of these kernel-set files (repeatable).")
def main(out: Path, reference: Path, n_scored: int, iwae_samples: int, seed: int, kernel_sets: tuple[str, ...]) -> None:
    """Our notMNIST priors beside the paper authors': kernel norms, spectra, nearest-source cosines, IWAE scores."""
    extra = {}
    for item in kernel_sets:
        name, _, files = item.partition("=")
        if not files:
            raise click.BadParameter(f"{item!r}: give NAME=FILE[+FILE…]", param_hint="--kernel-set")
        train, held, _ = pooled_kernel_set([Path(f) for f in files.split("+")])
        extra[name] = torch.cat([train, held])
    out.mkdir(parents=True, exist_ok=True)
    for k in (7, 5):
        ours, theirs = DWPrior.from_pretrained(f"dwp/notmnist-{k}x{k}"), reference_prior(k, reference)
        g = torch.Generator().manual_seed(seed)
        sets = {"ours: samples": ours.sample(4096, generator=g), "theirs: samples": theirs.sample(4096, generator=g),
                "ours: held-out source kernels": ours.source_kernels("heldout")}
        sets.update({f"{name} ({len(kernels)})": kernels for name, kernels in extra.items() if kernels.shape[-1] == k})
        sources = ours.source_kernels("train")
        click.echo(f"\n{k}x{k} kernels        {'mean norm':>10}  variance in top 1/2/4/8 directions  nearest-source cos")
        for name, ks in sets.items():
            click.echo(f"{name:32} {ks.flatten(1).norm(dim=1).mean():10.4f}  {spectrum(ks):29}"
                       f"{nearest_cosine(ks, sources).median():8.3f}")
        for who, prior in (("ours", ours), ("theirs", theirs)):
            save_png(kernel_grid(sets[f"{who}: samples"][:64]), out / f"{who}-{k}x{k}-samples.png")
        scored = {"ours: held-out source kernels": sets["ours: held-out source kernels"][:n_scored],
                  "ours: samples with decoder noise": ours.sample(n_scored, generator=g, noise=True),
                  "theirs: samples with decoder noise": theirs.sample(n_scored, generator=g, noise=True)}
        scored.update({name: kernels[:n_scored] for name, kernels in sets.items() if name not in scored
                       and not name.endswith("samples")})
        click.echo(f"IWAE log-likelihood, K={iwae_samples} (nats/kernel)   {'under ours':>11} {'under theirs':>13}")
        for name, kernels in scored.items():
            lls = [prior.log_prob(kernels, num_samples=iwae_samples,
                                  generator=torch.Generator().manual_seed(seed)).mean().item()
                   for prior in (ours, theirs)]
            click.echo(f"{name:44} {lls[0]:11.2f} {lls[1]:13.2f}")
    click.echo(f"\nsample grids in {out}")


if __name__ == "__main__":
    main()
