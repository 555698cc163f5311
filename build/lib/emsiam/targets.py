"""How targets are computed: no autograd graph, a chosen BN mode, and the M-step's autocast.

Shared by the variants (E-steps, EMA fill, probes) and by evaluation, so that a
target and the step that uses it see the same numerics (design/alternation.md).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .config import Config


def autocast(cfg: Config, device: torch.device):
    """The M-step's autocast; every target computation (E-step, EMA fill, probes) uses the same
    one, or k = 1 is no longer SimSiam under bf16 (design/alternation.md, "Autocast")."""
    if cfg.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def target_mode(module: nn.Module, bn: str = "train") -> Iterator[None]:
    """Forward passes that compute targets: no autograd graph, BN in ``bn`` mode
    (train: batch statistics, as SimSiam's sg(z)), running statistics untouched."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in bns]
    was_training = module.training
    module.train(bn == "train")
    try:
        with torch.no_grad():
            yield
    finally:
        for m, buffers in zip(bns, saved):
            for k, v in buffers.items():
                getattr(m, k).copy_(v)
        module.train(was_training)
