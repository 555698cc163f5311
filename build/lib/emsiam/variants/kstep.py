"""Multi-step alternation (Sec. 5): η cached by an E-step, then k M-steps against it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..banks import TargetBank
from ..config import k_epochs
from ..targets import target_mode
from .base import BANK_KEYS, Variant

#: First view number of kstep's M target views (``method.target_views``): 0-3 are M-step views
#: (replay, fresh, pairs, ema's extra view), 100+ mean_input's pixel-mean views.
TARGET_VIEW0 = 200


class KStep(Variant):
    """Multi-step alternation (Sec. 5): the E-step caches η = F_θt(T(x; s_v)) for
    both views of every image in the next k batches; the M-step takes k SGD steps
    against them. With k = 1 and ``views=replay`` this is SimSiam exactly."""

    uses_k = True
    bank_views = 2
    config_keys = ("k", "views", "e_step_bn", "target_views", *BANK_KEYS)
    about = "caches η for method.k M-steps"

    def __init__(self, cfg, model, spec, memory_format, bank: TargetBank, n_images: int):
        super().__init__(cfg, model, spec, memory_format)
        self.bank = bank
        self.group_start = 0
        self.n_images = n_images
        self.span = k_epochs(cfg.method.k) if isinstance(cfg.method.k, str) else 1  # epochs an η serves
        self.steps_per_epoch = max(n_images // cfg.optim.batch_size, 1)  # Batches drop the last partial batch

    def slots(self, idx: torch.Tensor, step: int) -> torch.Tensor:
        """Bank rows of images ``idx`` at ``step``: the image index, plus N per epoch into the outer
        iteration when it spans several epochs (an image then has one target pair per epoch)."""
        if self.span == 1:
            return idx
        return idx + self.n_images * ((step - self.group_start) // self.steps_per_epoch)

    def targets(self, x: torch.Tensor, idx: torch.Tensor, step: int) -> torch.Tensor:
        """(B, 2, d) targets for batch x: one per view, each view a separate forward (as in simsiam).

        Stored unnormalised: D and the MSE form normalise η themselves, so the
        cached value is bit-for-bit SimSiam's sg(z) and k = 1 reproduces it exactly.

        ``method.target_views=M > 1``: the explicit expectation η_x = (1/M) Σ_i F_θt(T(x; s_i)),
        each F l2-normalised before the mean, over M target views numbered TARGET_VIEW0 + i
        (disjoint from the M-step's views 0-3). Both loss terms use this one η: neither view of
        the pair is among the M, so no term's target contains its own view, and splitting the M
        views between the terms would halve each estimate.
        """
        M = self.cfg.method.target_views
        if M > 1:
            xs = self.views(x, idx, step, first=TARGET_VIEW0, n=M)
            with self.amp():
                eta = sum(self.encode(xv) for xv in xs) / M
            return torch.stack([eta, eta], dim=1)
        x1, x2 = self.views(x, idx, step)
        with self.amp():
            return torch.stack([self.model.encoder(x1).float(), self.model.encoder(x2).float()], dim=1)

    def e_step(self, group, images, step):
        self.group_start = step
        with target_mode(self.model, self.cfg.method.e_step_bn):
            for j, idx in enumerate(group):
                eta = self.targets(images.index_select(0, idx), idx, step + j)
                self.bank.write(self.slots(idx, step + j), eta, version=step)
        if self.span == 1:  # targets that outlive an epoch are committed with the checkpoint instead
            self.bank.flush()

    def loss(self, idx, x, step):
        first = 0 if self.cfg.method.views == "replay" else 2
        x1, x2 = self.views(x, idx, step, first)
        eta = self.bank.read(self.slots(idx, step))  # (B, 2, d), written by this outer iteration's E-step
        p1, p2, _, _ = self.model(x1, x2)
        return self.pair_loss(p1.float(), p2.float(), eta[:, 0], eta[:, 1])

    def diagnostics(self, idx, x, step):
        """Staleness at the target's use, before the optimizer step that uses it: cos(η, F_θ(v)) for
        the view v that produced η, recomputed with the current θ (exactly 1 with k = 1); age in steps."""
        slots = self.slots(idx, step)
        with target_mode(self.model, self.cfg.method.e_step_bn):
            now = self.targets(x, idx, step)
        cos = F.cosine_similarity(self.bank.read(slots), now, dim=-1).mean().item()
        age = (step - self.bank.versions(slots)).float().mean().item()
        return {"bank/staleness_cos": cos, "bank/age_steps": age}

    def state_dict(self):
        """Targets that outlive an epoch (k spanning epochs) are part of the checkpoint."""
        if self.span == 1:
            return {}
        self.bank.prepare()  # committed by the loop once the checkpoint is written (docs/banks.md)
        return {"bank": self.bank.state_dict(), "group_start": self.group_start}

    def load_state_dict(self, state):
        if self.span > 1:
            self.bank.load_state_dict(state["bank"])
            self.group_start = int(state["group_start"])
