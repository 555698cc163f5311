"""ema: a persistent bank of moving-average targets over all images (Sec. 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import distributed
from ..banks import TargetBank, write_split
from ..targets import target_mode
from .base import BANK_KEYS, Variant


class EMA(Variant):
    """Moving-average η (Sec. 5): a persistent bank over all images.

    Each step follows θ_t = argmin L(θ, η_{t−1}): the loss ½D(h(z1), η) + ½D(h(z2), η) uses the
    bank's η from *before* this step, then (:meth:`update_targets`, after the step) η ← m·η + (1−m)·sg(u). u is F_θ of this step's views:
    their mean (``ema_view=mean``, default), the second view (``other``) or a third view
    (``extra``, the paper's literal T'). No loss term's target contains its own view's output.
    With m = 0, η is the image's F from its previous visit: "no predictor, a one-epoch-stale
    target", not "no predictor, other view" (which collapses in the paper)."""

    default_predictor = "none"  # paper Sec. 5: the moving average stands in for the predictor
    bank_views = 1
    config_keys = ("ema_m", "ema_view", "e_step_bn", *BANK_KEYS)
    about = "keeps a moving-average bank, one step per target"

    def __init__(self, cfg, model, spec, memory_format, bank: TargetBank, n_images: int):
        super().__init__(cfg, model, spec, memory_format)
        self.bank = bank
        # per-row count of EMA updates: all ranks' up to the last sync, and this process's since then
        self._updates: torch.Tensor | None = None
        self._updates_local: torch.Tensor | None = None
        self._u: torch.Tensor | None = None  # (B, d) F_θ of this step's views, detached, for update_targets

    def _counts(self, n: int) -> None:
        if self._updates is None:
            self._updates = torch.zeros(n, dtype=torch.int32, device=self.device)
            self._updates_local = torch.zeros(n, dtype=torch.int32, device=self.device)

    def start(self, images, batch_size):
        """Fill the bank with one pass η_x = F_θ0(T(x)) in a seeded random order, at the training
        batch size, with the E-step's BN mode: no batch is a single class (ImageFolder data is
        sorted by label). The last batch is the last ``batch_size`` images of the order (it
        overlaps the one before), so every batch has training size; only new rows are written."""
        n = images.shape[0]
        self._counts(n)
        g = torch.Generator().manual_seed(self.cfg.seed + 7919)
        order = torch.randperm(n, generator=g).to(images.device)
        b = min(batch_size, n)
        with target_mode(self.model, self.cfg.method.e_step_bn):
            for s in range(0, n, b):
                lo = min(s, n - b)
                idx = order[lo : lo + b]
                x = images.index_select(0, idx)
                (v,) = self.views(x, idx, -1, n=1)
                with self.amp():
                    eta = self.encode(v).unsqueeze(1)
                # every rank encodes the whole batch (same BN statistics as one process) and writes its
                # part of the new rows; the bank gathers the parts (the whole batch in one process)
                new = slice(s - lo, b)
                write_split(self.bank, idx[new], eta[new], version=0)  # part sizes known: no exchange
        self.bank.flush()

    def loss(self, idx, x, step):
        m = self.cfg.method
        x1, x2 = self.views(x, idx, step)
        eta = self.bank.read(idx)[:, 0]  # η_{t−1}: read before this step's update
        if m.ema_view == "extra":  # before the graph is built: target_mode restores BN buffers
            with target_mode(self.model, m.e_step_bn):
                (x3,) = self.views(x, idx, step, first=2, n=1)
                u = self.encode(x3)
        p1, p2, z1, z2 = self.model(x1, x2)
        if m.ema_view == "other":
            u = F.normalize(z2.detach().float(), dim=1)
        elif m.ema_view == "mean":
            u = 0.5 * (F.normalize(z1.detach().float(), dim=1) + F.normalize(z2.detach().float(), dim=1))
        self._u = u  # detached: the update waits for update_targets, after the step
        return self.pair_loss(p1.float(), p2.float(), eta, eta)

    def update_targets(self, idx, step):
        """η ← m·η + (1−m)·u for the rows of batch ``idx``, u saved by :meth:`loss` from this step's
        forward (its η was read before: the step used η_{t−1})."""
        u, self._u = self._u, None
        self.bank.ema_update(idx, u.unsqueeze(1), self.cfg.method.ema_m, version=step)
        if self._updates_local is not None:
            self._updates_local.index_add_(0, idx, torch.ones_like(idx, dtype=torch.int32))

    def _sync_updates(self) -> torch.Tensor:
        """All ranks' update counts per row (a collective: every rank calls it at the same point)."""
        local = self._updates_local
        if distributed.active():
            local = local.clone()
            torch.distributed.all_reduce(local)
        self._updates += local
        self._updates_local.zero_()
        return self._updates

    def eval_metrics(self) -> dict[str, float]:
        """``bank/init_weight``: mean over rows of m^n, the weight of the initial (random-network)
        target η₀ left after n updates. Above ~0.05 a result is about η₀, not the moving average."""
        if self._updates is None:  # resumed from a checkpoint written before the counts existed
            return {}
        n = self._sync_updates().double()
        return {"bank/init_weight": (self.cfg.method.ema_m ** n).mean().item()}

    def end_epoch(self):
        """Nothing: the bank is committed with the next checkpoint (see state_dict), so that a run
        killed before that checkpoint finds the bank at the version of its last one."""

    def state_dict(self):
        """Prepares the bank's commit, whose version the checkpoint names; the loop commits it once
        the checkpoint is written (alternation._end_of_epoch, docs/banks.md)."""
        self.bank.prepare()
        state = {"bank": self.bank.state_dict()}
        if self._updates is not None:
            state["updates"] = self._sync_updates().clone()
        return state

    def load_state_dict(self, state):
        self.bank.load_state_dict(state["bank"])
        if "updates" in state:  # checkpoints before bank/init_weight existed lack it
            self._counts(state["updates"].numel())
            self._updates.copy_(state["updates"])

    def expectation_bank(self):
        return self.bank
