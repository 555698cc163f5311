"""Solvers of L(θ, η) = E_{x,T} ‖F_θ(T(x)) − η_x‖², registered by name.

Every variant answers two questions for the loop in :mod:`emsiam.alternation`:

- ``e_step(group, step)``: the η-step for an outer iteration (a group of k
  batches). Targets are computed under ``no_grad`` with θ_t frozen and cached.
- ``loss(idx, x, step)``: the θ-step loss for one inner SGD step, pulling
  h(F_θ(view)) (or F_θ(view) without a predictor) towards the cached η.

F_θ is l2-normalised wherever it is a target (design/alternation.md).

| name        | η                                       | refresh          | paper            |
|-------------|-----------------------------------------|------------------|------------------|
| simsiam     | sg(z) of the other view, same forward   | every step       | Alg. 1           |
| kstep       | F_θt(T(x; s)) cached per view           | every k steps    | Sec. 5 multi-step |
| ema         | m·η + (1−m)·F_θ(T'(x)), persistent bank | every step       | Sec. 5 moving avg |
| momentum    | F_ξ(T(x)), ξ an EMA of θ                | every step       | BYOL             |
| mean_input  | F_θt(mean_i T(x; s_i)) (pixel mean)     | every k steps    | Su (open question) |
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .augment import AugmentSpec, augment, view_seeds
from .banks import TargetBank, make_bank, share_bank, write_split
from .config import RESUME_FREE_KEYS, Config, flatten, k_epochs, to_dict
from .losses import negative_cosine, normalized_mse
from .models import SimSiam
from .config import ADDED_KEYS
from .predictors import step_hook

LOSSES = {"cosine": negative_cosine, "mse": normalized_mse}
#: First view number of kstep's M target views (``method.target_views``): 0-3 are M-step views
#: (replay, fresh, pairs, ema's extra view), 100+ mean_input's pixel-mean views.
TARGET_VIEW0 = 200


def predictor_kind(cfg: Config) -> str:
    """``auto`` resolves to no predictor for ``ema`` (paper Sec. 5) and a learned one otherwise."""
    p = cfg.method.predictor
    return ("none" if cfg.method.variant == "ema" else "learned") if p == "auto" else p


def steps_per_outer(cfg: Config, steps_per_epoch: int) -> int:
    """Inner steps per outer iteration: k (at most one epoch), an epoch for ``k=epoch``, or
    E epochs for ``k=Eepochs`` (the only way an outer iteration spans epochs)."""
    if cfg.method.variant not in ("kstep", "mean_input"):
        return 1
    k = cfg.method.k
    if isinstance(k, str):
        return k_epochs(k) * steps_per_epoch
    return min(int(k), steps_per_epoch)


def autocast(cfg: Config, device: torch.device):
    """The M-step's autocast; every target computation (E-step, EMA fill, probes) uses the same
    one, or k = 1 is no longer SimSiam under bf16 (design/alternation.md, "Autocast")."""
    if cfg.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def config_fingerprint(cfg: Config) -> str:
    d = {k: v for k, v in flatten(to_dict(cfg)).items() if k not in RESUME_FREE_KEYS}
    d = {k: v for k, v in d.items() if not (k in ADDED_KEYS and v == ADDED_KEYS[k])}  # older banks still match
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


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


class Variant:
    """Base: one target per view from the same forward pass (SimSiam)."""

    uses_bank = False

    def __init__(self, cfg: Config, model: SimSiam, spec: AugmentSpec, memory_format: torch.memory_format):
        self.cfg, self.model, self.spec, self.fmt = cfg, model, spec, memory_format
        self.D = LOSSES[cfg.method.loss]
        self.device = next(model.parameters()).device

    def amp(self):
        """The autocast of the M-step, for target computations."""
        return autocast(self.cfg, self.device)

    def views(self, x: torch.Tensor, idx: torch.Tensor, step: int, first: int = 0, n: int = 2) -> list[torch.Tensor]:
        """Views first..first+n-1 of batch x at ``step``, replayable from (seed, step, idx, view).
        Always built in fp32, outside any autocast, so targets and M-step see the same pixels."""
        with torch.autocast(self.device.type, enabled=False):
            return [
                augment(x, view_seeds(self.cfg.seed, step, idx, v), self.spec).contiguous(memory_format=self.fmt)
                for v in range(first, first + n)
            ]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """F_θ(x), l2-normalised."""
        return F.normalize(self.model.encoder(x).float(), dim=1)

    def pair_loss(self, p1, p2, eta1, eta2) -> torch.Tensor:
        """½D(p1, η2) + ½D(p2, η1), or D(p1, η2) alone when asymmetric (Sec. 4.6)."""
        if not self.cfg.method.symmetric:
            return self.D(p1, eta2)
        return 0.5 * self.D(p1, eta2) + 0.5 * self.D(p2, eta1)

    # hooks of the loop
    def start(self, data: torch.Tensor, batch_size: int) -> None:
        """Called once before training on a new run (e.g. to fill a persistent bank)."""

    def e_step(self, group: list[torch.Tensor], images: torch.Tensor, step: int) -> None:
        """η-step for an outer iteration; nothing to do for single-pass variants."""

    def loss(self, idx: torch.Tensor, x: torch.Tensor, step: int) -> torch.Tensor:
        """Mean over ``method.pairs`` independent view pairs (views 2j, 2j+1) of the pair loss."""
        sg = (lambda t: t.detach()) if self.cfg.method.stopgrad else (lambda t: t)
        total = 0.0
        for j in range(self.cfg.method.pairs):
            x1, x2 = self.views(x, idx, step, first=2 * j)
            p1, p2, z1, z2 = self.model(x1, x2)
            total = total + self.pair_loss(p1.float(), p2.float(), sg(z1.float()), sg(z2.float()))
        return total / self.cfg.method.pairs

    def after_step(self) -> None:
        """Called after every optimizer step: F̂ and closed-form predictors (predictors.step_hook)."""
        step_hook(self.model)

    def end_epoch(self) -> None:
        """Called after the last step of every epoch."""

    def diagnostics(self, idx: torch.Tensor, x: torch.Tensor, step: int) -> dict[str, float]:
        """Cheap per-step probes (staleness), called every ``diag_every`` steps, before the step."""
        return {}

    def eval_metrics(self) -> dict[str, float]:
        """Variant metrics logged with every evaluation (e.g. ``bank/init_weight``)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def expectation_bank(self) -> TargetBank | None:
        """The persistent bank whose rows estimate E_T[F_θ(T(x))], if any (ema)."""
        return None


