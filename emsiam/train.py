"""Standard SimSiam training (Chen & He 2021, Algorithm 1), one explicit loop.

Data order is a pure function of (seed, epoch) and augmentation seeds a pure
function of (seed, step, image index, view), so a run resumed from a checkpoint
reproduces the uninterrupted run exactly on CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data as data_mod
from .augment import RECIPES, AugmentSpec, augment, view_seeds
from .config import Config, DataConfig, OptimConfig
from .evaluate import evaluate
from .losses import symmetric_simsiam
from .models import SimSiam, build_model
from .runs import Run, set_rng_state


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return dev


def load_data(cfg: DataConfig, device: torch.device) -> tuple[data_mod.ImageSet, data_mod.ImageSet]:
    """Train and test sets as uint8 tensors on ``device``."""
    kw = dict(
        root=cfg.root,
        image_size=cfg.image_size,
        download=cfg.download,
        n_train=cfg.n_train,
        n_test=cfg.n_test,
        subset_seed=cfg.subset_seed,
        cache_dir=cfg.cache_dir,
    )
    train = data_mod.load_split(cfg.source, "train", **kw)
    test = data_mod.load_split(cfg.source, "test", **kw)
    return train.to(device), test.to(device)


def augment_spec(cfg: DataConfig) -> AugmentSpec:
    return RECIPES[cfg.recipe](resolution=cfg.resolution)


def lr_schedule(cfg: OptimConfig, steps_per_epoch: int) -> np.ndarray:
    """Per-step lr: linear warm-up, then cosine decay to 0; base lr = lr_per_256·B/256."""
    base = cfg.lr_per_256 * cfg.batch_size / 256
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    t = np.arange(total)
    cos = 0.5 * base * (1 + np.cos(math.pi * (t - warm) / max(total - warm, 1)))
    return np.where(t < warm, base * (t + 1) / max(warm, 1), cos)


def build_optimizer(model: SimSiam, cfg: OptimConfig) -> torch.optim.SGD:
    """SGD over two groups; the predictor's lr stays at the base lr when ``predictor_lr=fixed``."""
    base = cfg.lr_per_256 * cfg.batch_size / 256
    groups = [
        {"params": list(model.encoder.parameters()), "fixed_lr": False},
        {"params": list(model.predictor.parameters()), "fixed_lr": cfg.predictor_lr == "fixed"},
    ]
    return torch.optim.SGD(groups, lr=base, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_lr(opt: torch.optim.Optimizer, lr: float, base: float) -> None:
    for g in opt.param_groups:
        g["lr"] = base if g["fixed_lr"] else lr


@dataclass
class Setup:
    """Everything a training loop needs, built and validated from a config."""

    cfg: Config
    run: Run
    device: torch.device
    train: data_mod.ImageSet
    test: data_mod.ImageSet
    spec: AugmentSpec
    model: SimSiam
    opt: torch.optim.SGD
    batches: data_mod.Batches
    lrs: np.ndarray
    memory_format: torch.memory_format


def setup(cfg: Config) -> Setup:
    """Validate everything that can fail cheaply, then load data and build the model."""
    run = Run.open(cfg)  # refuses existing runs / mismatched resume before any compute
    data_mod.check_source(cfg.data.source, cfg.data.root, cfg.data.download)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    train, test = load_data(cfg.data, device)
    if len(train) < cfg.optim.batch_size:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size} exceeds the training set ({len(train)} images)")
    model = build_model(cfg.model).to(device)
    batches = data_mod.Batches(train, cfg.optim.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
    fmt = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    return Setup(
        cfg, run, device, train, test, augment_spec(cfg.data), model,
        build_optimizer(model, cfg.optim), batches, lr_schedule(cfg.optim, len(batches)), fmt,
    )


def autocast(cfg: Config, device: torch.device):
    if cfg.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def simsiam_step(model: SimSiam, opt: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor,
                 amp: contextlib.AbstractContextManager) -> torch.Tensor:
    """One SGD step on ½D(p1, sg(z2)) + ½D(p2, sg(z1)); returns the (detached) loss."""
    with amp:
        p1, p2, z1, z2 = model(x1, x2)
        loss = symmetric_simsiam(p1.float(), p2.float(), z1.float(), z2.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def run_eval(s: Setup, epoch: int, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    e = s.cfg.eval
    t0 = time.perf_counter()
    metrics = evaluate(
        s.model, s.train, s.test, s.spec, knn_k=e.knn_k, knn_t=e.knn_t, linear=e.linear,
        linear_epochs=e.linear_epochs, linear_lr=e.linear_lr, batch_size=e.batch_size, seed=s.cfg.seed,
    )
    record = {"epoch": epoch, "step": step, **(extra or {}), **metrics, "time/eval_s": time.perf_counter() - t0}
    s.run.log(record)
    return record


def train(cfg: Config) -> list[dict[str, Any]]:
    """Train SimSiam as configured; returns the run's metric records."""
    s = setup(cfg)
    s.run.initialise()
    model, opt, spec = s.model, s.opt, s.spec
    base_lr = cfg.optim.lr_per_256 * cfg.optim.batch_size / 256
    start_epoch, step = 0, 0
    if cfg.resume:
        ckpt = s.run.load(s.device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        s.run.truncate_metrics(step)
    else:
        _log_eval(s, run_eval(s, epoch=0, step=0))

    for epoch in range(start_epoch, cfg.optim.epochs):
        model.train()
        loss_sum = torch.zeros((), device=s.device)
        t0 = time.perf_counter()
        bar = tqdm(s.batches.epoch(epoch), total=len(s.batches), desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                   disable=not cfg.progress, leave=False, dynamic_ncols=True)
        for i, (idx, x, _) in enumerate(bar):
            set_lr(opt, float(s.lrs[step]), base_lr)
            x1 = augment(x, view_seeds(cfg.seed, step, idx, 0), spec).contiguous(memory_format=s.memory_format)
            x2 = augment(x, view_seeds(cfg.seed, step, idx, 1), spec).contiguous(memory_format=s.memory_format)
            loss = simsiam_step(model, opt, x1, x2, autocast(cfg, s.device))
            loss_sum += loss.detach()
            step += 1
            if (i + 1) % 10 == 0 or i + 1 == len(s.batches):  # .item() syncs: only every 10 steps
                rate = (i + 1) * cfg.optim.batch_size / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{s.lrs[step - 1]:.4f}", pairs_s=f"{rate:.0f}")
        epoch_s = time.perf_counter() - t0
        train_rec = {
            "train/loss": loss_sum.item() / len(s.batches),
            "train/lr": float(s.lrs[step - 1]),
            "time/epoch_s": epoch_s,
            "time/pairs_per_s": len(s.batches) * cfg.optim.batch_size / epoch_s,
        }
        last = epoch + 1 == cfg.optim.epochs
        if (epoch + 1) % cfg.eval.eval_every == 0 or last:
            _log_eval(s, run_eval(s, epoch + 1, step, train_rec))
        else:
            s.run.log({"epoch": epoch + 1, "step": step, **train_rec})
        if (epoch + 1) % cfg.ckpt_every == 0 or last:
            s.run.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1, "step": step})
    return s.run.metrics()


def _log_eval(s: Setup, rec: dict[str, Any]) -> None:
    if not s.cfg.progress:
        return
    keys = ["eval/knn_top1", "eval/linear_top1", "collapse/z_std_sqrt_d", "collapse/eff_rank", "train/loss"]
    parts = [f"{k.split('/')[-1]}={rec[k]:.3f}" for k in keys if k in rec]
    tqdm.write(f"[{s.cfg.name}] epoch {rec['epoch']} step {rec['step']}: " + " ".join(parts))
