"""The alternation engine: outer loop (E-step, η) and inner loop (M-step, θ), then each epoch's
evaluation and checkpoint.

Solves L(θ, η) = E_{x,T} ‖F_θ(T(x)) − η_x‖² by alternation (Chen & He 2021, Sec. 5;
design/alternation.md):

    for each outer iteration t (k batches of the epoch's permutation):
        E-step: η ← targets of those images under θ_t (no_grad, cached in a bank)
        for each batch: M-step (one SGD step on θ against η), then the moving-average update

Variants without k (``uses_k`` false) have k = 1 and compute η inside the step. An outer
iteration never crosses an epoch boundary (the last one of an epoch is truncated to the batches
that remain) unless k spans epochs (``k=Eepochs``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from . import distributed
from .evaluate import evaluate, expectation_gap
from .losses import symmetric_simsiam
from .models import SimSiam
from .progress import epoch_summary, progress_bar
from .runs import RunError
from .setup import Setup, set_lr
from .spectral import save_spectra, spectral_alignment
from .targets import autocast
from .variants import predictor_kind, steps_per_outer

#: Steps between the loop's host syncs (progress bar and the non-finite-loss check), with or
#: without a progress bar: one ``.item()`` every SYNC_EVERY steps, never one per step.
SYNC_EVERY = 10


class NonFiniteLoss(RunError):
    """The training loss became NaN or infinite; the last finite checkpoint is kept."""

    exit_code = 10


def outer_iterations(order: torch.Tensor, batch_size: int, k: int) -> list[list[torch.Tensor]]:
    """Split an epoch's permutation into groups of k batches of image indices (last group truncated)."""
    batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    return [batches[i : i + k] for i in range(0, len(batches), k)]


