"""The built-in synthetic source: a seeded "shape wallpaper" that needs no files.

An image is a jittered 3 x 3 lattice of copies of one shape (the class) over
nuisances drawn independently of the class (colours, background, position,
scale, rotation, noise). Why this design: docs/data.md, "Synthetic data".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .imageset import ImageSet

__all__ = ["SYNTHETIC_CLASSES", "SYNTHETIC_GRID", "make_synthetic"]

#: Class names of the synthetic source (label ``i`` is ``SYNTHETIC_CLASSES[i]``).
SYNTHETIC_CLASSES = (
    "disc", "square", "triangle", "plus", "ring", "hbar", "vbar", "diamond", "xcross", "ell",
)  # fmt: skip


def _box(px: torch.Tensor, py: torch.Tensor, bx: float, by: float) -> torch.Tensor:
    """Signed distance to an axis-aligned box with half-sizes ``(bx, by)``."""
    qx, qy = px.abs() - bx, py.abs() - by
    outside = torch.hypot(qx.clamp(min=0), qy.clamp(min=0))
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _rot45(px: torch.Tensor, py: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates rotated by 45 degrees."""
    s = math.sqrt(0.5)
    return (px + py) * s, (py - px) * s


def _triangle(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Signed distance to an upright equilateral triangle with circumradius 1 (y points down)."""
    k = math.sqrt(3.0)
    x = px.abs() - k / 2  # half the side length
    y = 0.5 - py  # flip so the apex points up in image coordinates
    fold = x + k * y > 0
    x, y = torch.where(fold, (x - k * y) / 2, x), torch.where(fold, (-k * x - y) / 2, y)
    x = x - x.clamp(-k, 0)
    return -torch.hypot(x, y) * torch.sign(y)


def _shape_sdf(label: int, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Signed distance (local units, outer radius about 1) of synthetic class ``label``."""
    name = SYNTHETIC_CLASSES[label]
    if name == "disc":
        return torch.hypot(px, py) - 0.9
    if name == "square":
        return _box(px, py, 0.75, 0.75)
    if name == "triangle":
        return _triangle(px, py - 0.25)  # centre the bounding box
    if name == "plus":
        return torch.minimum(_box(px, py, 1.0, 0.28), _box(px, py, 0.28, 1.0))
    if name == "ring":
        return (torch.hypot(px, py) - 0.72).abs() - 0.24
    if name == "hbar":
        return _box(px, py, 1.0, 0.32)
    if name == "vbar":
        return _box(px, py, 0.32, 1.0)
    if name == "diamond":
        rx, ry = _rot45(px, py)
        return _box(rx, ry, 0.72, 0.72)
    if name == "xcross":
        rx, ry = _rot45(px, py)
        return torch.minimum(_box(rx, ry, 1.0, 0.26), _box(rx, ry, 0.26, 1.0))
    if name == "ell":
        vertical = _box(px + 0.5, py, 0.3, 0.85)
        horizontal = _box(px, py - 0.55, 0.8, 0.3)
        return torch.minimum(vertical, horizontal)
    raise AssertionError(name)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV maps ``(n, H, W)`` in [0, 1] to RGB ``(n, 3, H, W)``."""
    k = (torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


def _smooth_noise(n: int, size: int, cells: int, g: torch.Generator) -> torch.Tensor:
    """Low-frequency noise ``(n, size, size)`` of roughly unit scale."""
    coarse = torch.randn(n, 1, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]


#: Layout of the synthetic images: a GRID x GRID jittered lattice of instances.
SYNTHETIC_GRID = 3


def make_synthetic(n: int, *, image_size: int = 32, seed: int = 0, name: str = "synthetic") -> ImageSet:
    """Render ``n`` images of the synthetic "shape wallpaper" data set (balanced, seeded).

    An image is a jittered 3 x 3 lattice of copies of one shape; the shape
    (``SYNTHETIC_CLASSES``) is the class. Everything else is a nuisance drawn
    independently of the class: the lattice phase and each copy's position,
    scale (radius 17-26% of the half side) and rotation (at most 10 degrees);
    each copy's colour (any hue); the background, a smooth field of varying
    hue with random saturation and brightness; pixel noise. Why: docs/data.md.
    """
    g = torch.Generator().manual_seed(seed)
    k = len(SYNTHETIC_CLASSES)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    images = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    lin = (torch.arange(image_size) + 0.5) / image_size * 2 - 1
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    chunk = max(1, 2**18 // (image_size * image_size))
    cell = 2 / SYNTHETIC_GRID
    for lo in range(0, n, chunk):
        m = min(n, lo + chunk) - lo
        lab = labels[lo : lo + m]
        u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
        flat = lambda v: v[:, None, None].expand(m, image_size, image_size)  # noqa: E731
        # Background: hue wanders over +-0.3 around a random base; dark to mid brightness.
        hue = (u(m, 1, 1) + 0.3 * _smooth_noise(m, image_size, 3, g)) % 1
        sat = (u(m, 1, 1) * 0.5 + 0.2).expand_as(hue)
        val = (u(m, 1, 1) * 0.3 + 0.15 + 0.08 * _smooth_noise(m, image_size, 3, g)).clamp(0, 1)
        img = _hsv_to_rgb(hue, sat, val)
        phase = u(m, 2) * cell - cell / 2
        for i in range(SYNTHETIC_GRID):
            for j in range(SYNTHETIC_GRID):
                ext = (u(m) * 0.09 + 0.17)[:, None, None]
                cx = -1 + cell * (j + 0.5) + phase[:, 0] + (u(m) * 2 - 1) * 0.175 * cell
                cy = -1 + cell * (i + 0.5) + phase[:, 1] + (u(m) * 2 - 1) * 0.175 * cell
                ang = ((u(m) * 2 - 1) * math.radians(10))[:, None, None]
                dx, dy = gx - cx[:, None, None], gy - cy[:, None, None]
                px = (ang.cos() * dx + ang.sin() * dy) / ext
                py = (ang.cos() * dy - ang.sin() * dx) / ext
                sdf = torch.empty_like(px)
                for c in range(k):
                    sel = (lab == c).nonzero().squeeze(1)
                    if len(sel):
                        sdf[sel] = _shape_sdf(c, px[sel], py[sel]) * ext[sel]
                alpha = (0.5 - sdf * (image_size / 2)).clamp(0, 1)[:, None]  # 1-pixel soft edge
                colour = _hsv_to_rgb(flat(u(m)), flat(u(m) * 0.6 + 0.3), flat(u(m) * 0.3 + 0.7))
                img = torch.lerp(img, colour, alpha)
        img += 0.03 * torch.randn(img.shape, generator=g)
        images[lo : lo + m] = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(images, labels, list(SYNTHETIC_CLASSES), name)
