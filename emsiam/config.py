"""Typed, validated run configuration.

A config is a tree of dataclasses. It is built from a preset or YAML file
plus ``key=value`` overrides with dotted keys (``optim.epochs=5``). Unknown
keys and values of the wrong type are rejected before any compute, with the
closest valid keys suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


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


# --------------------------------------------------------------------------
# dict <-> dataclass, with type checking


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` coerced to ``tp`` or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        # YAML 1.1 reads 1e-3 (no dot) as a string: accept whatever Python's float() parses.
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected a number (e.g. 0.05, 1e-3), got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number (e.g. 0.05, 1e-3), got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "")


def _unknown(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.split(".")[-1], valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{key}'.{hint} Valid keys here: {', '.join(valid)}")


def from_dict(cls: type, d: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and bad types."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {d!r}")
    fields = _fields(cls)
    kwargs = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if k not in fields:
            raise _unknown(key, list(fields))
        tp = fields[k]
        kwargs[k] = from_dict(tp, v, key + ".") if _is_dataclass_type(tp) else _check_value(v, tp, key)
    cfg = cls(**kwargs)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"'{key}': '{p}' is not a section")
    cur[parts[-1]] = value


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(path_or_preset: str) -> dict[str, Any]:
    """Read a YAML config file, or a named preset (``cpu``, ``gpu-cifar``, ...)."""
    path = Path(path_or_preset)
    if not path.exists() and (PRESET_DIR / f"{path_or_preset}.yaml").exists():
        path = PRESET_DIR / f"{path_or_preset}.yaml"
    if not path.exists():
        raise ConfigError(
            f"config file '{path_or_preset}' not found; pass a YAML path or one of the presets: {', '.join(presets())}"
        )
    if path.is_dir():
        raise ConfigError(f"--config {path} is a directory; pass a YAML file or one of the presets: {', '.join(presets())}")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML ({where}{problem}); fix the file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return d


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.epochs=5", "data.root=/x"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{item}': cannot parse value ({e})") from None
        _set_dotted(out, key.strip(), value)
    return out


def load_config(config: str | None = None, overrides: list[str] | None = None) -> Config:
    """Preset/YAML file, then overrides, then validation; returns a :class:`Config`."""
    d = read_yaml(config) if config else {}
    d = _merge(d, parse_overrides(overrides or []))
    cfg = from_dict(Config, d)
    validate(cfg)
    return cfg


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def _plain_name(name: str) -> bool:
    """True for a single path component that stays inside out_dir."""
    bad = ("/", "\\", "\0", os.sep) + ((os.altsep,) if os.altsep else ())
    return bool(name) and name not in (".", "..") and not any(c in name for c in bad) and not Path(name).is_absolute()


def k_epochs(k: str) -> int:
    """``"epoch"`` -> 1, ``"5epochs"`` -> 5: the epochs one outer iteration spans."""
    if k == "epoch":
        return 1
    m = re.fullmatch(r"(\d+)epochs?", k)
    if not m or int(m.group(1)) < 1:
        raise ConfigError(f"method.k: expected an integer, 'epoch' or 'Eepochs' (e.g. 2epochs), got {k!r}")
    return int(m.group(1))


def _valid_k(k: int | str) -> bool:
    if isinstance(k, int):
        return k >= 1
    try:
        return k_epochs(k) >= 1
    except ConfigError:
        return False


def validate(cfg: Config) -> None:
    """Semantic checks that types alone cannot express."""
    o, m, e, dc = cfg.optim, cfg.model, cfg.eval, cfg.data
    checks = [
        (o.epochs >= 1, "optim.epochs must be >= 1"),
        (o.batch_size >= 2, "optim.batch_size must be >= 2 (BatchNorm needs a batch)"),
        (o.lr_per_256 > 0, "optim.lr_per_256 must be > 0"),
        (0 <= o.warmup_epochs < o.epochs, "optim.warmup_epochs must be in [0, optim.epochs)"),
        (m.proj_layers in (2, 3), "model.proj_layers must be 2 or 3"),
        (m.dim >= 4, "model.dim must be >= 4"),
        (len(m.convnet_widths) >= 1, "model.convnet_widths must not be empty"),
        (e.eval_every >= 1, "eval.eval_every must be >= 1"),
        (e.knn_k >= 1 and e.knn_t > 0, "eval.knn_k must be >= 1 and eval.knn_t > 0"),
        (dc.resolution >= 8, "data.resolution must be >= 8"),
        (cfg.ckpt_every >= 1, "ckpt_every must be >= 1"),
        (cfg.ckpt_minutes >= 0, "ckpt_minutes must be >= 0"),
        (_valid_k(cfg.method.k), f"method.k must be an integer >= 1, 'epoch', or 'Eepochs' (e.g. 2epochs); "
                                 f"got {cfg.method.k!r}"),
        (0.0 <= cfg.method.ema_m < 1.0, "method.ema_m must be in [0, 1)"),
        (0.0 <= cfg.method.momentum_tau < 1.0, "method.momentum_tau must be in [0, 1)"),
        (cfg.method.mean_input_views >= 1, "method.mean_input_views must be >= 1"),
        (cfg.method.diag_every >= 1, "method.diag_every must be >= 1"),
        (cfg.method.pairs >= 1, "method.pairs must be >= 1"),
        (cfg.method.bank_dtype != "bf16" or cfg.method.bank == "device", "method.bank_dtype=bf16 needs method.bank=device"),
        (0.0 <= o.momentum < 1.0, "optim.momentum must be in [0, 1)"),
        (o.weight_decay >= 0, "optim.weight_decay must be >= 0"),
        (_plain_name(cfg.name), f"name={cfg.name!r} must be a plain directory name inside out_dir "
                                "(not empty, '.', '..', an absolute path or one containing '/')"),
        (_DEVICE.fullmatch(cfg.device) is not None,
         f"device={cfg.device!r} is not supported; use auto, cpu, cuda, cuda:N or mps"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    _refuse_ignored_keys(cfg.method)


#: Method keys that only some predictors / variants read.
_CLOSED_FORM_KEYS = ("directpred_rho", "directpred_eps", "directpred_freq")


def _refuse_ignored_keys(m: MethodConfig) -> None:
    """Refuse keys the chosen predictor would silently ignore, and their ranges (the keys a
    variant ignores: emsiam.variants.check_config)."""
    defaults = MethodConfig()
    closed_form = m.predictor in ("directpred", "directcopy")
    for key in _CLOSED_FORM_KEYS:
        if not closed_form and getattr(m, key) != getattr(defaults, key):
            raise ConfigError(f"method.{key} applies to method.predictor=directpred|directcopy only, "
                              f"not method.predictor={m.predictor}")
    checks = [
        (0.0 <= m.directpred_rho < 1.0, "method.directpred_rho must be in [0, 1)"),
        (m.directpred_eps >= 0.0, "method.directpred_eps must be >= 0"),
        (m.directpred_freq >= 1, "method.directpred_freq must be >= 1"),
        (m.target_views >= 1, "method.target_views must be >= 1"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def diff(a: dict[str, Any], b: dict[str, Any], ignore: set[str] = RESUME_FREE_KEYS) -> list[str]:
    """Lines ``key: old -> new`` for every flattened key that differs."""
    fa, fb = flatten(a), flatten(b)
    for k, before in ADDED_KEYS.items():  # a config saved before the key existed ran with this value
        for f, other in ((fa, fb), (fb, fa)):
            if k not in f and other.get(k) == before:
                f[k] = before
    keys = sorted(set(fa) | set(fb))
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in keys if k not in ignore and fa.get(k) != fb.get(k)]
