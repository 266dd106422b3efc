"""The two training loops — source CNNs (cross-entropy + L2) and kernel VAEs (ELBO, eq. 4) — on `accelerate`.

Both use Adam with the learning rate decaying linearly from its initial value to 0 over the run (the
paper's schedule, appendix H), shuffle with a generator seeded per (seed, epoch) so an interrupted run
resumes exactly where it stopped, and write safetensors checkpoints. The same code runs on CPU, one GPU
or several (launch with ``accelerate launch -m training build …``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from .training_state import load_training_state, save_training_state

CHECKPOINT_EVERY_S = 60.0


@dataclass
class LoopSpec:
    """What one run trains for and how."""

    epochs: int
    batch_size: int
    lr: float
    seed: int
    desc: str


def _epoch_loader(tensors: tuple[torch.Tensor, ...], spec: LoopSpec, epoch: int, accelerator: Accelerator) -> DataLoader:
    g = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
    perm = torch.randperm(tensors[0].shape[0], generator=g)
    loader = DataLoader(TensorDataset(*(t[perm] for t in tensors)), batch_size=spec.batch_size, shuffle=False)
    return accelerator.prepare_data_loader(loader)


def run_training(accelerator: Accelerator, objective: nn.Module, tensors: tuple[torch.Tensor, ...], spec: LoopSpec,
                 checkpoint: Path, loss_fn: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor],
                 progress: bool = True) -> dict[str, Any]:
    """Minimise `loss_fn(objective, batch)` for `spec.epochs` epochs, resuming from `checkpoint` if present.

    The checkpoint (model + Adam state) is rewritten at least every minute and after the last epoch.
    Returns {'seconds': training time of this run and the runs it resumed, 'final_loss': mean loss of the last epoch}.
    """
    # Weights that L2 decays towards 0 reach float32's subnormal range, where an x86 CPU computes many times slower:
    # a conv3x3 source net's epochs went from 50 s to 150 s with 0.4% of its values subnormal. Flushed to 0 here.
    torch.set_flush_denormal(True)
    try:
        return _run_training(accelerator, objective, tensors, spec, checkpoint, loss_fn, progress)
    finally:
        torch.set_flush_denormal(False)


def _run_training(accelerator: Accelerator, objective: nn.Module, tensors: tuple[torch.Tensor, ...], spec: LoopSpec,
                  checkpoint: Path, loss_fn: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor],
                  progress: bool) -> dict[str, Any]:
    optimizer = torch.optim.Adam(objective.parameters(), lr=spec.lr)
    model, optimizer = accelerator.prepare(objective, optimizer)
    start_epoch, seconds = 0, 0.0
    if checkpoint.is_file():
        meta = load_training_state(checkpoint, accelerator.unwrap_model(model), optimizer)
        start_epoch, seconds = int(meta["epoch"]), float(meta["seconds"])
    steps_per_epoch = math.ceil(tensors[0].shape[0] / (spec.batch_size * accelerator.num_processes))
    total = spec.epochs * steps_per_epoch
    last_loss, last_save, t0 = float("nan"), time.monotonic(), time.monotonic()
    bar = tqdm(range(start_epoch, spec.epochs), desc=spec.desc, unit="epoch", initial=start_epoch, total=spec.epochs,
               disable=None if progress and accelerator.is_main_process else True)  # None: quiet when not a TTY
    for epoch in bar:
        model.train()
        step, running, count = epoch * steps_per_epoch, torch.zeros((), device=accelerator.device), 0
        for batch in _epoch_loader(tensors, spec, epoch, accelerator):
            for group in optimizer.param_groups:  # linear decay from lr to 0 over the whole run
                group["lr"] = spec.lr * (1.0 - step / total)
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            running, count, step = running + loss.detach(), count + 1, step + 1  # no per-step GPU sync
        # Accelerate keeps every loader it prepared, and with it that epoch's shuffled copy of the data (256 MB
        # a photo-id epoch): after 5 source nets of 6 epochs one build process held 12 GB and was OOM-killed.
        accelerator.free_memory()
        last_loss = running.item() / max(1, count)
        bar.set_postfix(loss=f"{last_loss:.4g}")
        done = epoch + 1 == spec.epochs
        if done or time.monotonic() - last_save > CHECKPOINT_EVERY_S:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_training_state(checkpoint, accelerator.unwrap_model(model), optimizer,
                                    {"epoch": epoch + 1, "seconds": seconds + time.monotonic() - t0,
                                     "loss": last_loss, "seed": spec.seed})
            last_save = time.monotonic()
    return {"seconds": seconds + time.monotonic() - t0, "final_loss": last_loss}


L2_SCOPES = ("weights", "features")


def l2_parameters(model: nn.Module, scope: str) -> list[nn.Parameter]:
    """The parameters an L2 penalty of `scope` covers.

    "weights": every weight matrix and kernel (not biases or norm parameters), classifier included.
    "features": every parameter of ``model.features``, biases included, and nothing of the classifier: what the
    original implementation's source-net training penalised (``net.features.parameters()``).
    """
    if scope == "weights":
        return [p for p in model.parameters() if p.dim() > 1]
    if scope == "features":
        features = getattr(getattr(model, "module", model), "features", None)  # .module: under DDP
        if not isinstance(features, nn.Module):
            raise ValueError(f"L2 on 'features' needs a model with a .features module; {type(model).__name__} has none")
        return list(features.parameters())
    raise ValueError(f"unknown L2 scope {scope!r}; known: {', '.join(L2_SCOPES)}")


def classifier_loss(l2: float, scope: str = "weights") -> Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]:
    """Cross-entropy plus `l2` × the sum of squares of the parameters `scope` covers (see ``l2_parameters``)."""
    if scope not in L2_SCOPES:
        raise ValueError(f"unknown L2 scope {scope!r}; known: {', '.join(L2_SCOPES)}")

    def loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        penalty = sum(p.pow(2).sum() for p in l2_parameters(model, scope))
        return F.cross_entropy(model(x), y) + l2 * penalty

    return loss


class NegativeELBO(nn.Module):
    """Wraps a DWPrior so that forward(w) is the mean negative ELBO (eq. 4): what DDP needs to sync gradients."""

    def __init__(self, prior: nn.Module) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return -self.prior.elbo(w).mean()


def vae_loss(objective: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The kernel VAE's loss on a batch of kernels: `objective` (a NegativeELBO) applied to them.

    Not the VI loss ``dwp_hub.elbo_loss(logits, y, kl, N)``: this one scores kernels under a prior being fitted.
    """
    return objective(batch[0])


@torch.no_grad()
def accuracy(accelerator: Accelerator, model: nn.Module, data: TensorDataset, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` on `data`, gathered over processes."""
    model = accelerator.prepare_model(model, evaluation_mode=True)
    model.eval()
    loader = accelerator.prepare_data_loader(DataLoader(data, batch_size=batch_size, shuffle=False))
    correct = total = 0
    for x, y in loader:
        pred, y = accelerator.gather_for_metrics((model(x).argmax(1), y))
        correct += int((pred == y).sum())
        total += int(y.numel())
    return correct / max(1, total)
