"""Closed-form predictors (DirectPred, DirectCopy) and F̂, the correlation they are set from.

- DirectPred (Tian, Chen & Ganguli 2021, arXiv 2102.06810, Sec. 5): a linear d×d predictor
  without bias or BN, set from F̂ = EMA of mean(f fᵀ) of the online projector outputs:
  F̂ = Q diag(s) Qᵀ, p_j = √(max(s_j, 0)/max_j s_j) + ε, p_j ≥ 1e-4, W_p = Q diag(p) Qᵀ.
- DirectCopy (Wang et al. 2021, arXiv 2110.04947): W_p = F̂/s_max + ε·I, no eigendecomposition.

F̂ (:class:`CorrelationEMA`) is tracked for *every* predictor kind, so that the alignment
DirectPred's theory predicts (a learned linear predictor shares F̂'s eigenvectors and has
eigenvalues p ∝ √s) can be measured for SGD-trained predictors too
(:func:`emsiam.spectral.spectral_alignment`). Facts and pitfalls: ``shared/design/predictor.md``.
"""

from __future__ import annotations

import math
from typing import ContextManager

import torch
import torch.nn.functional as F
from torch import nn

#: Predictor kinds whose weight is set in closed form from F̂.
CLOSED_FORM = ("directpred", "directcopy")
#: DirectPred's floor on the eigenvalues p_j of W_p.
P_FLOOR = 1e-4


def no_autocast(device: torch.device) -> ContextManager:
    """fp32 (never bf16) for F̂ and the closed forms, whatever autocast the caller is under."""
    return torch.autocast(device.type, enabled=False)


