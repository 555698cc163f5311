"""Small tensor helpers of the image ops: cached device constants, per-sample broadcasting."""

from __future__ import annotations

import torch

_CONSTS: dict = {}


def _const(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """Small constant tensor on like's device/dtype, cached so that CUDA pays
    the (synchronising) host->device copy once, not per call."""
    key = (values, like.device, like.dtype)
    t = _CONSTS.get(key)
    if t is None:
        t = _CONSTS[key] = torch.tensor(values, device=like.device, dtype=like.dtype)
    return t


def _bcast(v: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    return v.to(dt).view(-1, 1, 1, 1)
