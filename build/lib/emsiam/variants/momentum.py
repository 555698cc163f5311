"""momentum: η from an EMA copy ξ of the encoder (a BYOL-style η-step)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..targets import target_mode
from .base import Variant


class Momentum(Variant):
    """η = F_ξ(T(x)) from an EMA copy ξ ← τξ + (1−τ)θ of the encoder (BYOL-style η-step)."""

    config_keys = ("momentum_tau", "e_step_bn")
    about = "takes η from a moving-average encoder, one step per target"

    def __init__(self, cfg, model, spec, memory_format):
        super().__init__(cfg, model, spec, memory_format)
        self.target_encoder = copy.deepcopy(model.encoder).requires_grad_(False)

    def loss(self, idx, x, step):
        x1, x2 = self.views(x, idx, step)
        with target_mode(self.target_encoder, self.cfg.method.e_step_bn), self.amp():
            eta1 = F.normalize(self.target_encoder(x1).float(), dim=1)
            eta2 = F.normalize(self.target_encoder(x2).float(), dim=1)
        p1, p2, _, _ = self.model(x1, x2)
        return self.pair_loss(p1.float(), p2.float(), eta1, eta2)

    @torch.no_grad()
    def update_targets(self, idx, step):
        """ξ ← τξ + (1−τ)θ (parameters), ξ's buffers ← θ's, after the step (and its after_step)."""
        tau = self.cfg.method.momentum_tau
        for xi, theta in zip(self.target_encoder.parameters(), self.model.encoder.parameters()):
            xi.lerp_(theta, 1 - tau)
        for xi, theta in zip(self.target_encoder.buffers(), self.model.encoder.buffers()):
            xi.copy_(theta)

    def state_dict(self):
        return {"target_encoder": self.target_encoder.state_dict()}

    def load_state_dict(self, state):
        self.target_encoder.load_state_dict(state["target_encoder"])
