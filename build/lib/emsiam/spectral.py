"""Does the predictor share F̂'s eigenvectors, with eigenvalues p ∝ √s? The spectral-alignment
diagnostics of DirectPred's theory, for every predictor kind (closed form, learned MLP, none),
logged with each evaluation; the spectra are saved for figures.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch
from torch import nn

from .augment import augment, view_seeds
from .models import is_channels_last
from .predictors import ClosedFormPredictor, no_autocast

#: Top eigenvectors compared by the alignment diagnostic.
TOP_K = 8


def predictor_matrix(model: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
    """A d×d matrix standing for the predictor h, with extra metrics:

    - a closed-form (linear) predictor: its weight W_p;
    - the identity (no predictor): None (every basis is an eigenbasis: alignment is undefined);
    - an MLP (learned, fixed random): the least-squares linear map A with h(z) ≈ A z + c on the
      probe's projector outputs z (ridge 1e-4·tr(ZᵀZ)/d for conditioning). For Gaussian z this is
      the mean Jacobian E[∂h/∂z] (Stein's lemma), so it needs no Jacobian per sample; ``fit_r2``
      says how much of h's output variance the linear map explains.
    """
    h = model.predictor
    if isinstance(h, ClosedFormPredictor):
        return h.weight.detach().double(), {}
    if isinstance(h, nn.Identity):
        return None, {}
    with no_autocast(z.device):
        zc = z.double() - z.double().mean(0)
        hz = h(z.float()).double()
        hc = hz - hz.mean(0)
        gram = zc.T @ zc
        ridge = 1e-4 * gram.diagonal().mean().clamp_min(1e-12)
        a = torch.linalg.solve(gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device),
                               zc.T @ hc).T  # (d_out, d_in): hc ≈ zc Aᵀ
        resid = hc - zc @ a.T
        r2 = 1.0 - resid.pow(2).sum() / hc.pow(2).sum().clamp_min(1e-30)
    return a, {"spectral/fit_r2": r2.item()}


def _probe_outputs(model: nn.Module, data, spec, n_images: int, n_views: int, seed: int, amp) -> torch.Tensor:
    """Projector outputs (P·M, d) of the expectation-gap probe (same images and view seeds as
    :func:`emsiam.evaluate.expectation_gap`), eval-mode BN, under the training autocast."""
    g = torch.Generator().manual_seed(seed + 12345)
    idx = torch.randperm(len(data), generator=g)[: min(n_images, len(data))].to(data.images.device)
    x = data.images.index_select(0, idx)
    fmt = torch.channels_last if is_channels_last(model) else torch.contiguous_format
    zs = []
    for v in range(n_views):
        xv = augment(x, view_seeds(seed, -(10**6), idx, v), spec).contiguous(memory_format=fmt)
        with amp():
            zs.append(model.encoder(xv).float())
    return torch.cat(zs)


@torch.no_grad()
def spectral_alignment(model: nn.Module, data, spec, n_images: int = 256, n_views: int = 8, seed: int = 0,
                       amp: Callable[[], ContextManager] = contextlib.nullcontext,
                       k: int = TOP_K) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Does the predictor share F̂'s eigenvectors, with eigenvalues p ∝ √s? (DirectPred Sec. 4)

    F̂ = Q diag(s) Qᵀ is the tracked correlation (:class:`CorrelationEMA`), s descending; W is
    the predictor's matrix (:func:`predictor_matrix`), W_s = (W + Wᵀ)/2 = U diag(λ) Uᵀ. Scalars:

    - ``spectral/F_top_eig`` s_1 and ``spectral/F_eff_rank`` exp(entropy of s/Σs);
    - ``spectral/W_asym`` ‖W − Wᵀ‖_F / ‖W‖_F;
    - ``spectral/align_top{k}``: mean over j ≤ k of |cos(q_j, u_j)|, eigenvectors paired by rank;
    - ``spectral/W_offdiag``: ‖offdiag(Qᵀ W_s Q)‖_F / ‖Qᵀ W_s Q‖_F, basis-free (0: W_s is
      diagonal in F̂'s eigenbasis; unaffected by near-equal eigenvalues, unlike the pairing);
    - ``spectral/p_sqrt_s_corr``: Pearson correlation over j of q_jᵀ W_s q_j and √(s_j/s_1),
      the eigenvalue law p ∝ √s (DirectPred with ε = 0 gives 1).

    Arrays (for figures, saved per evaluation by :func:`save_spectra`): ``F_eig`` (s), ``W_eig``
    (λ, descending), ``W_in_F`` (q_jᵀ W_s q_j), ``cos_top`` (|cos(q_j, u_j)|, j ≤ k). The identity
    predictor gives the F̂ entries only. Empty before the first training step (F̂ unset).
    """
    corr = getattr(model, "correlation", None)
    if corr is None or corr.steps == 0:
        return {}, {}
    was_training = model.training
    model.eval()
    try:
        z = _probe_outputs(model, data, spec, n_images, n_views, seed, amp)
        w, extra = predictor_matrix(model, z)
    finally:
        model.train(was_training)
    with no_autocast(corr.matrix.device):
        s, q = torch.linalg.eigh(corr.matrix.double())
        s, q = s.flip(0), q.flip(1)  # descending
        sp = s.clamp_min(0)
        pr = sp / sp.sum().clamp_min(1e-30)
        metrics = {"spectral/F_top_eig": s[0].item(),
                   "spectral/F_eff_rank": torch.exp(-(pr * (pr + 1e-30).log()).sum()).item()}
        arrays = {"F_eig": s.cpu().numpy()}
        if w is None:
            return metrics, arrays
        w = w.to(q.device)
        ws = 0.5 * (w + w.T)
        lam, u = torch.linalg.eigh(ws)
        lam, u = lam.flip(0), u.flip(1)
        kk = min(k, s.shape[0])
        cos_top = (q[:, :kk] * u[:, :kk]).sum(0).abs()
        m = q.T @ ws @ q
        diag = m.diagonal()
        off = (m - torch.diag(diag)).norm() / m.norm().clamp_min(1e-30)
        root = (sp / sp[0].clamp_min(1e-30)).sqrt()
        metrics.update({
            "spectral/W_asym": ((w - w.T).norm() / w.norm().clamp_min(1e-30)).item(),
            f"spectral/align_top{k}": cos_top.mean().item(),
            "spectral/W_offdiag": off.item(),
            "spectral/p_sqrt_s_corr": _pearson(diag, root),
            **extra,
        })
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}  # e.g. a flat spectrum: no correlation
        arrays.update({"W_eig": lam.cpu().numpy(), "W_in_F": diag.cpu().numpy(), "cos_top": cos_top.cpu().numpy()})
    return metrics, arrays


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = (a.norm() * b.norm()).item()
    return (a @ b).item() / den if den > 0 else float("nan")


def save_spectra(run_dir: str | Path, epoch: int, step: int, arrays: dict[str, np.ndarray], kind: str) -> Path:
    """``<run>/spectra/epoch{epoch:04d}.npz``: the spectra of one evaluation (atomic write)."""
    d = Path(run_dir) / "spectra"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"epoch{epoch:04d}.npz"
    tmp = d / f".epoch{epoch:04d}.tmp.npz"
    np.savez(tmp, epoch=epoch, step=step, predictor=kind, **arrays)
    os.replace(tmp, path)
    return path
