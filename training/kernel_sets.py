"""Source kernel sets (paper §3.3): every k×k kernel of the chosen layers, small-norm ones dropped, split.

With L2 regularisation many kernels of a source net shrink towards zero: they do not affect predictions
(Molchanov et al., 2017) but would crowd the prior's training set with noise. The norm threshold is read
off the histogram of log10 norms — the trough between the mode of used kernels (the highest-norm one) and the
near-zero kernels below it, which long training spreads over several decades and modes. If the histogram has no
such trough (one mode only), kernels below 1/10 of the median norm are dropped instead. The method, the threshold
and the counts are recorded.

Kernels are split by source network: all kernels of the held-out nets form the held-out set, so the
held-out log-likelihood measures how well a prior generalises to a network it has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .training_state import load_tensors, save_tensors

HIST_BINS = 80
SMOOTH_BINS = 5
MIN_TROUGH_DEPTH = 0.5  # the trough must be below half of the smaller of the two peaks around it
FALLBACK_FRACTION_OF_MEDIAN = 0.1
MIN_PEAK_HEIGHT = 0.1  # a mode counts if its smoothed height is at least this fraction of the main mode's
MIN_PEAK_KERNELS = 3.0  # … and at least this many kernels a bin (smoothed): a few dozen kernels make no modes


@dataclass
class Threshold:
    value: float
    method: str


def layer_kernels(state: dict[str, torch.Tensor], layer: str, kernel_size: int) -> torch.Tensor:
    """All (k, k) kernels of conv layer `layer` in a state dict, as (out·in, k, k) float32."""
    w = state[f"{layer}.weight"]
    if w.dim() != 4 or tuple(w.shape[2:]) != (kernel_size, kernel_size):
        raise ValueError(f"layer {layer} has weight shape {tuple(w.shape)}, not {kernel_size}x{kernel_size} kernels")
    return w.detach().float().reshape(-1, kernel_size, kernel_size)


def choose_threshold(norms: np.ndarray) -> Threshold:
    """Norm threshold from the histogram of log10 norms (see the module docstring)."""
    logn = np.log10(np.clip(norms, 1e-12, None))
    counts, edges = np.histogram(logn, bins=HIST_BINS)
    smooth = np.convolve(counts, np.ones(SMOOTH_BINS) / SMOOTH_BINS, mode="same")
    padded = np.concatenate([[-np.inf], smooth, [-np.inf]])
    peaks = [i for i in range(HIST_BINS) if padded[i + 1] > padded[i] and padded[i + 1] >= padded[i + 2]
             and smooth[i] >= max(MIN_PEAK_HEIGHT * smooth.max(), MIN_PEAK_KERNELS)]
    # The used kernels are the highest-norm mode. Scan down from it for the first mode with a deep trough between:
    # modes above that trough are bumps of the used kernels, modes below it are near-zero kernels (long L2 training
    # spreads those over several decades, in several modes).
    top = peaks[-1] if peaks else 0
    for lo in reversed(peaks[:-1]):
        trough = lo + int(np.argmin(smooth[lo:top + 1]))
        if smooth[trough] < MIN_TROUGH_DEPTH * min(smooth[lo], smooth[trough:top + 1].max()):
            value = float(10 ** ((edges[trough] + edges[trough + 1]) / 2))
            return Threshold(value, f"trough of the log10-norm histogram ({HIST_BINS} bins, smoothed over "
                                    f"{SMOOTH_BINS}) below the mode of used kernels (the highest-norm mode)")
    value = float(FALLBACK_FRACTION_OF_MEDIAN * np.median(norms))
    return Threshold(value, f"no trough in the log10-norm histogram: {FALLBACK_FRACTION_OF_MEDIAN:g} x median norm")


def plot_norm_histogram(norms: np.ndarray, threshold: Threshold, title: str, path: Path) -> Path:
    """PNG of the log10-norm histogram with the threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.hist(np.log10(np.clip(norms, 1e-12, None)), bins=HIST_BINS, color="0.35")
    ax.axvline(np.log10(threshold.value), color="tab:red", label=f"threshold {threshold.value:.3g}")
    kept = int((norms >= threshold.value).sum())
    ax.set(xlabel="log10 ||w||", ylabel="kernels", title=f"{title}: kept {kept:,} of {len(norms):,}")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def build_kernel_set(nets: list[Path], layers: tuple[str, ...], kernel_size: int, heldout_nets: int,
                     out: Path, hist_png: Path, title: str) -> dict[str, Any]:
    """Collect, filter and split the kernels of `layers` from the source-net files `nets`; write `out`."""
    per_net = []
    for path in nets:
        state, _ = load_tensors(path)
        per_net.append(torch.cat([layer_kernels(state, layer, kernel_size) for layer in layers]))
    meta = {"kernel_size": kernel_size, "layers": list(layers)}
    return split_kernel_set(per_net, [p.name for p in nets], heldout_nets, out, hist_png, title, meta)


