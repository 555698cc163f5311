"""The augmentation pipeline: crop and flip, colour jitter, grayscale, blur, normalisation
(augment), and the deterministic eval transform (prepare)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .blur import _gaussian_blur, blur_kernel_size
from .color import _color_jitter_, _luma
from .crop import _resized_crop_flip
from .params import sample_params
from .spec import AugmentSpec
from .tensors import _bcast, _const


def _to_float(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if images.is_floating_point():
        return images.to(torch.float32, copy=True)  # callers modify it in place
    raise TypeError(f"expected uint8 or float images, got {images.dtype}")


def _normalize_(x: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """(x - mean) / std, in place."""
    mean = _const(tuple(spec.mean), x).view(1, 3, 1, 1)
    std = _const(tuple(spec.std), x).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def augment(
    images: torch.Tensor,
    seeds: torch.Tensor,
    spec: AugmentSpec,
    *,
    _hue_method: str = "hsv",
) -> torch.Tensor:
    """SimSiam views of ``images`` (uint8 (B,3,H,W), or float in [0, 1]) with
    per-sample ``seeds`` (int64 (B,)), on the images' device.

    Returns float32 (B, 3, R, R), normalised. Pure: same images + seeds give
    bit-identical output; each sample depends only on its own image and seed.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B,3,H,W) images, got {tuple(images.shape)}")
    seeds = seeds.to(images.device)
    if seeds.shape != images.shape[:1]:
        raise ValueError(f"seeds must have shape ({images.shape[0]},), got {tuple(seeds.shape)}")
    p = sample_params(seeds, spec, image_size=(images.shape[2], images.shape[3]))
    return _augment(images, p, spec, _hue_method)


def _augment(images, p, spec, hue_method):
    x = _resized_crop_flip(_to_float(images), p, spec.resolution)  # fresh buffer
    if spec.jitter_p > 0:
        x = _color_jitter_(x, p, order=spec.jitter_order, hue=hue_method)
    if spec.gray_p > 0:
        # lerp with a 0/1 weight: exactly x or exactly the replicated luma.
        x.lerp_(_luma(x).expand_as(x), _bcast(p["gray"], x.dtype))
    if spec.blur_p > 0:
        x = _gaussian_blur(x, p["blur_sigma"], p["blur"], blur_kernel_size(spec.resolution))
    return _normalize_(x, spec)


def prepare(images: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """Deterministic eval transform: uint8 -> float in [0, 1]; if the size is
    not R x R, resize the shorter side to R (bilinear, antialiased) and centre
    crop R x R; normalise."""
    x = _to_float(images)
    res = spec.resolution
    h, w = x.shape[-2:]
    if (h, w) != (res, res):
        scale = res / min(h, w)
        nh, nw = max(res, round(h * scale)), max(res, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        t, l = (nh - res) // 2, (nw - res) // 2
        x = x[:, :, t : t + res, l : l + res]
    return _normalize_(x.contiguous(), spec)
