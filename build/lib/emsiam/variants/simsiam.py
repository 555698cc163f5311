"""SimSiam (Alg. 1): η = sg(z) of the other view, from the same forward pass."""

from __future__ import annotations

from .base import Variant


class SimSiamVariant(Variant):
    """Standard SimSiam: η = sg(F_θ(other view)) from the same forward (Alg. 1).
    Also the ablations ``stopgrad=false``, ``predictor=none|fixed_random``, ``symmetric=false``."""

    config_keys = ("stopgrad", "pairs")
