"""mean_input: η_x = F_θt(x̄) of the pixel-mean view x̄ (the open question in Su's analysis)."""

from __future__ import annotations

import torch

from ..augment import augment, view_seeds
from .base import BANK_KEYS
from .kstep import KStep


class MeanInput(KStep):
    """η_x = F_θt(x̄), x̄ = mean_i T(x; s_i) over M augmented views in pixel space
    (the open question in Su's analysis). Both loss terms use the same η."""

    config_keys = ("k", "views", "e_step_bn", "mean_input_views", *BANK_KEYS)
    about = "caches η = F of the pixel-mean view for method.k M-steps"

    def targets(self, x, idx, step):
        M = self.cfg.method.mean_input_views
        with torch.autocast(self.device.type, enabled=False):
            xbar = sum(
                augment(x, view_seeds(self.cfg.seed, step, idx, 100 + i), self.spec) for i in range(M)
            ) / M
        with self.amp():
            eta = self.model.encoder(xbar.contiguous(memory_format=self.fmt)).float()
        return torch.stack([eta, eta], dim=1)

    def diagnostics(self, idx, x, step):
        age = (step - self.bank.versions(self.slots(idx, step))).float().mean().item()
        return {"bank/age_steps": age}
