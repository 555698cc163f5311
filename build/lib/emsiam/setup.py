"""Building a run from its config, in data-flow order: device, data, model, variant (with its
bank), optimizer and lr schedule. The loop that trains it is :func:`emsiam.alternation.fit`.

Data order is a pure function of (seed, epoch) and augmentation seeds a pure function of
(seed, step, image index, view), so a resumed run reproduces the uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import distributed
from .augment import RECIPES, AugmentSpec
from .config import Config, ConfigError, DataConfig, OptimConfig
from .data import Batches, DataError, ImageSet, check_source, load_split, load_split_store
from .models import SimSiam, build_model
from .runs import Run
from .variants import Variant, build_variant, check_config, predictor_kind


@dataclass
class Setup:
    """Everything a training loop needs, built and validated from a config."""

    cfg: Config
    run: Run
    device: torch.device
    train: ImageSet
    test: ImageSet
    spec: AugmentSpec
    model: SimSiam
    variant: Variant
    opt: torch.optim.SGD
    batches: Batches
    lrs: np.ndarray
    memory_format: torch.memory_format
    last_ckpt: float = field(default_factory=time.monotonic)  # when the last checkpoint was written (ckpt_minutes)
    ckpt_s: float = 0.0  # seconds of the checkpoint writes not yet reported (time/ckpt_s)

    @property
    def base_lr(self) -> float:
        return base_lr(self.cfg.optim)


def setup(cfg: Config) -> Setup:
    """Validate everything that can fail cheaply, then load data and build the model."""
    # checks: keys the variant would ignore, the global batch over the processes, the run directory
    check_config(cfg)
    world = distributed.env_world_size()
    if cfg.optim.batch_size % world:
        raise ConfigError(
            f"optim.batch_size={cfg.optim.batch_size} (the global batch) does not split evenly over "
            f"{world} processes; use a multiple of {world}"
        )
    run = Run.open(cfg)  # refuses existing runs / mismatched resume before any compute
    check_source(cfg.data.source, cfg.data.root, cfg.data.download)

    # device
    device = distributed.init(resolve_device(cfg.device))  # joins the process group when WORLD_SIZE > 1
    if device.type == "cuda":  # process-wide switches; CPU numerics are untouched
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
        torch.set_float32_matmul_precision("high" if cfg.tf32 else "highest")
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    torch.manual_seed(cfg.seed)

    # data
    train, test = distributed.main_first(lambda: load_data(cfg.data, device))  # rank 0 decodes and caches first
    if len(train) < cfg.optim.batch_size:
        raise DataError(f"optim.batch_size={cfg.optim.batch_size} exceeds the training set "
                        f"({len(train)} images); lower optim.batch_size or use more data")

    # model
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

    # variant (and its bank), optimizer, schedule
    spec = augment_spec(cfg.data)
    variant = build_variant(cfg, model, spec, fmt, len(train), device)
    batches = Batches(train, cfg.optim.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
    return Setup(
        cfg, run, device, train, test, spec, model, variant,
        build_optimizer(model, cfg.optim), batches, lr_schedule(cfg.optim, len(batches)), fmt,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return dev


def load_data(cfg: DataConfig, device: torch.device) -> tuple[ImageSet, ImageSet]:
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
        return tuple(load_split_store(cfg, split, kw, device) for split in ("train", "test"))  # type: ignore[return-value]
    train = load_split(cfg.source, "train", **kw)
    test = load_split(cfg.source, "test", **kw)
    return train.to(device), test.to(device)


def augment_spec(cfg: DataConfig) -> AugmentSpec:
    return RECIPES[cfg.recipe](resolution=cfg.resolution)


def base_lr(cfg: OptimConfig) -> float:
    """The lr of batch size B: lr_per_256·B/256 (the linear scaling rule)."""
    return cfg.lr_per_256 * cfg.batch_size / 256


def lr_schedule(cfg: OptimConfig, steps_per_epoch: int) -> np.ndarray:
    """Per-step lr: linear warm-up, then cosine decay to 0, from :func:`base_lr`."""
    base = base_lr(cfg)
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    t = np.arange(total)
    cos = 0.5 * base * (1 + np.cos(math.pi * (t - warm) / max(total - warm, 1)))
    return np.where(t < warm, base * (t + 1) / max(warm, 1), cos)


def build_optimizer(model: SimSiam, cfg: OptimConfig) -> torch.optim.SGD:
    """SGD over two groups; the predictor's lr stays at the base lr when ``predictor_lr=fixed``."""
    trainable = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    groups = [{"params": trainable(model.encoder), "fixed_lr": False}]
    if trainable(model.predictor):  # none / fixed_random predictors have nothing to train
        groups.append({"params": trainable(model.predictor), "fixed_lr": cfg.predictor_lr == "fixed"})
    return torch.optim.SGD(groups, lr=base_lr(cfg), momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_lr(opt: torch.optim.Optimizer, lr: float, base: float) -> None:
    for g in opt.param_groups:
        g["lr"] = base if g["fixed_lr"] else lr
