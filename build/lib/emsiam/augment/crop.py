"""RandomResizedCrop and RandomHorizontalFlip: torchvision's box sampler, vectorised, and the
crop, resize and flip fused into one bilinear grid_sample."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .seeds import _N_TRIES, _U_AREA, _U_LEFT, _U_RATIO, _U_TOP
from .spec import AugmentSpec


def _crop_boxes(u: torch.Tensor, spec: AugmentSpec, height: int, width: int):
    """Vectorised torchvision RandomResizedCrop.get_params: 10 tries, first
    valid wins, else centre crop. Returns (top, left, h, w) float64 integer-
    valued tensors and a bool 'fallback' flag."""
    area = float(height * width)
    lo, hi = spec.crop_scale
    log_r0, log_r1 = math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1])
    target = area * (lo + (hi - lo) * u[:, _U_AREA : _U_AREA + _N_TRIES])
    aspect = torch.exp(log_r0 + (log_r1 - log_r0) * u[:, _U_RATIO : _U_RATIO + _N_TRIES])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    top = torch.floor(u[:, _U_TOP : _U_TOP + _N_TRIES] * (height - h + 1))
    left = torch.floor(u[:, _U_LEFT : _U_LEFT + _N_TRIES] * (width - w + 1))
    first = torch.argmax(ok.to(torch.uint8), dim=1, keepdim=True)  # first True (or 0)
    found = ok.any(dim=1)

    # Centre-crop fallback (constants: depends only on image size and spec).
    in_ratio = width / height
    rmin, rmax = min(spec.crop_ratio), max(spec.crop_ratio)
    if in_ratio < rmin:
        fw, fh = width, int(round(width / rmin))
    elif in_ratio > rmax:
        fw, fh = int(round(height * rmax)), height
    else:
        fw, fh = width, height
    ft, fl = (height - fh) // 2, (width - fw) // 2

    def pick(t, fallback):
        return torch.where(found, t.gather(1, first).squeeze(1), torch.full_like(found, fallback, dtype=t.dtype))

    return pick(top, ft), pick(left, fl), pick(h, fh), pick(w, fw), ~found


def _resized_crop_flip(x: torch.Tensor, p: dict[str, torch.Tensor], res: int) -> torch.Tensor:
    """Crop box + resize to res x res + optional h-flip, one bilinear resample.

    Output pixel c (0..res-1) samples source pixel coordinate
    left + (c + 0.5) * w / res - 0.5 (flipped: left + w - (c + 0.5) * w / res - 0.5),
    i.e. F.interpolate(align_corners=False) of the crop. The grid is built
    separably (x depends on the column only, y on the row only), which is much
    cheaper than F.affine_grid's batched matmul.
    """
    b, _, height, width = x.shape
    dt = x.dtype
    c = (torch.arange(res, device=x.device, dtype=torch.float64) + 0.5) / res  # (res,)
    top, left, ch, cw = p["crop_top"], p["crop_left"], p["crop_h"], p["crop_w"]
    # Source coordinate in grid_sample's normalised space: 2 * (pix + 0.5) / size - 1.
    cx = torch.where(p["flip"][:, None], 1.0 - c, c)  # (B, res), flip folded in per sample
    gx = (2.0 * (left[:, None] + cx * cw[:, None]) / width - 1.0).to(dt)  # (B, res)
    gy = (2.0 * (top[:, None] + c * ch[:, None]) / height - 1.0).to(dt)  # (B, res)
    grid = torch.stack(
        (gx[:, None, :].expand(b, res, res), gy[:, :, None].expand(b, res, res)), dim=-1
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
