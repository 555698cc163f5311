"""The process group: who am I (rank, world), joining and leaving, and this rank's part of a batch.

No-ops when ``WORLD_SIZE`` is unset or 1: no process group is created.
"""

from __future__ import annotations

import datetime
import os
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def env_world_size() -> int:
    """World size requested by the launcher (torchrun sets WORLD_SIZE); 1 when unset."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """This process's rank as set by the launcher (torchrun sets RANK); 0 when unset.
    Valid before the process group exists and after it is destroyed."""
    return int(os.environ.get("RANK", "0"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Join the process group named by the environment (when WORLD_SIZE > 1); returns the device to use.

    On CUDA each process takes ``cuda:LOCAL_RANK``.
    """
    if env_world_size() <= 1 or active():
        return device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(minutes=30),
                            **({"device_id": device} if device.type == "cuda" else {}))
    return device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def rank_slice(idx: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (the whole batch in one process)."""
    n = world()
    if n == 1:
        return idx
    b = idx.shape[0] // n
    if b * n != idx.shape[0]:
        raise ValueError(f"a global batch of {idx.shape[0]} does not split evenly over {n} ranks")
    return idx[rank() * b : (rank() + 1) * b]


def split_evenly(n_items: int) -> slice:
    """This rank's contiguous part of ``n_items`` (sizes differ by at most one; may be empty)."""
    w, r = world(), rank()
    return slice(r * n_items // w, (r + 1) * n_items // w)


def split_sizes(n_items: int) -> list[int]:
    """Every rank's number of items under :func:`split_evenly` (known to all ranks, no exchange)."""
    w = world()
    return [(r + 1) * n_items // w - r * n_items // w for r in range(w)]


def main_first(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 first, then (after a barrier) on the other ranks: rank 0 decodes and
    caches data once, the others read its cache. A failure on rank 0 is raised on every rank."""
    if not active():
        return fn()
    ok = torch.zeros(1, dtype=torch.int64, device=_collective_device())
    if is_main():
        try:
            out = fn()
            ok += 1
        finally:  # tell the others, success or not, then re-raise here
            dist.broadcast(ok, src=0)
        return out
    dist.broadcast(ok, src=0)
    if not int(ok):
        raise RuntimeError("rank 0 failed to load the data (its error is in rank 0's output)")
    return fn()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
