"""Data-parallel training across processes (``torchrun --nproc_per_node=N -m emsiam train ...``).

Everything here is a no-op when ``WORLD_SIZE`` is unset or 1: no process group
is created and single-process runs are unchanged bit for bit.

With N > 1 processes (env:// rendezvous, so torchrun's single- and multi-node
flags work; backend ``nccl`` on CUDA, ``gloo`` on CPU):

- the global batch B (``optim.batch_size``) is split into N contiguous slices of
  B/N; every rank draws the same permutation, so the union of the rank batches
  is the one-process batch, and views (per-sample seeds) are identical;
- BatchNorm statistics are global: torch's ``SyncBatchNorm`` on CUDA, and on CPU
  (where torch's SyncBatchNorm refuses to run) :class:`AllReduceBatchNorm`;
- gradients: the mean over ranks, which equals the one-process gradient of the mean
  loss over the global batch. On CUDA the training forward goes through
  ``DistributedDataParallel`` (bucketed all-reduces overlapping the backward,
  ``broadcast_buffers=False`` since BN is synchronised), see :func:`training_forward`;
  on CPU (and for ``method.pairs > 1``, two forwards per backward) one flat
  all-reduce after ``backward`` (:func:`average_gradients`);
- data: rank 0 loads (and caches) first, the others after a barrier
  (:func:`main_first`), so that an image archive is decoded once;
- banks: the shared bank wrappers live in :mod:`emsiam.banks.shared`.
"""

from __future__ import annotations

import datetime
import functools
import os
from typing import Callable, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

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


def all_gather_rows(*tensors: torch.Tensor, sizes: Sequence[int] | None = None) -> tuple[torch.Tensor, ...]:
    """Concatenate every rank's rows of each tensor, in rank order (e.g. ``(idx, eta)``).

    Every rank holds the same number of rows (a training batch: B / world), unless ``sizes``
    gives each rank's count (e.g. :func:`split_sizes`; padded for the collective). Sizes are
    never exchanged, so there is no host sync. Identity in one process.
    """
    if not active():
        return tensors
    n = tensors[0].shape[0]
    sizes = [n] * world() if sizes is None else [int(s) for s in sizes]
    if len(sizes) != world() or sizes[rank()] != n:
        raise ValueError(f"rank {rank()} holds {n} rows but sizes={sizes} (world {world()})")
    top = max(sizes)
    out = []
    for t in tensors:
        t = t.contiguous()
        pad = t.new_zeros((top - t.shape[0], *t.shape[1:]))
        buf = [t.new_empty((top, *t.shape[1:])) for _ in range(world())]
        dist.all_gather(buf, torch.cat([t, pad]))
        out.append(torch.cat([b[:s] for b, s in zip(buf, sizes)]) if top != min(sizes) else torch.cat(buf))
    return tuple(out)


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


def all_reduce_mean(values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, torch.Tensor | float]:
    """Mean over ranks of scalar values (tensors stay tensors, floats stay floats)."""
    if not active():
        return values
    keys = sorted(values)
    t = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=device).reshape(()) for k in keys])
    dist.all_reduce(t)
    t /= world()
    return {k: (t[i] if isinstance(values[k], torch.Tensor) else float(t[i])) for i, k in enumerate(keys)}


@torch.no_grad()
def average_gradients(model: nn.Module) -> None:
    """Replace every gradient by its mean over ranks (one flat all-reduce); a no-op when the
    training forward goes through DistributedDataParallel (which has averaged them already)."""
    if not active() or model.__dict__.get("_ddp") is not None:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@torch.no_grad()
def broadcast_parameters(module: nn.Module) -> None:
    """Rank 0's parameters and buffers everywhere (they are already equal when every rank seeds alike)."""
    if not active():
        return
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)


class _TrainForward(nn.Module):
    """The model's own ``forward`` as a module, for DistributedDataParallel (same parameters)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return type(self.model).forward(self.model, *args, **kwargs)


def training_forward(model: nn.Module, device: torch.device, *, compile: bool = False, ddp: bool | None = None) -> None:
    """Set up ``model(x1, x2)``, the training forward, in place (parameter names and
    checkpoints unchanged; direct calls of submodules, e.g. ``model.encoder`` in E-steps,
    probes and evaluation, stay eager and outside DDP):

    - with several ranks and ``ddp`` (default: on CUDA), through ``DistributedDataParallel``
      (``broadcast_buffers=False``: BN is synchronised; gradients averaged in buckets that
      overlap the backward, so :func:`average_gradients` becomes a no-op);
    - with ``compile``, through ``torch.compile`` (of the DDP module when there is one).
    """
    use_ddp = active() and (device.type == "cuda" if ddp is None else ddp)
    if not use_ddp:
        if compile:
            model.compile()  # compiles model(...) only, not model.encoder(...)
        return
    from torch.nn.parallel import DistributedDataParallel

    wrapped = DistributedDataParallel(_TrainForward(model), device_ids=[device] if device.type == "cuda" else None,
                                      broadcast_buffers=False)
    call = torch.compile(wrapped) if compile else wrapped
    model.__dict__["_ddp"] = wrapped  # plain attributes: not a submodule, so not in state_dict
    model.__dict__["forward"] = functools.partial(_call, call)


def _call(module: Callable, *args, **kwargs):
    return module(*args, **kwargs)


# --------------------------------------------------------------------------- BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with autograd: the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad.contiguous())


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the union of all ranks' batches, for CPU/gloo (torch's SyncBatchNorm is CUDA/XPU only).

    Train mode: global mean, then global biased variance (two all-reduces of sums and
    counts, through :class:`_AllReduceSum` so that gradients flow to every rank's
    inputs); running statistics as nn.BatchNorm.
    Eval mode: plain batch_norm with the running statistics.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        use_batch = self.training or self.running_mean is None
        if not use_batch or not active():
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.full((1,), x.numel() / max(x.shape[1], 1), dtype=torch.float32, device=x.device)
        s = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = s[-1]
        mean = s[:-1] / n
        var = _AllReduceSum.apply((xf - mean.view(shape)).square().sum(dims)) / n
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp(min=1)), alpha=m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm global across ranks (no-op in one process): SyncBatchNorm on CUDA, else
    :class:`AllReduceBatchNorm`. Parameters and buffers are carried over."""
    if not active():
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        out = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out
