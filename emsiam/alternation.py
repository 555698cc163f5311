"""The alternation engine: outer loop (E-step, η) and inner loop (M-step, θ).

Solves L(θ, η) = E_{x,T} ‖F_θ(T(x)) − η_x‖² by alternation (Chen & He 2021,
Sec. 5; design/alternation.md):

    for each outer iteration t (k batches of the epoch's permutation):
        E-step: η ← targets of those images under θ_t (no_grad, cached in a bank)
        M-step: k SGD steps on θ against the cached η

``simsiam``, ``ema`` and ``momentum`` have k = 1 and compute η inside the step;
``kstep`` and ``mean_input`` cache η for k steps. An outer iteration never
crosses an epoch boundary: the last one of an epoch is truncated to the
batches that remain.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from tqdm.auto import tqdm

from . import distributed
from .runs import RunError, set_rng_state
from .progress import epoch_summary, progress_bar
from .train import Setup, autocast, run_eval, set_lr
from .variants import steps_per_outer


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


def fit(s: Setup) -> list[dict[str, Any]]:
    cfg, model, variant = s.cfg, s.model, s.variant
    k = steps_per_outer(cfg, len(s.batches))  # more than an epoch only for k = "Eepochs"
    k_in_epoch = min(k, len(s.batches))
    s.run.initialise()
    start_epoch, step = _restore(s) if cfg.resume else (0, 0)
    if not cfg.resume:
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
                loss = m_step(s, idx, x, step)
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
        s.run.save({
            "model": s.model.state_dict(), "optimizer": s.opt.state_dict(), "variant": s.variant.state_dict(),
            "epoch": epoch + 1, "step": step,
        })
        bank = getattr(s.variant, "bank", None)
        if bank is not None:  # the checkpoint names the bank's prepared version: apply it now
            bank.commit()
        s.ckpt_s += time.perf_counter() - t0
        s.last_ckpt = time.monotonic()


def _print_summary(s: Setup, record: dict[str, Any]) -> None:
    """One console line per epoch (and at init): loss, kNN when evaluated, z-std·√d, pairs/s, ETA."""
    if s.cfg.progress and distributed.is_main():
        tqdm.write(epoch_summary(record, s.cfg.optim.epochs, name=s.cfg.name))


def _restore(s: Setup) -> tuple[int, int]:
    ckpt = s.run.load(s.device)
    s.model.load_state_dict(ckpt["model"])
    s.opt.load_state_dict(ckpt["optimizer"])
    s.variant.load_state_dict(ckpt["variant"])
    set_rng_state(ckpt["rng"])
    s.run.truncate_metrics(ckpt["step"])
    return ckpt["epoch"], ckpt["step"]