def fit(s: Setup) -> list[dict[str, Any]]:
    """Train a built run to ``optim.epochs`` (or on from its checkpoint); returns its metric records."""
    cfg, model, variant = s.cfg, s.model, s.variant
    k = steps_per_outer(cfg, len(s.batches))  # more than an epoch only for k = "Eepochs"
    k_in_epoch = min(k, len(s.batches))
    s.run.initialise()
    if cfg.resume:  # the checkpoint's states, RNGs, and the metrics up to its step
        start_epoch, step = s.run.restore_state(s.device, model=model, optimizer=s.opt, variant=variant)
    else:
        start_epoch, step = 0, 0
        variant.start(s.train.images, cfg.optim.batch_size)  # the training batch size: BN as in training
        _print_summary(s, run_eval(s, epoch=0, step=0))

    for epoch in range(start_epoch, cfg.optim.epochs):
        model.train()
        sums: dict[str, torch.Tensor | float] = {"train/loss": torch.zeros((), device=s.device)}
        first_bad = torch.full((), -1, dtype=torch.long, device=s.device)  # first step with a non-finite loss
        n_diag, n_done, t0 = 0, 0, time.perf_counter()
        bar = progress_bar(total=len(s.batches), desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                           enabled=cfg.progress and distributed.is_main())
        for global_group in outer_iterations(s.batches.indices(epoch), cfg.optim.batch_size, k_in_epoch):
            group = [distributed.rank_slice(idx) for idx in global_group]  # this rank's part of each batch
            if k <= len(s.batches):
                variant.e_step(group, s.train.images, step)  # E-step: η for every image of the group
            elif step % k == 0:  # the outer iteration spans epochs: one E-step (θ_t) for all their batches
                span = [distributed.rank_slice(idx) for idx in _batches_of_epochs(s, epoch, k // len(s.batches))]
                variant.e_step(span, s.train.images, step)
            for idx in group:  # M-step: one SGD step on θ per batch
                x = s.train.images.index_select(0, idx)
                if step % cfg.method.diag_every == 0:  # probes see the targets as this step uses them
                    for key, v in variant.diagnostics(idx, x, step).items():
                        sums[key] = sums.get(key, 0.0) + v
                    n_diag += 1
                loss = m_step(s, idx, x, step)  # M-step: one SGD step on θ against η
                variant.update_targets(idx, step)  # then the moving-average targets (ema, momentum)
                sums["train/loss"] += loss
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
                step += 1
                n_done += 1
                bar.update()
                if n_done % SYNC_EVERY == 0:  # the loop's only host syncs (and one at the epoch's end)
                    bad, last = torch.stack([first_bad.to(loss.dtype), loss]).tolist()
                    _check_finite(int(bad), epoch, cfg.optim.epochs)
                    rate = n_done * cfg.optim.batch_size / (time.perf_counter() - t0)
                    bar.set_postfix(loss=f"{last:.4f}", lr=f"{s.lrs[step - 1]:.4f}", pairs_s=f"{rate:.0f}")
        bar.close()
        _check_finite(int(first_bad), epoch, cfg.optim.epochs)  # before anything of this epoch is saved
        variant.end_epoch()
        sums = distributed.all_reduce_mean(sums, s.device)  # per-rank means -> global-batch means
        _end_of_epoch(s, epoch, step, sums, n_diag, time.perf_counter() - t0)
        distributed.barrier()  # rank 0 has written metrics and checkpoint
    return s.run.metrics()


def m_step(s: Setup, idx: torch.Tensor, x: torch.Tensor, step: int) -> torch.Tensor:
    """One SGD step on θ against the variant's targets; returns the detached loss."""
    set_lr(s.opt, float(s.lrs[step]), s.base_lr)
    with autocast(s.cfg, s.device):
        loss = s.variant.loss(idx, x, step)
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(s.model)  # several processes: mean over ranks = global-batch gradient
    s.opt.step()
    s.variant.after_step()
    return loss.detach()


def run_eval(s: Setup, epoch: int, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate (kNN, linear probe, collapse, expectation gap, spectra), log and return the record."""
    e = s.cfg.eval
    t0 = time.perf_counter()
    amp = lambda: autocast(s.cfg, s.device)  # noqa: E731 - forwards in the training precision
    metrics = evaluate(
        s.model, s.train, s.test, s.spec, knn_k=e.knn_k, knn_t=e.knn_t, linear=e.linear,
        linear_epochs=e.linear_epochs, linear_lr=e.linear_lr, batch_size=e.batch_size, seed=s.cfg.seed, amp=amp,
    )
    metrics.update(expectation_gap(
        s.model, s.train, s.spec, s.cfg.method.probe_images, s.cfg.method.probe_views, s.cfg.seed,
        bank=s.variant.expectation_bank(), bank_bn=s.cfg.method.e_step_bn, amp=amp,
    ))
    metrics.update(s.variant.eval_metrics())
    spectral, spectra = spectral_alignment(  # predictor vs F̂ (DirectPred's theory); spectra for figures
        s.model, s.train, s.spec, s.cfg.method.probe_images, s.cfg.method.probe_views, s.cfg.seed, amp=amp)
    metrics.update(spectral)
    if spectra and distributed.is_main():
        save_spectra(s.cfg.run_dir, epoch, step, spectra, predictor_kind(s.cfg))
    record = {"epoch": epoch, "step": step, **(extra or {}), **metrics, "time/eval_s": time.perf_counter() - t0}
    s.run.log(record)
    return record


def _batches_of_epochs(s: Setup, first: int, n: int) -> list[torch.Tensor]:
    """The batches of epochs first..first+n-1 (fewer at the end of training), in step order."""
    last = min(first + n, s.cfg.optim.epochs)
    B = s.cfg.optim.batch_size
    return [group[0] for e in range(first, last) for group in outer_iterations(s.batches.indices(e), B, 1)]


def _check_finite(bad_step: int, epoch: int, epochs: int) -> None:
    if bad_step >= 0:
        raise NonFiniteLoss(
            f"the training loss became non-finite (NaN or inf) at step {bad_step}, in epoch {epoch + 1}/{epochs}; "
            "stopped before writing a checkpoint (the last finite one is kept). Lower optim.lr_per_256, "
            "or check the data and amp settings"
        )


def _end_of_epoch(s: Setup, epoch: int, step: int, sums: dict, n_diag: int, seconds: float) -> None:
    cfg = s.cfg
    n = len(s.batches)
    rec: dict[str, Any] = {
        "train/loss": float(sums.pop("train/loss")) / n,
        "train/lr": float(s.lrs[step - 1]),
        "time/epoch_s": seconds,  # the steps only: evaluation and the checkpoint are timed apart
        "time/pairs_per_s": n * cfg.optim.batch_size / seconds,
        "time/ckpt_s": s.ckpt_s,  # the checkpoint writes since the previous record (0: none)
    }
    s.ckpt_s = 0.0
    rec.update({k: v / max(n_diag, 1) for k, v in sums.items()})
    last = epoch + 1 == cfg.optim.epochs
    if (epoch + 1) % cfg.eval.eval_every == 0 or last:
        record = run_eval(s, epoch + 1, step, rec)
    else:
        record = {"epoch": epoch + 1, "step": step, **rec}
        s.run.log(record)
    _print_summary(s, record)
    due = cfg.ckpt_minutes > 0 and time.monotonic() - s.last_ckpt >= 60 * cfg.ckpt_minutes
    if (epoch + 1) % cfg.ckpt_every == 0 or last or due:
        t0 = time.perf_counter()
        s.run.save_state(epoch=epoch + 1, step=step, model=s.model, optimizer=s.opt, variant=s.variant)
        if s.variant.bank is not None:  # the checkpoint names the bank's prepared version: apply it now
            s.variant.bank.commit()
        s.ckpt_s += time.perf_counter() - t0
        s.last_ckpt = time.monotonic()


def _print_summary(s: Setup, record: dict[str, Any]) -> None:
    """One console line per epoch (and at init): loss, kNN when evaluated, z-std·√d, pairs/s, ETA."""
    if s.cfg.progress and distributed.is_main():
        tqdm.write(epoch_summary(record, s.cfg.optim.epochs, name=s.cfg.name))


def simsiam_step(model: SimSiam, opt: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor,
                 amp: contextlib.AbstractContextManager) -> torch.Tensor:
    """One SGD step on ½D(p1, sg(z2)) + ½D(p2, sg(z1)) from pre-made views (benchmarks)."""
    with amp:
        p1, p2, z1, z2 = model(x1, x2)
        loss = symmetric_simsiam(p1.float(), p2.float(), z1.float(), z2.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()