class SimSiamVariant(Variant):
    """Standard SimSiam: η = sg(F_θ(other view)) from the same forward (Alg. 1).
    Also the ablations ``stopgrad=false``, ``predictor=none|fixed_random``, ``symmetric=false``."""


class KStep(Variant):
    """Multi-step alternation (Sec. 5): the E-step caches η = F_θt(T(x; s_v)) for
    both views of every image in the next k batches; the M-step takes k SGD steps
    against them. With k = 1 and ``views=replay`` this is SimSiam exactly."""

    uses_bank = True

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
        self.bank.prepare()  # committed by the loop once the checkpoint is written (banks.py)
        return {"bank": self.bank.state_dict(), "group_start": self.group_start}

    def load_state_dict(self, state):
        if self.span > 1:
            self.bank.load_state_dict(state["bank"])
            self.group_start = int(state["group_start"])


class MeanInput(KStep):
    """η_x = F_θt(x̄), x̄ = mean_i T(x; s_i) over M augmented views in pixel space
    (the open question in Su's analysis). Both loss terms use the same η."""

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


class EMA(Variant):
    """Moving-average η (Sec. 5): a persistent bank over all images.

    Each step follows θ_t = argmin L(θ, η_{t−1}): the loss ½D(h(z1), η) + ½D(h(z2), η) uses the
    bank's η from *before* this step, then η ← m·η + (1−m)·sg(u). u is F_θ of this step's views:
    their mean (``ema_view=mean``, default), the second view (``other``) or a third view
    (``extra``, the paper's literal T'). No loss term's target contains its own view's output.
    With m = 0, η is the image's F from its previous visit: "no predictor, a one-epoch-stale
    target", not "no predictor, other view" (which collapses in the paper)."""

    uses_bank = True

    def __init__(self, cfg, model, spec, memory_format, bank: TargetBank, n_images: int):
        super().__init__(cfg, model, spec, memory_format)
        self.bank = bank
        # per-row count of EMA updates: all ranks' up to the last sync, and this process's since then
        self._updates: torch.Tensor | None = None
        self._updates_local: torch.Tensor | None = None

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
        loss = self.pair_loss(p1.float(), p2.float(), eta, eta)
        self.bank.ema_update(idx, u.unsqueeze(1), m.ema_m, version=step)
        if self._updates_local is not None:
            self._updates_local.index_add_(0, idx, torch.ones_like(idx, dtype=torch.int32))
        return loss

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


class Momentum(Variant):
    """η = F_ξ(T(x)) from an EMA copy ξ ← τξ + (1−τ)θ of the encoder (BYOL-style η-step)."""

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
    def after_step(self):
        super().after_step()
        tau = self.cfg.method.momentum_tau
        for xi, theta in zip(self.target_encoder.parameters(), self.model.encoder.parameters()):
            xi.lerp_(theta, 1 - tau)
        for xi, theta in zip(self.target_encoder.buffers(), self.model.encoder.buffers()):
            xi.copy_(theta)

    def state_dict(self):
        return {"target_encoder": self.target_encoder.state_dict()}

    def load_state_dict(self, state):
        self.target_encoder.load_state_dict(state["target_encoder"])


VARIANTS = {"simsiam": SimSiamVariant, "kstep": KStep, "ema": EMA, "momentum": Momentum, "mean_input": MeanInput}


def build_variant(cfg: Config, model: SimSiam, spec: AugmentSpec, memory_format, n_images: int,
                  device: torch.device) -> Variant:
    """The variant named by ``cfg.method.variant``, with its bank if it needs one."""
    cls = VARIANTS[cfg.method.variant]
    if not cls.uses_bank:
        return cls(cfg, model, spec, memory_format)
    m = cfg.method
    path = m.bank_path
    if m.bank != "device" and path is None:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        path = str(cfg.run_dir / ("bank.h5" if m.bank == "disk" else "bank.npy"))
    n_views = 1 if cls is EMA else 2
    rows = n_images
    if cls is not EMA and isinstance(m.k, str):  # k spanning E epochs: one target pair per image and epoch
        rows *= k_epochs(m.k)
    bank = share_bank(  # with several ranks: replicated (device) or owned by rank 0 (files)
        lambda: make_bank(m.bank, rows, n_views, cfg.model.dim, dtype=m.bank_dtype, device=device,
                          path=path, fingerprint=config_fingerprint(cfg), run_id=str(cfg.run_dir.resolve())),
        m.bank, n_views, cfg.model.dim, device,
    )
    return cls(cfg, model, spec, memory_format, bank, n_images)
