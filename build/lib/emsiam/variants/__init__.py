"""Solvers of L(θ, η) = E_{x,T} ‖F_θ(T(x)) − η_x‖², one file per family, picked by name
(``method.variant``) from :data:`VARIANTS`. The table of variants: docs/variants.md."""

from .base import Variant
from .ema import EMA
from .kstep import TARGET_VIEW0, KStep
from .mean_input import MeanInput
from .momentum import Momentum
from .registry import VARIANTS, build_variant, check_config, config_fingerprint, predictor_kind, steps_per_outer, variant_class
from .simsiam import SimSiamVariant

__all__ = ["Variant", "SimSiamVariant", "KStep", "MeanInput", "EMA", "Momentum", "TARGET_VIEW0", "VARIANTS",
           "build_variant", "check_config", "config_fingerprint", "predictor_kind", "steps_per_outer", "variant_class"]
