"""Collectives over the ranks: gather rows, average scalars and gradients, broadcast parameters.

Identities in one process.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn

from . import group


def all_gather_rows(*tensors: torch.Tensor, sizes: Sequence[int] | None = None) -> tuple[torch.Tensor, ...]:
    """Concatenate every rank's rows of each tensor, in rank order (e.g. ``(idx, eta)``).

    Every rank holds the same number of rows (a training batch: B / world), unless ``sizes``
    gives each rank's count (e.g. :func:`split_sizes`; padded for the collective). Sizes are
    never exchanged, so there is no host sync. Identity in one process.
    """
    if not group.active():
        return tensors
    n = tensors[0].shape[0]
    sizes = [n] * group.world() if sizes is None else [int(s) for s in sizes]
    if len(sizes) != group.world() or sizes[group.rank()] != n:
        raise ValueError(f"rank {group.rank()} holds {n} rows but sizes={sizes} (world {group.world()})")
    top = max(sizes)
    out = []
    for t in tensors:
        t = t.contiguous()
        pad = t.new_zeros((top - t.shape[0], *t.shape[1:]))
        buf = [t.new_empty((top, *t.shape[1:])) for _ in range(group.world())]
        dist.all_gather(buf, torch.cat([t, pad]))
        out.append(torch.cat([b[:s] for b, s in zip(buf, sizes)]) if top != min(sizes) else torch.cat(buf))
    return tuple(out)


def all_reduce_mean(values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, torch.Tensor | float]:
    """Mean over ranks of scalar values (tensors stay tensors, floats stay floats)."""
    if not group.active():
        return values
    keys = sorted(values)
    t = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=device).reshape(()) for k in keys])
    dist.all_reduce(t)
    t /= group.world()
    return {k: (t[i] if isinstance(values[k], torch.Tensor) else float(t[i])) for i, k in enumerate(keys)}


@torch.no_grad()
def average_gradients(model: nn.Module) -> None:
    """Replace every gradient by its mean over ranks (one flat all-reduce); a no-op when the
    training forward goes through DistributedDataParallel (which has averaged them already)."""
    if not group.active() or model.__dict__.get("_ddp") is not None:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= group.world()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@torch.no_grad()
def broadcast_parameters(module: nn.Module) -> None:
    """Rank 0's parameters and buffers everywhere (they are already equal when every rank seeds alike)."""
    if not group.active():
        return
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)