class CorrelationEMA(nn.Module):
    """F̂ ← ρ·F̂ + (1−ρ)·mean(f fᵀ) over the rows f recorded since the last :meth:`update`
    (both views' online projector outputs of one step, detached, not centred; DirectPred
    Sec. 5). At the first update F̂ is that step's matrix.

    ``matrix`` and the update count ``count`` are buffers, so both are in the model's
    ``state_dict`` (the checkpoint) and a resumed run continues exactly; the count is mirrored on
    the host (``steps``), so the loop never waits on the device for it. A checkpoint written
    before F̂ existed loads too: F̂ then restarts at the next step.
    """

    def __init__(self, dim: int, rho: float = 0.3):
        super().__init__()
        self.rho = rho
        self.register_buffer("matrix", torch.zeros(dim, dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        # Σ f fᵀ and the row count since the last update (not saved: the loop updates after every step)
        self.register_buffer("pending", torch.zeros(dim, dim), persistent=False)
        self.pending_rows = 0
        self.steps = 0  # updates so far = optimizer steps since the run began (host int: no device sync)

    @torch.no_grad()
    def record(self, z: torch.Tensor) -> None:
        """Add a batch of projector outputs (B, d) to this step's Σ f fᵀ (fp32, outside autocast)."""
        with no_autocast(z.device):
            f = z.detach().float()
            self.pending.addmm_(f.T, f)
        self.pending_rows += f.shape[0]

    @torch.no_grad()
    def update(self) -> int | None:
        """Fold this step's rows into F̂; returns this step's index t (0-based), or None if nothing
        was recorded. Several processes: the matrix of the global batch (sum over ranks, whose
        slices of the global batch are equal, ``optim.batch_size`` divisible by the world size);
        every rank calls this at the same point of the step."""
        from . import distributed  # local: models import this module, distributed imports banks

        rows = self.pending_rows
        if distributed.active():
            torch.distributed.all_reduce(self.pending)
            rows *= distributed.world()
        if rows == 0:
            return None
        with no_autocast(self.matrix.device):
            batch = self.pending / rows
            if self.steps == 0:
                self.matrix.copy_(batch)
            else:
                self.matrix.mul_(self.rho).add_(batch, alpha=1.0 - self.rho)
        self.pending.zero_()
        self.pending_rows = 0
        t, self.steps = self.steps, self.steps + 1
        self.count.fill_(self.steps)
        return t

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        mine = {prefix + "matrix", prefix + "count"}
        if not mine & set(state_dict):  # a checkpoint from before F̂ was tracked: start afresh
            missing_keys[:] = [k for k in missing_keys if k not in mine]
            self.matrix.zero_()
            self.count.zero_()
        self.steps = int(self.count)


def directpred_weight(corr: torch.Tensor, eps: float) -> torch.Tensor:
    """DirectPred's W_p = Q diag(p) Qᵀ with p_j = √(max(s_j, 0)/max_j s_j) + ε, p_j ≥ 1e-4, from
    F̂ = Q diag(s) Qᵀ (``torch.linalg.eigh`` in fp32, outside any autocast)."""
    with no_autocast(corr.device):
        s, q = torch.linalg.eigh(corr.float())
        s_max = s.max().clamp_min(torch.finfo(s.dtype).tiny)
        p = ((s.clamp_min(0) / s_max).sqrt() + eps).clamp_min(P_FLOOR)
        return (q * p) @ q.T


def top_eigenvalue(corr: torch.Tensor, v: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """s_max of a symmetric PSD F̂ by power iteration warm-started at ``v`` (updated in place):
    the Rayleigh quotient vᵀF̂v, O(iters·d²) instead of an O(d³) eigendecomposition."""
    with no_autocast(corr.device):
        corr = corr.float()
        x = v.float()
        for _ in range(iters):
            y = corr @ x
            n = y.norm()
            if n <= 0:  # F̂ = 0 (or v ⟂ its range): nothing to iterate
                break
            x = y / n
        v.copy_(x)
        return (x @ corr @ x).clamp_min(0)


def directcopy_weight(corr: torch.Tensor, eps: float, v: torch.Tensor) -> torch.Tensor:
    """DirectCopy's W_p = F̂/s_max + ε·I (s_max by :func:`top_eigenvalue`)."""
    with no_autocast(corr.device):
        s_max = top_eigenvalue(corr, v).clamp_min(torch.finfo(torch.float32).tiny)
        return corr.float() / s_max + eps * torch.eye(corr.shape[0], device=corr.device)


class ClosedFormPredictor(nn.Module):
    """Linear predictor h(z) = W_p z, d×d, no bias, no BN, whose W_p is set from F̂ every
    ``freq`` steps (:meth:`set_from`): DirectPred (``kind="directpred"``) or DirectCopy.

    W_p stays a trainable parameter: with freq = 1 every SGD update of it is overwritten after
    the step (SGD has no effect); with freq > 1 SGD moves it between resets (DirectPred's
    "freq = 5" hybrid). Before the first reset W_p is nn.Linear's default initialisation.
    """

    def __init__(self, dim: int, kind: str = "directpred", eps: float = 0.1, freq: int = 1):
        super().__init__()
        if kind not in CLOSED_FORM:
            raise ValueError(f"unknown closed-form predictor {kind!r}; expected one of {CLOSED_FORM}")
        self.kind, self.eps, self.freq = kind, eps, freq
        self.weight = nn.Parameter(nn.Linear(dim, dim, bias=False).weight.detach().clone())
        # DirectCopy: warm start of the power iteration for s_max (saved, so resume is exact)
        self.register_buffer("top_vector", torch.full((dim,), 1.0 / math.sqrt(dim)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.weight)

    @torch.no_grad()
    def closed_form(self, corr: torch.Tensor) -> torch.Tensor:
        if self.kind == "directpred":
            return directpred_weight(corr, self.eps)
        return directcopy_weight(corr, self.eps, self.top_vector)

    @torch.no_grad()
    def set_from(self, corr: torch.Tensor, t: int) -> bool:
        """W_p ← closed form of F̂ when step t is a multiple of ``freq`` (t = 0, freq, 2·freq, ...;
        not ``freq % t``, the inverted modulo of a public port). Returns whether it was set."""
        if t % self.freq:
            return False
        self.weight.copy_(self.closed_form(corr).to(self.weight.dtype))
        return True


def build_predictor(kind: str, dim: int, *, eps: float = 0.1, freq: int = 1) -> ClosedFormPredictor:
    """The closed-form predictor named ``kind`` (one of :data:`CLOSED_FORM`)."""
    return ClosedFormPredictor(dim, kind, eps, freq)


def step_hook(model: nn.Module) -> None:
    """After each optimizer step: fold the step's projector outputs into F̂, then (closed-form
    predictors) set W_p from F̂ when the step is a multiple of ``freq``.

    Why here, and not in the forward pass: W_p must not change while the step's autograd graph
    uses it; the eigendecomposition runs outside the step's (bf16) autocast; at a reset step the
    closed form overwrites that step's SGD update, and between resets SGD's updates stand (the
    freq semantics); and with several processes every rank reaches this point once per step, as
    the all-reduce of the global-batch F̂ requires. The forward only records the detached z
    (:meth:`SimSiam.forward <emsiam.models.SimSiam.forward>`), since it sees both views for
    every predictor kind (an MLP or the identity cannot record its own input)."""
    corr = getattr(model, "correlation", None)
    if corr is None:
        return
    t = corr.update()
    if t is not None and isinstance(model.predictor, ClosedFormPredictor):
        model.predictor.set_from(corr.matrix, t)
