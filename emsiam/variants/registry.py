"""The variants by name, and the builder that gives a variant its bank."""

from __future__ import annotations

import hashlib
import json

import torch

from ..augment import AugmentSpec
from ..banks import make_bank, share_bank
from ..config import ADDED_KEYS, RESUME_FREE_KEYS, Config, flatten, k_epochs, to_dict
from ..models import SimSiam
from .base import Variant
from .ema import EMA
from .kstep import KStep
from .mean_input import MeanInput
from .momentum import Momentum
from .simsiam import SimSiamVariant

VARIANTS = {"simsiam": SimSiamVariant, "kstep": KStep, "ema": EMA, "momentum": Momentum, "mean_input": MeanInput}


def predictor_kind(cfg: Config) -> str:
    """``auto`` resolves to no predictor for ``ema`` (paper Sec. 5) and a learned one otherwise."""
    p = cfg.method.predictor
    return ("none" if cfg.method.variant == "ema" else "learned") if p == "auto" else p


def steps_per_outer(cfg: Config, steps_per_epoch: int) -> int:
    """Inner steps per outer iteration: k (at most one epoch), an epoch for ``k=epoch``, or
    E epochs for ``k=Eepochs`` (the only way an outer iteration spans epochs)."""
    if cfg.method.variant not in ("kstep", "mean_input"):
        return 1
    k = cfg.method.k
    if isinstance(k, str):
        return k_epochs(k) * steps_per_epoch
    return min(int(k), steps_per_epoch)


def config_fingerprint(cfg: Config) -> str:
    d = {k: v for k, v in flatten(to_dict(cfg)).items() if k not in RESUME_FREE_KEYS}
    d = {k: v for k, v in d.items() if not (k in ADDED_KEYS and v == ADDED_KEYS[k])}  # older banks still match
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def build_variant(cfg: Config, model: SimSiam, spec: AugmentSpec, memory_format, n_images: int,
                  device: torch.device) -> Variant:
    """The variant named by ``cfg.method.variant``, with its bank if it needs one."""
    cls = VARIANTS[cfg.method.variant]
    if not cls.uses_bank:
        return cls(cfg, model, spec, memory_format)
    m = cfg.method
    path = m.bank_path
    if m.bank != "device" and path is None:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        path = str(cfg.run_dir / ("bank.h5" if m.bank == "disk" else "bank.npy"))
    n_views = 1 if cls is EMA else 2
    rows = n_images
    if cls is not EMA and isinstance(m.k, str):  # k spanning E epochs: one target pair per image and epoch
        rows *= k_epochs(m.k)
    bank = share_bank(  # with several ranks: replicated (device) or owned by rank 0 (files)
        lambda: make_bank(m.bank, rows, n_views, cfg.model.dim, dtype=m.bank_dtype, device=device,
                          path=path, fingerprint=config_fingerprint(cfg), run_id=str(cfg.run_dir.resolve())),
        m.bank, n_views, cfg.model.dim, device,
    )
    return cls(cfg, model, spec, memory_format, bank, n_images)
