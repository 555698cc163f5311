"""Semantic checks that types alone cannot express: ranges, names, ``method.k``'s forms, and the
predictor's own keys. The keys a variant ignores are refused by ``emsiam.variants.check_config``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .schema import Config, ConfigError, MethodConfig

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
