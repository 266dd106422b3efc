"""The latent space of a prior (paper appendix D, Fig. 6), drawn as a PNG with PIL.

Left panel: the encoder means μ_ψ(w_i) of source kernels the prior did not see in training (its folder's
``kernels.safetensors``, tensor "heldout"), one dot per kernel. Right panel: decoder means μ_φ(z) at a grid
of latent points spanning those dots, laid out like the left panel (z2 grows upwards). With z_dim > 2 both
panels live in the plane of the two principal components of the latent means, through their mean.

Drawn with PIL rather than matplotlib so the runtime needs no plotting library (matplotlib is only in the
``train`` extra); a scatter, a grid of tiles and a few labels are all this figure needs.
"""

from __future__ import annotations

import os

import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import PriorFormatError
from .prior import DWPrior
from .prior_folder import read_kernel_sets

PANEL = 480  # pixels per panel side
MARGIN = 56
BACKGROUND, INK, DOT, MARK = (255, 255, 255), (40, 40, 40), (31, 119, 180), (214, 39, 40)


def heldout_kernels(prior: DWPrior, kernels_file: str | os.PathLike | None = None) -> torch.Tensor:
    """Held-out source kernels (n, k, k): from `kernels_file` if given, else those the prior ships."""
    k = prior.kernel_size
    if kernels_file is not None:
        sets = read_kernel_sets(kernels_file, kernel_size=k)
        where = str(kernels_file)
    elif prior.kernels_file is not None:
        sets = prior.folder_files().kernel_sets()
        where = "the prior's kernels.safetensors"
    else:
        sets, where = {}, "the prior ships no kernels.safetensors"
    if "heldout" not in sets:
        raise PriorFormatError(f"no held-out kernels ({where}); pass --kernels FILE.safetensors with a tensor "
                               f"'heldout' of shape (n, {k}, {k})")
    return sets["heldout"]


@torch.no_grad()
def latent_plane(prior: DWPrior, kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(coords (n, 2), origin (z_dim,), basis (z_dim, 2), note): the 2-D view of the kernels' latent means.

    The note is empty for z_dim = 2 and says how much of the means' variance the plane holds otherwise.
    """
    mu = torch.cat([prior.encode(part)[0] for part in kernels.split(4096)])
    if prior.z_dim == 1:
        raise ValueError("a prior with z_dim=1 has no latent plane to draw")
    if prior.z_dim == 2:
        return mu, torch.zeros(2), torch.eye(2), ""
    origin = mu.mean(0)
    _, s, v = torch.linalg.svd(mu - origin, full_matrices=False)
    basis = v[:2].T
    share = float((s[:2] ** 2).sum() / (s**2).sum().clamp_min(1e-30))
    return (mu - origin) @ basis, origin, basis, f"; z_dim={prior.z_dim}, PC1-2: {share:.0%} of variance"


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _tiles(w: torch.Tensor, grid: int, side: int) -> Image.Image:
    """grid x grid kernels (row-major, top row first) on one shared diverging gray scale: 0 is mid gray."""
    k = w.shape[-1]
    scale = float(w.abs().flatten().quantile(0.99).clamp_min(1e-12))
    cell = side // grid
    px = max(1, (cell - 2) // k)
    img = Image.new("RGB", (side, side), BACKGROUND)
    gray = ((w / scale).clamp(-1, 1) * 127.5 + 127.5).round().to(torch.uint8)
    for i in range(grid):
        for j in range(grid):
            tile = gray[i * grid + j].repeat_interleave(px, 0).repeat_interleave(px, 1).numpy()
            x0 = j * cell + (cell - k * px) // 2
            y0 = i * cell + (cell - k * px) // 2
            img.paste(Image.fromarray(tile, mode="L").convert("RGB"), (x0, y0))
    return img


def latent_figure(prior: DWPrior, kernels: torch.Tensor, title: str, grid: int = 10, max_points: int = 4096,
                  seed: int = 0) -> Image.Image:
    """The two-panel figure described in the module docstring."""
    if grid < 2:
        raise ValueError("grid must be at least 2")
    if len(kernels) > max_points:
        keep = torch.randperm(len(kernels), generator=torch.Generator().manual_seed(seed))[:max_points]
        kernels = kernels[keep]
    coords, origin, basis, note = latent_plane(prior, kernels)
    lo = coords.quantile(0.01, dim=0)
    hi = coords.quantile(0.99, dim=0)
    pad = (hi - lo).clamp_min(1e-3) * 0.05
    lo, hi = lo - pad, hi + pad
    steps = (torch.arange(grid) + 0.5) / grid  # cell centres
    gx = lo[0] + steps * (hi[0] - lo[0])
    gy = hi[1] - steps * (hi[1] - lo[1])  # top row = largest second coordinate
    plane = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1).reshape(-1, 2)  # (grid², 2) as (x, y)
    with torch.no_grad():
        decoded = prior.decode(origin + plane @ basis.T)[0]

    width, height = 2 * PANEL + 3 * MARGIN, PANEL + 2 * MARGIN + 24
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    top = MARGIN + 24
    left_box = (MARGIN, top, MARGIN + PANEL, top + PANEL)
    right_x = 2 * MARGIN + PANEL
    draw.text((MARGIN, 8), title, fill=INK, font=_font(16))
    draw.text((MARGIN, top - 20), f"encoder means of {len(kernels):,} held-out kernels{note}", fill=INK,
              font=_font(13))
    draw.text((right_x, top - 20), f"decoder means at {grid}x{grid} latent points (0 = gray)", fill=INK,
              font=_font(13))

    def to_px(p: torch.Tensor) -> tuple[float, float]:
        fx = float((p[0] - lo[0]) / (hi[0] - lo[0]))
        fy = float((p[1] - lo[1]) / (hi[1] - lo[1]))
        return left_box[0] + fx * PANEL, left_box[3] - fy * PANEL

    for p in coords:
        x, y = to_px(p)
        if left_box[0] <= x <= left_box[2] and left_box[1] <= y <= left_box[3]:
            draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=DOT)
    for p in plane:
        x, y = to_px(p)
        draw.line((x - 3, y, x + 3, y), fill=MARK)
        draw.line((x, y - 3, x, y + 3), fill=MARK)
    draw.rectangle(left_box, outline=INK)
    small = _font(11)
    for frac in (0.0, 0.5, 1.0):
        xv = float(lo[0] + frac * (hi[0] - lo[0]))
        yv = float(lo[1] + frac * (hi[1] - lo[1]))
        draw.text((left_box[0] + frac * PANEL - 12, left_box[3] + 4), f"{xv:.2f}", fill=INK, font=small)
        draw.text((left_box[0] - 40, left_box[3] - frac * PANEL - 6), f"{yv:.2f}", fill=INK, font=small)
    names = ("PC1", "PC2") if note else ("z1", "z2")
    draw.text((left_box[0] + PANEL // 2, left_box[3] + 20), names[0], fill=INK, font=small)
    draw.text((left_box[0] - 40, left_box[1] - 16), names[1], fill=INK, font=small)
    img.paste(_tiles(decoded, grid, PANEL), (right_x, top))
    draw.rectangle((right_x, top, right_x + PANEL, top + PANEL), outline=INK)
    return img
