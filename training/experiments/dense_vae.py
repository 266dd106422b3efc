"""The paper's convolutional kernel VAE against a dense one, fitted to the same kernels, for a cheaper exact bound.

    python -m training.experiments.dense_vae --out training/results/runs/dense-vae

The exact DWP bound (eq. 7) passes every kernel through the prior's VAE each step; with the paper's 5x5 VAE
(3.4M multiply-adds per kernel forward) that is 38× an N(0,1) step on the paper's MNIST net, and no reuse of
per-kernel work across steps survives the kernels' drift (estimator_drift.py). A dense VAE (dwp-dense-KxK) needs
249× fewer multiply-adds per 5x5 kernel (56× per 7x7, 20× per 3x3). This fits the architectures named by
``--architectures`` to each bundled prior's shipped kernel set (its ``kernels.safetensors``: the training sample
and the held-out kernels), with the same steps, batch, learning-rate schedule and seed, and scores each on the
held-out kernels by IWAE (appendix B). The bundled prior itself, fitted to its full kernel set by its recipe, is
scored beside them. Each fitted prior is saved as a prior folder under ``--out`` (usable by
``--prior7``/``--prior5`` of the experiments and ``bench_kl.py --alt-priors``), with one CSV row per fit appended
to ``fits.csv``.

``--kernel-set NAME=FILE[+FILE…]`` fits a build's kernel set instead (a ``work/<prior>/kernels.safetensors`` of
``python -m training build``, e.g. one built on another machine; several files are pooled, train with train and
held-out with held-out): the kernels are filtered again by the build's norm threshold (training/kernel_sets.py; the
current rule, on the pooled norms), and the fits are saved as ``NAME-<architecture>-<steps>``.

Each fitted folder is a complete prior folder: its training and held-out kernels (``kernels.safetensors``, at most
4,096 of each, as a build ships), the held-out scores and a model card; with ``--sources NETS_JSON`` (the records
of the source nets whose kernels were pooled, as ``training/results/runs/*/nets.json``) its provenance and card
also say how those nets were trained. ``python -m training bundle FOLDER --name dwp/NAME`` ships one.

``--score-heldout N`` scores every fit on the same N random held-out kernels (the convolutional 5x5 VAE's IWAE on
40,000 kernels would take hours), and ``--score-prior PRIOR`` scores an existing prior beside the fits on them:
how the photo priors' dense VAEs were compared with the convolutional ones they replaced.

``--augment d4`` trains on each training kernel under the 8 rotations and reflections of the square (folder suffix
``-d4``): the paper's source protocol leaves ~22 used 7x7 kernels a net, and a VAE fitted to 45 of them scored
−35,125 nats on held-out ones; with their 360 turned and reflected copies, 31.9 (dense VAE: 46.7). ``--augment
d4-sign`` adds each of those negated (16×, suffix ``-d4-sign``): a prior that favours neither sign of a kernel.

``--kl-weight`` (below 1) and ``--free-bits`` (nats per latent dimension) change the fitting objective only
(``objective``; folder suffixes ``-kl<w>``, ``-fb<n>``): the fitted model is still a VAE prior with N(0, I) latents,
scored by the same IWAE. Fitted by the ELBO, the bundled priors put much of their kernels' energy into the decoder's
noise and little into the decoder means that ``init`` draws.

``--min-norm`` drops the kernels below that norm where it is above the build's threshold (suffix ``-mn<x>``), and
``--equal-norms`` scales every kernel to the training kernels' median norm (suffix ``-eq``): small-norm ablations,
from the search for why our 5x5 prior gained less than the authors'. Our source nets leave a long tail of
part-decayed kernels (norms from the threshold up, coefficient of variation ~0.5), and a VAE fitted to them is densest at the zero kernel, which draws a DWP posterior's
5x5 kernels towards zero (``training/results/runs/shrinkage/``).

``--noise S`` adds fresh Gaussian noise of std S a weight to every training batch (suffix ``-n<S>``), so the VAE fits
the kernels' density smoothed at about the posterior's σ; ``--architectures shell`` fits ``dwp-shell-KxK``, whose
decoder means all lie at the training kernels' median norm (registered by ``training/research_architectures.py``),
and ``--architectures dense32`` the 32-wide dense VAE. The first two are attempts to move the density peak
away from the zero kernel; neither keeps a DWP posterior's 5x5 layer both alive and accurate (runs README).
``--shape-noise R`` adds noise whose norm is about R times each kernel's own and scales the kernel back to its norm
(suffix ``-sn<R>``): the shapes smoothed, the norms kept. The authors' 5x5 gain lies in its kernels'
shapes, and their samples carry as much decoder noise as mean; this gives our own kernels that kind of spread. Neither
it nor ``d4-sign`` gains in Fig. 2.

``--lr-schedule constant`` keeps Adam's rate fixed (suffix ``-constant-lr``), as the original implementation's fits
did (their decay step is never reached); with ``--batch 128`` and ``--steps`` for 300 epochs it is the authors'
setting. ``--architectures vae8,vae16`` fit the paper's 5x5 VAE at 1/8 and 1/4 of its width
(``training/research_architectures.py``). Which of these carry the authors' Fig. 2 result:
``training/results/notmnist-cause/``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shlex
import time
from pathlib import Path
from typing import Any

import click
import torch

import dwp_hub
from dwp_hub import DWPrior
from dwp_hub.gaussian import kl_to_standard_normal, log_normal
from dwp_hub.prior_folder import MAX_KERNEL_SAMPLES, encode_kernel_sets
from training.baselines import full_gaussian_loglik, isotropic_gaussian_loglik
from training.build import DATA_RECORD, data_facts
from training.card import render_card
from training.cli_options import CONTEXT, list_option
from training.kernel_sets import pooled_kernel_set
from training.research_architectures import ShellDecoder

COLUMNS = ["prior", "architecture", "z_dim", "parameters", "train_kernels", "heldout_kernels", "steps",
           "heldout_iwae", "train_iwae", "fit_seconds"]


def objective(prior: DWPrior, w: torch.Tensor, kl_weight: float, free_bits: float) -> torch.Tensor:
    """Mean negative ELBO (eq. 4) over a batch, its latent KL weighted by `kl_weight` and, with `free_bits` > 0, each
    latent dimension's batch-mean KL held at no less than `free_bits` nats (so the fit gains nothing by shutting a
    dimension off). At 1 and 0 it is the paper's objective; either change makes the VAE put more of the kernels
    into its latent and less into the decoder's noise."""
    if kl_weight == 1 and not free_bits:
        return -prior.elbo(w).mean()  # the paper's objective, computed as the bundled priors were fitted
    z_mu, z_var = prior.encode(w)
    z = z_mu + z_var.sqrt() * torch.randn_like(z_mu)
    w_mu, w_var = prior.decode(z)
    kl = kl_to_standard_normal(z_mu[..., None], z_var[..., None]).mean(0)  # eq. 4's latent KL, per dimension
    return -log_normal(w, w_mu, w_var, dims=2).mean() + kl_weight * kl.clamp(min=free_bits).sum()


