"""The variants by name; what a config's method section means for the chosen one.

Adding a variant: its file, and one line in :data:`VARIANTS` (README, "Adding a variant").
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json

import torch

from ..augment import AugmentSpec
from ..banks import make_bank, share_bank
from ..config import ADDED_KEYS, RESUME_FREE_KEYS, Config, ConfigError, MethodConfig, flatten, k_epochs, to_dict
from ..models import SimSiam
from .base import COMMON_KEYS, Variant
from .ema import EMA
from .kstep import KStep
from .mean_input import MeanInput
from .momentum import Momentum
from .simsiam import SimSiamVariant

VARIANTS: dict[str, type[Variant]] = {
    "simsiam": SimSiamVariant,
    "kstep": KStep,
    "ema": EMA,
    "momentum": Momentum,
    "mean_input": MeanInput,
}


def variant_class(cfg: Config) -> type[Variant]:
    """The class of ``method.variant``; an unknown name is a ConfigError naming the closest ones."""
    name = cfg.method.variant
    if name not in VARIANTS:
        close = difflib.get_close_matches(name, list(VARIANTS), n=2, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"method.variant={name!r} is not a variant.{hint} Choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def _show(value) -> str:
    """A value as an override would spell it (``true``, ``10``, ``epoch``, ``null``)."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def check_config(cfg: Config) -> None:
    """Refuse an unknown variant, and every ``method.*`` key that the chosen variant does not read
    when it differs from its default (MethodConfig's): ``method.variant=simsiam method.k=10``
    would otherwise be saved as k = 10 and run with k = 1. Call it before any compute.

    With ``resume=true`` only the name is checked: a resumed run keeps the config it was started
    with (Run.open refuses any other), and runs started before this check must still resume."""
    cls = variant_class(cfg)
    if cfg.resume:
        return
    reads = {*COMMON_KEYS, *cls.config_keys}
    defaults = MethodConfig()
    for f in dataclasses.fields(MethodConfig):
        value, default = getattr(cfg.method, f.name), getattr(defaults, f.name)
        if f.name in reads or value == default:
            continue
        readers = " or ".join(n for n, c in VARIANTS.items() if f.name in c.config_keys)
        raise ConfigError(
            f"method.{f.name}={_show(value)} is not read by method.variant={cfg.method.variant} "
            f"(it {cls.about}; use method.variant={readers}, or leave method.{f.name} at {_show(default)})"
        )


def predictor_kind(cfg: Config) -> str:
    """The predictor to build: ``method.predictor``, or the variant's default for ``auto``."""
    p = cfg.method.predictor
    return variant_class(cfg).default_predictor if p == "auto" else p


def steps_per_outer(cfg: Config, steps_per_epoch: int) -> int:
    """Inner steps per outer iteration: 1 for a variant without k; else k (at most one epoch), an
    epoch for ``k=epoch``, or E epochs for ``k=Eepochs`` (the only way an outer iteration spans epochs)."""
    if not variant_class(cfg).uses_k:
        return 1
    k = cfg.method.k
    if isinstance(k, str):
        return k_epochs(k) * steps_per_epoch
    return min(int(k), steps_per_epoch)


def config_fingerprint(cfg: Config) -> str:
    """The training keys' hash that a bank file records (an older bank still matches)."""
    d = {k: v for k, v in flatten(to_dict(cfg)).items() if k not in RESUME_FREE_KEYS}
    d = {k: v for k, v in d.items() if not (k in ADDED_KEYS and v == ADDED_KEYS[k])}  # older banks still match
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def build_variant(cfg: Config, model: SimSiam, spec: AugmentSpec, memory_format, n_images: int,
                  device: torch.device) -> Variant:
    """The variant named by ``cfg.method.variant``, with its bank if it keeps one."""
    cls = variant_class(cfg)
    if cls.bank_views == 0:
        return cls(cfg, model, spec, memory_format)
    m = cfg.method
    path = m.bank_path
    if m.bank != "device" and path is None:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        path = str(cfg.run_dir / ("bank.h5" if m.bank == "disk" else "bank.npy"))
    rows = n_images
    if cls.uses_k and isinstance(m.k, str):  # k spanning E epochs: one target set per image and epoch
        rows *= k_epochs(m.k)
    bank = share_bank(  # with several ranks: replicated (device) or owned by rank 0 (files)
        lambda: make_bank(m.bank, rows, cls.bank_views, cfg.model.dim, dtype=m.bank_dtype, device=device,
                          path=path, fingerprint=config_fingerprint(cfg), run_id=str(cfg.run_dir.resolve())),
        m.bank, cls.bank_views, cfg.model.dim, device,
    )
    return cls(cfg, model, spec, memory_format, bank, n_images)
