"""GaussianBlur with a per-sample sigma (ImageNet recipe): separable grouped convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def blur_kernel_size(resolution: int) -> int:
    """Odd Gaussian kernel size of ~10% of the side (23 at 224, 3 at 32)."""
    return int(0.1 * resolution) // 2 * 2 + 1


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, blur: torch.Tensor, ksize: int) -> torch.Tensor:
    """Per-sample separable Gaussian (grouped conv, reflect padding). Samples
    with blur False get a delta kernel, which is an exact identity."""
    b, c, hh, ww = x.shape
    half = (ksize - 1) / 2
    t = torch.linspace(-half, half, ksize, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp(min=1e-6).view(-1, 1)
    k = torch.exp(-0.5 * (t / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)
    delta = (t == 0).to(x.dtype).expand_as(k)
    k = torch.where(blur.view(-1, 1), k, delta)  # (B, K)
    k = k.repeat_interleave(c, dim=0)  # (B*C, K)
    pad = ksize // 2
    y = x.reshape(1, b * c, hh, ww)
    y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, ksize, 1), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, 1, ksize), groups=b * c)
    return y.view(b, c, hh, ww)