def perturb(w: torch.Tensor, noise: float, shape_noise: float) -> torch.Tensor:
    """The kernels `w` (n, k, k) plus fresh Gaussian noise of std `noise` a weight; then, with `shape_noise`, each
    kernel plus noise of std `shape_noise`·‖w‖/k a weight (a noise norm of about `shape_noise`·‖w‖) and scaled back
    to its own norm, so only its shape moves. `w` itself if both are 0."""
    if noise:
        w = w + noise * torch.randn_like(w)
    if shape_noise:
        norms = w.flatten(1).norm(dim=1)[:, None, None]
        moved = w + shape_noise * norms / w.shape[-1] * torch.randn_like(w)
        w = moved * norms / moved.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]
    return w


def fit(prior: DWPrior, train: torch.Tensor, steps: int, batch: int, lr: float, seed: int,
        kl_weight: float = 1.0, free_bits: float = 0.0, noise: float = 0.0,
        shape_noise: float = 0.0, lr_schedule: str = "cosine") -> float:
    """Adam on `objective` (the negative ELBO, eq. 4, by default) with a cosine learning-rate decay over `steps`
    (`lr_schedule` "cosine") or at a constant rate ("constant": the original implementation's, whose decay step is
    never reached);
    with `noise` > 0 each batch gets fresh Gaussian noise of that std a weight, so the VAE fits the kernels' density
    smoothed by it; with `shape_noise` > 0, noise of norm about that fraction of each kernel's own norm, which
    smooths the kernels' shapes and keeps their norms. Returns seconds."""
    if len(train) < batch:
        raise ValueError(f"{len(train)} training kernels are fewer than one batch of {batch}: give a smaller --batch")
    torch.manual_seed(seed)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if lr_schedule == "cosine"
             else torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0))
    order = torch.Generator().manual_seed(seed)
    prior.train()
    t0, step = time.monotonic(), 0
    while step < steps:
        perm = torch.randperm(len(train), generator=order)
        for start in range(0, len(train) - batch + 1, batch):
            w = train[perm[start:start + batch]]
            loss = objective(prior, perturb(w, noise, shape_noise), kl_weight, free_bits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == steps:
                break
    prior.eval()
    return time.monotonic() - t0


def source_provenance(paths: list[Path]) -> dict[str, Any]:
    """What the source-net records (nets.json files) say about the nets behind a kernel set, for the provenance;
    with the first data record (``data.json`` of a build's source nets) found beside them, what they were trained on."""
    nets = {}
    for path in paths:
        nets.update({name: rec for name, rec in json.loads(path.read_text()).items() if rec.get("arch")})
    data = next((p.parent / DATA_RECORD for p in paths if (p.parent / DATA_RECORD).is_file()), None)
    record = json.loads(data.read_text()) if data else {"provenance": "(no data record beside the nets' records)",
                                                          "info": {}}
    if not nets:
        raise ValueError(f"no source-net records in {', '.join(map(str, paths))}")
    recs = list(nets.values())
    protocols = sorted({f"{r['epochs']} epochs, L2 {r['l2']:g} on "
                        + ("every weight" if r["l2_on"] == "weights" else "the conv layers' weights and biases")
                        + f", {'Xavier-normal' if r['init'] == 'xavier' else 'PyTorch default'} initial weights"
                        for r in recs})
    accs = [r["test_accuracy"] for r in recs]
    return {"dataset": "+".join(sorted({r["dataset"] for r in recs})),
            "source_architecture": "+".join(sorted({r["arch"] for r in recs})) + " (training/source_nets.py)",
            "source_widths": sorted({tuple(r["widths"]) for r in recs}),
            "source_training": "; ".join(protocols),
            "num_source_nets": len(recs), "source_seeds": [r["seed"] for r in recs],
            "source_test_accuracy": [round(a, 4) for a in accs],
            "source_test_accuracy_mean": round(sum(accs) / len(accs), 4),
            "source_train_seconds": round(sum(r["train_seconds"] for r in recs), 1),
            "source_records": [str(p) for p in paths],
            "dataset_provenance": record["provenance"], **data_facts(record["info"])}


def dihedral(kernels: torch.Tensor) -> torch.Tensor:
    """The kernels under the 8 symmetries of the square (4 rotations, each also transposed): 8× the kernels."""
    turns = [torch.rot90(kernels, r, dims=(-2, -1)) for r in range(4)]
    return torch.cat(turns + [t.transpose(-2, -1) for t in turns])


def score(prior: DWPrior, kernels: torch.Tensor, samples: int, seed: int) -> float:
    """Mean IWAE log-likelihood (nats per kernel) with `samples` importance samples."""
    return prior.log_prob(kernels, samples, generator=torch.Generator().manual_seed(seed), progress=False).mean().item()


class RecordedCommand(click.Command):
    """A click command that keeps its arguments as given (``ctx.meta["argv"]``), for the fit's provenance."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["argv"] = list(args)
        return super().parse_args(ctx, args)


def kernel_set_pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
                     ) -> tuple[tuple[str, list[Path]], ...]:
    """``NAME=FILE[+FILE…]`` values as (NAME, [FILE, …]); a value without both parts is a usage error."""
    pairs = []
    for item in values:
        name, _, files = item.partition("=")
        if not name or not files:
            raise click.BadParameter(f"{item!r}: give NAME=FILE[+FILE…]")
        pairs.append((name, [Path(f) for f in files.split("+")]))
    return tuple(pairs)


@click.command(cls=RecordedCommand, context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the fitted priors and fits.csv.")
@list_option("--priors", default=("dwp/notmnist-7x7", "dwp/notmnist-5x5"),
             help="Bundled priors (comma-separated, repeatable; '' for none).")
@click.option("--kernel-set", "kernel_sets", multiple=True, metavar="NAME=FILE[+FILE…]", callback=kernel_set_pairs,
              help="Fit a build's kernel-set file under NAME; FILE+FILE… pools several (repeatable).")
@click.option("--domain", default="notmnist", show_default=True,
              help="Domain of the priors fitted to --kernel-set files.")
@list_option("--architectures", default=("vae", "dense"),
             help="Which to fit (comma-separated, repeatable): vae (the paper's), dense, dense32 (width 32) and "
                  "the research ones (shell, vae8, vae16).")
@click.option("--steps", type=int, default=40_000, show_default=True)
@click.option("--batch", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--iwae-samples", type=int, default=1000, show_default=True)
@click.option("--score-train", type=int, default=1000, show_default=True,
              help="Training kernels scored (overfitting check).")
@click.option("--score-heldout", type=click.IntRange(0), default=0, show_default=True,
              help="Score on this many held-out kernels, the same random ones for every fit and seed (0: all); "
                   "the convolutional VAEs' IWAE on 40,000 5x5 kernels would take hours.")
@click.option("--score-prior", "given_priors", multiple=True, metavar="PRIOR",
              help="An existing prior (name or folder) scored beside the fits on each --kernel-set of its kernel "
                   "size, on the same held-out kernels (repeatable): e.g. the shipped prior those kernels replace.")
@click.option("--kernel-scale", type=float, default=1.0, show_default=True,
              help="Multiply every kernel by this before fitting and scoring (the scale test: the same shapes at the "
                   "authors' kernel norm); recorded in the prior's provenance and folder name.")
@click.option("--augment", type=click.Choice(["none", "d4", "d4-sign"]), default="none", show_default=True,
              help="d4: train on every training kernel under the 8 rotations and reflections of the square (a prior "
                   "from few kernels); d4-sign: those and their negatives; held-out kernels are scored as they are.")
@click.option("--z-dim", type=int, default=None,
              help="Latent size of the fitted VAEs (default: a bundled prior's own, else the architecture's); a size "
                   "other than the default is in the folder name.")
@click.option("--sources", "source_records", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="NETS_JSON",
              help="Records of the source nets behind --kernel-set (repeatable): written into each fitted prior's "
                   "provenance and model card.")
@click.option("--kl-weight", type=float, default=1.0, show_default=True,
              help="Weight of the latent KL in the fitting objective (1: the paper's ELBO); in the folder name.")
@click.option("--free-bits", type=float, default=0.0, show_default=True,
              help="Nats per latent dimension below which its KL is not penalised (0: none); in the folder name.")
@click.option("--min-norm", type=float, default=0.0, show_default=True,
              help="Drop the kernels below this norm where it is above the build's threshold (suffix -mn<x>).")
@click.option("--equal-norms", is_flag=True,
              help="Scale every kernel to the training kernels' median norm before fitting (suffix -eq).")
@click.option("--noise", type=float, default=0.0, show_default=True,
              help="Fit to the kernels plus fresh Gaussian noise of this std a weight each batch: the density smoothed "
                   "at about the posterior's σ (suffix -n<s>); held-out kernels are scored as they are.")
@click.option("--shape-noise", type=float, default=0.0, show_default=True,
              help="Fit to the kernels plus fresh Gaussian noise whose norm is about this fraction of each kernel's "
                   "norm, each batch, scaled back to the kernel's norm: the shapes smoothed, the norms kept "
                   "(suffix -sn<r>).")
@click.option("--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True,
              help="Cosine decay to 0 over --steps, or a constant rate (suffix -constant-lr).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.pass_context
def main(ctx: click.Context, out: Path, priors: tuple[str, ...], kernel_sets: tuple[tuple[str, list[Path]], ...],
         domain: str, architectures: tuple[str, ...], steps: int, batch: int, lr: float, iwae_samples: int,
         score_train: int, score_heldout: int, given_priors: tuple[str, ...], kernel_scale: float, augment: str, z_dim: int | None, source_records: tuple[Path, ...],
         kl_weight: float, free_bits: float, min_norm: float, equal_norms: bool, noise: float, shape_noise: float,
         lr_schedule: str, seed: int, threads: int) -> None:
    """Fit the paper's convolutional kernel VAE and dense ones to the same kernels; score each on held-out kernels.

    The kernels are those of each bundled prior in --priors and of each --kernel-set; every fit is saved as a prior
    folder under --out, with one row per fit in OUT/fits.csv (the module's docstring says more on each option).
    """
    fitted_by = {"fit_command": shlex.join(["python", "-m", "training.experiments.dense_vae", *ctx.meta["argv"]]),
                 "dwp_hub_version": dwp_hub.__version__, "torch_version": torch.__version__,
                 "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")}
    sources_record = source_provenance(list(source_records)) if source_records else {}
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "fits.csv"
    fits = []  # (name, train, held, domain, z_dim, the bundled prior or None, kernel-set record)
    above = lambda k: k[k.flatten(1).norm(dim=1) >= min_norm]  # noqa: E731  (a bundled prior's kept kernels)
    for name in priors:
        bundled = DWPrior.from_pretrained(name)
        fits.append((name, above(bundled.source_kernels("train")), above(bundled.source_kernels("heldout")),
                     bundled.config.domain, bundled.config.z_dim, bundled, {}))
    for name, paths in kernel_sets:
        train, held, record = pooled_kernel_set(paths, min_norm)
        print(f"{name}: {record['kernels_kept']} of {record['kernels_in_file']} kernels kept "
              f"(threshold {record['threshold']:.3g}); train {len(train)}, held out {len(held)}", flush=True)
        fits.append((name, train, held, domain, None, None, record))
    # what was changed from a plain fit, in the CSV's prior column and the folder names (the latent size has its column)
    tags = [f"x{kernel_scale:g}"] if kernel_scale != 1 else []
    if augment != "none":
        tags.append(augment)
    tags += [f"kl{kl_weight:g}"] if kl_weight != 1 else []
    tags += [f"fb{free_bits:g}"] if free_bits else []
    tags += [f"mn{min_norm:g}"] if min_norm else []
    tags += ["eq"] if equal_norms else []
    tags += [f"n{noise:g}"] if noise else []
    tags += [f"sn{shape_noise:g}"] if shape_noise else []
    tags += ["constant-lr"] if lr_schedule == "constant" else []
    suffix = "".join(f"-{t}" for t in tags) + (f"-z{z_dim}" if z_dim else "")
    given = [(spec, DWPrior.from_pretrained(spec)) for spec in given_priors]
    for name, train, held, fit_domain, own_z_dim, bundled, record in fits:
        if equal_norms:  # every kernel at the median norm of the training kernels: a prior over shapes
            median = train.flatten(1).norm(dim=1).median()
            train, held = (k / k.flatten(1).norm(dim=1)[:, None, None] * median for k in (train, held))
        plain, held = train * kernel_scale, held * kernel_scale
        train = dihedral(plain) if augment != "none" else plain
        train = torch.cat([train, -train]) if augment == "d4-sign" else train
        k = train.shape[-1]
        candidates = [(f"{bundled.config.architecture} (bundled)", bundled, None)] if bundled else []
        if not bundled:
            candidates += [(f"{p.config.architecture} ({spec})", p, None) for spec, p in given if p.kernel_size == k]
        scored = held
        if score_heldout and score_heldout < len(held):  # the same kernels whatever --seed: fits stay comparable
            scored = held[torch.randperm(len(held), generator=torch.Generator().manual_seed(0))[:score_heldout]]
        for arch in (f"dwp-{family}-{k}x{k}" for family in architectures):
            torch.manual_seed(seed)  # the VAE's initial weights: the same fit on every run
            prior = DWPrior.for_kernel_size(k, fit_domain, z_dim=z_dim or own_z_dim, architecture=arch)
            if isinstance(prior.decoder, ShellDecoder):  # decoder means at the training kernels' median norm
                prior.decoder.radius.fill_(plain.flatten(1).norm(dim=1).median())
            candidates.append((arch, prior, arch))
        for label, prior, arch in candidates:
            seconds = (fit(prior, train, steps, batch, lr, seed, kl_weight, free_bits, noise, shape_noise, lr_schedule)
                       if arch else float("nan"))
            row = dict(prior=" ".join([name, *tags]), architecture=label,
                       z_dim=prior.config.z_dim, parameters=sum(t.numel() for t in prior.parameters()),
                       train_kernels=len(train), heldout_kernels=len(scored), steps=steps if arch else "",
                       heldout_iwae=round(score(prior, scored, iwae_samples, seed + 1), 3),
                       train_iwae=round(score(prior, train[:score_train], iwae_samples, seed + 1), 3),
                       fit_seconds=round(seconds, 1))
            print(" ".join(f"{c}={v}" for c, v in row.items()), flush=True)
            new = not table.exists()
            with open(table, "a", newline="") as f:  # row by row: an interrupted run keeps its fits
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
            if arch:
                prior.provenance = {"fitted_by": "training/experiments/dense_vae.py", **fitted_by, "kernels_of": name,
                                    "steps": steps, "batch": batch, "lr": lr, "lr_schedule": lr_schedule, "seed": seed,
                                    "kernel_scale": kernel_scale, "augment": augment,
                                    "min_norm": min_norm, "equal_norms": equal_norms, "noise": noise,
                                    "shape_noise": shape_noise,
                                    "kl_weight": kl_weight, "free_bits": free_bits, "z_dim": prior.config.z_dim,
                                    "kernels_train": len(plain), "kernels_heldout": len(held),
                                    "fit_seconds": round(seconds, 1),
                                    "heldout_iwae_loglik": row["heldout_iwae"], "iwae_samples": iwae_samples,
                                    "iwae_kernels": len(scored),
                                    **sources_record, **record}
                folder = out / f"{name.split('/')[-1]}-{arch.split('-')[1]}-{steps}{suffix}"
                save_folder(prior, folder, plain, held, seed)


def save_folder(prior: DWPrior, folder: Path, train: torch.Tensor, held: torch.Tensor, seed: int) -> None:
    """Write `prior` as a complete prior folder: weights, config, the kernels (subsets, as a build's), card."""
    torch.manual_seed(seed + 2)
    with torch.no_grad():
        elbo = torch.stack([prior.elbo(held) for _ in range(10)]).mean().item()  # as a build scores it
    metrics = {"heldout_elbo": elbo, "heldout_iwae_loglik": prior.provenance["heldout_iwae_loglik"],
               "heldout_fullcov_gaussian_loglik": full_gaussian_loglik(train, held).mean().item(),
               "heldout_isotropic_gaussian_loglik": isotropic_gaussian_loglik(train, held).mean().item(),
               "iwae_samples": prior.provenance["iwae_samples"], "iwae_kernels": prior.provenance["iwae_kernels"]}
    prior.provenance.update({k: round(v, 4) for k, v in metrics.items() if k.startswith("heldout")})
    prior.card = render_card(prior.config, prior.provenance, metrics)
    g = torch.Generator().manual_seed(seed)
    prior.kernels_file = encode_kernel_sets(
        {split: t[torch.randperm(len(t), generator=g)[:MAX_KERNEL_SAMPLES]] for split, t in (("train", train),
                                                                                            ("heldout", held))},
        note=f"random subsets (at most {MAX_KERNEL_SAMPLES}) of the train / held-out source kernels this prior was "
             "fitted to / scored on")
    prior.save_pretrained(folder)


if __name__ == "__main__":
    main()
