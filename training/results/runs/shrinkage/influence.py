"""Does a 5x5 source kernel's norm say whether it influences the net's predictions? (`influence.txt`)

    PYTHONPATH=. python training/results/runs/shrinkage/influence.py NET DATA [NET DATA…] > training/results/runs/shrinkage/influence.txt

The paper removes kernels of small norm "as they have no influence upon predictions". For each source net (a 32/64
fconv checkpoint of ``fontsel/``, with the build's data file it was trained on), each second-layer kernel is set to
zero on its own and the change in cross-entropy on the first 2,000 test images is measured, exactly (the other
kernels' contributions are kept; only the output channel that kernel feeds changes). Printed: the Spearman rank
correlation of norm and influence, and influence quantiles by norm bin.
"""

import sys

import torch
import torch.nn.functional as F

from training.checkpoint import load_tensors

torch.set_num_threads(1)


def influence(net: str, data: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(norms, loss increase when each kernel alone is zeroed, base loss), each (out, in) for features.3."""
    s, d = load_tensors(net)[0], load_tensors(data)[0]
    x, y = d["test_x"][:2000].float().div(255)[:, None], d["test_y"][:2000]
    h1 = F.max_pool2d(F.leaky_relu(F.conv2d(x, s["features.0.weight"], s["features.0.bias"]), 0.01), 2)
    w2 = s["features.3.weight"]
    pre = F.conv2d(h1, w2, s["features.3.bias"])
    feat = F.max_pool2d(F.leaky_relu(pre, 0.01), 2)
    wc = s["classifier.weight"].view(10, w2.shape[0], -1)
    logits = feat.flatten(1) @ s["classifier.weight"].T + s["classifier.bias"]
    base = F.cross_entropy(logits, y).item()
    out = torch.zeros(w2.shape[:2])
    for o in range(w2.shape[0]):
        parts = torch.stack([F.conv2d(h1[:, i:i + 1], w2[o:o + 1, i:i + 1])[:, 0] for i in range(w2.shape[1])], 1)
        changed = F.max_pool2d(F.leaky_relu(pre[:, o:o + 1] - parts, 0.01), 2).flatten(2)
        delta = (changed - feat[:, o].flatten(1)[:, None]) @ wc[:, o].T  # logits' change, per zeroed kernel
        for i in range(w2.shape[1]):
            out[o, i] = F.cross_entropy(logits + delta[:, i], y).item() - base
    return w2.flatten(2).norm(dim=2), out, base


for net, data in zip(sys.argv[1::2], sys.argv[2::2]):
    norms, infl, base = influence(net, data)
    n, f = norms.flatten(), infl.flatten()
    rank = lambda a: a.argsort().argsort().float()  # noqa: E731
    rho = torch.corrcoef(torch.stack([rank(n), rank(f)]))[0, 1].item()
    print(f"{net}\n  {len(n)} kernels, base test loss {base:.4f}, Spearman(norm, influence) {rho:.3f}")
    for lo, hi in [(0, 0.02), (0.02, 0.05), (0.05, 0.08), (0.08, 0.12), (0.12, 0.2), (0.2, 10)]:
        m = (n >= lo) & (n < hi)
        if m.any():
            q = torch.quantile(f[m], torch.tensor([0.1, 0.5, 0.9]))
            print(f"  norm {lo:.2f}–{hi:.2f}: {int(m.sum()):5d} kernels, loss change q10 {q[0]:+.5f} q50 {q[1]:+.5f}"
                  f" q90 {q[2]:+.5f}, harmful to remove {float((f[m] > 0).float().mean()):.2f}")
