"""Per-sample augmentation parameters, a pure function of each sample's seed."""

from __future__ import annotations

import torch

from .crop import _crop_boxes
from .seeds import _N_U, _U_B, _U_BLUR, _U_C, _U_FLIP, _U_GRAY, _U_H, _U_JIT, _U_ORDER, _U_S, _U_SIGMA, uniforms
from .spec import AugmentSpec


def sample_params(
    seeds: torch.Tensor, spec: AugmentSpec, image_size: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """Per-sample augmentation parameters, a pure function of each seed.

    ``image_size`` = (H, W) of the source images (default: the spec's output
    resolution, i.e. CIFAR-style same-size crops); needed because the crop
    sampler works in integer pixels and rejects boxes larger than the image.

    Returns a dict of (B,)-shaped tensors (on ``seeds.device``):
      crop_top, crop_left, crop_h, crop_w  float64, integer-valued pixel box
      crop_fallback  bool, all 10 tries rejected -> centre crop
      flip  bool
      jitter  bool; brightness, contrast, saturation, hue  float32 factors,
          set to the identity (1, 1, 1, 0) where jitter is False
      jitter_order  (B, 4) int64 permutation of (0=b, 1=c, 2=s, 3=h)
      gray  bool
      blur  bool; blur_sigma float32 (0 where blur is False)
    """
    if image_size is None:
        image_size = (spec.resolution, spec.resolution)
    height, width = int(image_size[0]), int(image_size[1])
    u = uniforms(seeds, _N_U)
    top, left, ch, cw, fallback = _crop_boxes(u, spec, height, width)

    jit = u[:, _U_JIT] < spec.jitter_p
    bj, cj, sj, hj = spec.jitter

    def factor(col, amount, centre, lo_clip):
        lo, hi = max(lo_clip, centre - amount), centre + amount
        f = (lo + (hi - lo) * u[:, col]).to(torch.float32)
        return torch.where(jit, f, torch.full_like(f, centre))

    blur = u[:, _U_BLUR] < spec.blur_p
    s0, s1 = spec.blur_sigma
    sigma = (s0 + (s1 - s0) * u[:, _U_SIGMA]).to(torch.float32)
    return {
        "crop_top": top,
        "crop_left": left,
        "crop_h": ch,
        "crop_w": cw,
        "crop_fallback": fallback,
        "flip": u[:, _U_FLIP] < spec.flip_p,
        "jitter": jit,
        "brightness": factor(_U_B, bj, 1.0, 0.0),
        "contrast": factor(_U_C, cj, 1.0, 0.0),
        "saturation": factor(_U_S, sj, 1.0, 0.0),
        "hue": factor(_U_H, hj, 0.0, -0.5),
        "jitter_order": torch.argsort(u[:, _U_ORDER : _U_ORDER + 4], dim=1, stable=True),
        "gray": u[:, _U_GRAY] < spec.gray_p,
        "blur": blur,
        "blur_sigma": torch.where(blur, sigma, torch.zeros_like(sigma)),
    }