def split_kernel_set(groups: list[torch.Tensor], names: list[str], heldout: int, out: Path, hist_png: Path,
                     title: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Filter the kernels of `groups` (source nets, or layers of one net) by norm and hold out the last `heldout`.

    `out` (safetensors) holds "train" and "heldout" (n, k, k) float32 and "train_net"/"heldout_net"
    (index of the group of each kernel); its metadata (`meta` plus the counts and the threshold) records
    everything needed to redo it.
    """
    if heldout < 1 or heldout >= len(groups):
        raise ValueError(f"need at least one training and one held-out source net, got {len(groups)} nets, "
                         f"{heldout} held out")
    all_k = torch.cat(groups)
    net_of = torch.cat([torch.full((len(k),), i) for i, k in enumerate(groups)])
    norms = all_k.flatten(1).norm(dim=1).numpy()
    threshold = choose_threshold(norms)
    plot_norm_histogram(norms, threshold, title, hist_png)
    keep = torch.from_numpy(norms >= threshold.value)
    held = net_of >= len(groups) - heldout
    meta = {
        **meta, "source_nets": names, "heldout_nets": names[len(groups) - heldout:],
        "kernels_total": int(len(all_k)), "kernels_kept": int(keep.sum()),
        "train_kept": int((keep & ~held).sum()), "heldout_kept": int((keep & held).sum()),
        "threshold": threshold.value, "threshold_method": threshold.method,
        "norm_median": float(np.median(norms)), "norm_mean_kept": float(norms[keep.numpy()].mean()) if keep.any() else 0.0,
    }
    save_tensors(out, {"train": all_k[keep & ~held], "heldout": all_k[keep & held],
                       "train_net": net_of[keep & ~held], "heldout_net": net_of[keep & held]}, meta)
    return meta


def pooled_kernel_set(paths: list[Path], min_norm: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Train and held-out kernels of kernel-set files (as ``build_kernel_set`` writes), pooled and filtered again
    by the norm threshold of the pooled norms, or by `min_norm` where that is higher; and a record of the filter."""
    sets = [load_tensors(path)[0] for path in paths]
    train, held = torch.cat([k["train"] for k in sets]), torch.cat([k["heldout"] for k in sets])
    norms = torch.cat([train, held]).flatten(1).norm(dim=1)
    t = choose_threshold(norms.numpy())
    cut = max(t.value, min_norm)
    method = t.method if cut == t.value else f"--min-norm {min_norm:g} (the build's rule: {t.value:.3g})"
    record = {"kernel_set": "+".join(map(str, paths)), "threshold": cut, "threshold_method": method,
              "kernels_in_file": len(norms), "kernels_kept": int((norms >= cut).sum())}
    return train[train.flatten(1).norm(dim=1) >= cut], held[held.flatten(1).norm(dim=1) >= cut], record
