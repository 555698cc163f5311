"""The training forward ``model(x1, x2)`` through DistributedDataParallel and/or torch.compile."""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from . import group


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
    use_ddp = group.active() and (device.type == "cuda" if ddp is None else ddp)
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
