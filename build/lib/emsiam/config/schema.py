"""The config's schema: one dataclass per section, each default on one line with its meaning.

Also the config's errors and the two key sets that resume and bank fingerprints rely on
(keys free to change on resume; keys added after runs existed, with their old behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A config key, value or file is invalid."""

    exit_code = 2


class DeviceError(ConfigError):
    """The configured device does not exist on this machine (e.g. ``device=cuda`` without CUDA)."""

    exit_code = 8


@dataclass
class DataConfig:
    source: Literal["synthetic", "cifar10", "cifar100", "stl10", "imagefolder", "npz"] = "synthetic"
    root: str | None = None  # folder/archive/npz prefix; unused by `synthetic`
    download: bool = False  # torchvision sources only; needs internet
    image_size: int | None = None  # stored side length (imagefolder resizes to it)
    resolution: int = 32  # side length of the augmented views
    recipe: Literal["cifar", "imagenet"] = "cifar"  # augmentation recipe (emsiam.augment)
    n_train: int | None = None  # random subset of the training set (None: all)
    n_test: int | None = None  # random subset of the test set (None: all)
    subset_seed: int = 0  # seed of those subsets
    cache_dir: str | None = None  # imagefolder cache (default $EMSIAM_CACHE or ~/.cache/emsiam)
    store: Literal["memory", "memmap"] = "memory"  # memmap: train from a uint8 store on disk (emsiam.data.store)
    store_dir: str | None = None  # where memmap stores are written (default: the cache dir above)


@dataclass
class ModelConfig:
    backbone: Literal["convnet", "resnet18_cifar", "resnet18", "resnet50"] = "convnet"
    convnet_widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    proj_layers: int = 2  # 2 (CIFAR recipe) or 3 (ImageNet recipe)
    proj_hidden: int = 512  # hidden width of the projector
    dim: int = 512  # d: projector output / predictor output
    pred_hidden: int | None = None  # predictor bottleneck (None: d/4)
    channels_last: bool = True  # memory format for conv layers
    head_bn: bool = True  # BN in the projector/predictor hidden layers and on the projector output (Table 3)


@dataclass
class OptimConfig:
    epochs: int = 10
    batch_size: int = 256
    lr_per_256: float = 0.05  # lr = lr_per_256 * batch_size / 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0  # linear warm-up before the cosine decay
    predictor_lr: Literal["fixed", "cosine"] = "fixed"  # paper default: fixed


@dataclass
class MethodConfig:
    """Which solver of L(θ, η) = E‖F_θ(T(x)) − η_x‖² to run (design/alternation.md)."""

    variant: str = "simsiam"  # a name in emsiam.variants.VARIANTS; keys it does not read are refused (check_config)
    k: int | str = 1  # kstep: inner SGD steps per outer iteration (<= an epoch), "epoch", or "Eepochs" (E epochs)
    views: Literal["replay", "fresh"] = "replay"  # kstep: M-step views = E-step views, or new ones
    e_step_bn: Literal["train", "eval"] = "train"  # BN mode of target computation (running stats untouched)
    predictor: Literal["auto", "learned", "none", "fixed_random", "directpred", "directcopy"] = "auto"  # auto: none for ema, else learned
    stopgrad: bool = True  # simsiam only: False back-propagates through the target branch
    symmetric: bool = True  # both loss terms (False: ½ weight dropped, only D(p1, η2))
    pairs: int = 1  # simsiam: independent view pairs per image per step, losses averaged (Table 5 "2x": 2, asymmetric)
    loss: Literal["cosine", "mse"] = "cosine"  # D, or the literal ‖F/‖F‖ − η/‖η‖‖² (= 2 + 2D)
    ema_m: float = 0.8  # ema: η ← m·η + (1−m)·F_θ(T'(x))
    ema_view: Literal["mean", "other", "extra"] = "mean"  # ema: u = mean of the two views, the second view, or a third view
    momentum_tau: float = 0.99  # momentum: ξ ← τ·ξ + (1−τ)·θ
    mean_input_views: int = 8  # mean_input: M views averaged in pixel space
    bank: Literal["device", "disk", "memmap"] = "device"  # where cached targets live
    bank_dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    bank_path: str | None = None  # file banks (default: <run>/bank.h5 or bank.npy)
    diag_every: int = 47  # steps between staleness probes (prime: probes do not alias with k = 10, 100)
    probe_images: int = 256  # predictor-expectation probe: P images ...
    probe_views: int = 8  # ... times M views
    directpred_rho: float = 0.3  # directpred/directcopy: F̂ ← ρ·F̂ + (1−ρ)·mean(f fᵀ)
    directpred_eps: float = 0.1  # directpred: p_j = √(s_j/s_max) + ε; directcopy: W_p = F̂/s_max + ε·I
    directpred_freq: int = 1  # directpred/directcopy: W_p set from F̂ every freq steps (SGD in between)
    target_views: int = 1  # kstep: η_x = mean of F over M target views, disjoint from the M-step's (1: today's η)


@dataclass
class EvalConfig:
    eval_every: int = 1  # epochs between evaluations (also run at init and at the end)
    knn_k: int = 200
    knn_t: float = 0.1
    linear: bool = True  # linear probe on frozen backbone features
    linear_epochs: int = 30
    linear_lr: float = 0.1
    batch_size: int = 256  # feature extraction batch (256 is 1.2x faster than 1024 per image on 1 CPU thread)


@dataclass
class LogConfig:
    """Extra metric sinks beside metrics.jsonl (emsiam.loggers); optional packages."""

    tensorboard: bool = False  # TensorBoard event files in <run>/tensorboard (pip install 'emsiam[tensorboard]')
    wandb: bool = False  # Weights & Biases, project wandb_project (pip install 'emsiam[wandb]')
    wandb_project: str = "emsiam"


def default_run_name() -> str:
    """A timestamp (``20261129-104806``); refused under torchrun, where each process would pick its own."""
    import os
    import time

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("name=... is required with several processes (torchrun): each would pick its own timestamp")
    return time.strftime("%Y%m%d-%H%M%S")


@dataclass
class Config:
    name: str = field(default_factory=default_run_name)  # run directory under out_dir (default: a timestamp)
    out_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["none", "bf16"] = "none"  # autocast dtype for the training step
    compile: bool = False  # torch.compile the encoder and predictor (nn.Module.compile: state_dict keys unchanged)
    ckpt_every: int = 1  # epochs between checkpoints (the last epoch is always saved)
    ckpt_minutes: float = 0.0  # also checkpoint at an epoch's end once this many minutes passed since the last (0: off)
    tf32: bool = False  # CUDA: TF32 matmuls (set_float32_matmul_precision('high')) and cuDNN convolutions
    cudnn_benchmark: bool = False  # CUDA: cudnn.benchmark (autotuned convolutions for fixed shapes)
    resume: bool = False  # continue from <run>/checkpoints/last.pt
    progress: bool = True  # tqdm progress bars
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# Keys that may differ between an interrupted run and its resumption.
RESUME_FREE_KEYS = {"resume", "progress", "device", "out_dir", "log.tensorboard", "log.wandb", "log.wandb_project"}

# Keys added after runs existed, with the value that behaves as the code did before them: a saved
# config without such a key equals one with this value (resume, bank fingerprints).
ADDED_KEYS: dict[str, Any] = {
    "method.directpred_rho": 0.3, "method.directpred_eps": 0.1, "method.directpred_freq": 1,
    "method.target_views": 1, "ckpt_minutes": 0.0, "tf32": False, "cudnn_benchmark": False,
    "data.store": "memory", "data.store_dir": None, "compile": False, "method.pairs": 1,
}
