"""Building a run from its config: data, augmentation, model, variant, optimizer, schedule.

The training loop itself is :func:`emsiam.alternation.fit`. Data order is a pure
function of (seed, epoch) and augmentation seeds a pure function of (seed, step,
image index, view), so a run resumed from a checkpoint reproduces the
uninterrupted run exactly on CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import data as data_mod
from . import distributed
from .augment import RECIPES, AugmentSpec
from .config import Config, ConfigError, DataConfig, OptimConfig
from .evaluate import evaluate, expectation_gap
from .losses import symmetric_simsiam
from .models import SimSiam, build_model
from .predictors import save_spectra, spectral_alignment
from .runs import Run, release_lock
from .targets import autocast
from .variants import Variant, build_variant, check_config, predictor_kind


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return dev


def load_data(cfg: DataConfig, device: torch.device) -> tuple[data_mod.ImageSet, data_mod.ImageSet]:
    """Train and test sets as uint8 tensors on ``device`` (``data.store=memmap``: memory-mapped from disk)."""
    kw = dict(
        root=cfg.root,
        image_size=cfg.image_size,
        download=cfg.download,
        n_train=cfg.n_train,
        n_test=cfg.n_test,
        subset_seed=cfg.subset_seed,
        cache_dir=cfg.cache_dir,
    )
    if cfg.store == "memmap":  # written once to a store on disk, then gathered by index from there
        from .datastore import load_split_store

        return tuple(load_split_store(cfg, split, kw, device) for split in ("train", "test"))  # type: ignore[return-value]
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
    trainable = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    groups = [{"params": trainable(model.encoder), "fixed_lr": False}]
    if trainable(model.predictor):  # none / fixed_random predictors have nothing to train
        groups.append({"params": trainable(model.predictor), "fixed_lr": cfg.predictor_lr == "fixed"})
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
    variant: Variant
    opt: torch.optim.SGD
    batches: data_mod.Batches
    lrs: np.ndarray
    memory_format: torch.memory_format
    last_ckpt: float = field(default_factory=time.monotonic)  # when the last checkpoint was written (ckpt_minutes)
    ckpt_s: float = 0.0  # seconds of the checkpoint writes not yet reported (time/ckpt_s)

    @property
    def base_lr(self) -> float:
        return self.cfg.optim.lr_per_256 * self.cfg.optim.batch_size / 256


def setup(cfg: Config) -> Setup:
    """Validate everything that can fail cheaply, then load data and build the model."""
    check_config(cfg)  # keys the variant would ignore, before the run directory is touched
    world = distributed.env_world_size()
    if cfg.optim.batch_size % world:
        raise ConfigError(
            f"optim.batch_size={cfg.optim.batch_size} (the global batch) does not split evenly over "
            f"{world} processes; use a multiple of {world}"
        )
    run = Run.open(cfg)  # refuses existing runs / mismatched resume before any compute
    data_mod.check_source(cfg.data.source, cfg.data.root, cfg.data.download)
    device = distributed.init(resolve_device(cfg.device))  # joins the process group when WORLD_SIZE > 1
    if device.type == "cuda":  # process-wide switches; CPU numerics are untouched
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
        torch.set_float32_matmul_precision("high" if cfg.tf32 else "highest")
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    torch.manual_seed(cfg.seed)
    train, test = distributed.main_first(lambda: load_data(cfg.data, device))  # rank 0 decodes and caches first
    if len(train) < cfg.optim.batch_size:
        raise data_mod.DataError(f"optim.batch_size={cfg.optim.batch_size} exceeds the training set "
                                 f"({len(train)} images); lower optim.batch_size or use more data")
    m = cfg.method
    model = build_model(cfg.model, predictor_kind(cfg), rho=m.directpred_rho, eps=m.directpred_eps,
                        freq=m.directpred_freq).to(device)
    model = distributed.sync_batchnorm(model, device)  # BN over the global batch (no-op in one process)
    distributed.broadcast_parameters(model)
    fmt = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    # The training forward model(x1, x2): through DDP on CUDA with several ranks, and compiled with
    # compile=true (in place: parameter names, checkpoints and the variants' references are unchanged).
    # E-steps, probes and evaluation call model.encoder directly and stay eager: no recompiles for
    # no-grad or eval mode; the first training steps pay the compilation.
    distributed.training_forward(model, device, compile=cfg.compile, ddp=None if cfg.method.pairs == 1 else False)
    spec = augment_spec(cfg.data)
    variant = build_variant(cfg, model, spec, fmt, len(train), device)
    batches = data_mod.Batches(train, cfg.optim.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
    return Setup(
        cfg, run, device, train, test, spec, model, variant,
        build_optimizer(model, cfg.optim), batches, lr_schedule(cfg.optim, len(batches)), fmt,
    )


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


def run_eval(s: Setup, epoch: int, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
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


def train(cfg: Config) -> list[dict[str, Any]]:
    """Train as configured (any variant); returns the run's metric records."""
    from .alternation import fit

    s = None
    try:
        s = setup(cfg)
        return fit(s)
    finally:
        bank = getattr(s.variant, "bank", None) if s is not None else None
        if bank is not None:
            bank.close()  # releases the bank file's lock now, not at garbage collection
        release_lock(cfg.run_dir)  # taken by Run.open; a no-op where another process holds it
        distributed.cleanup()
