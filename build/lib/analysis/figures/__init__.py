"""Figures, one function each: ``fn(runs_dir, stem)`` reads only run directories (through
:func:`common.load_runs`) and saves ``stem.png`` and ``stem.pdf``.

Modules: common (runs grouped by configuration, plot helpers), ksweep, curves, stopgrad
(also Su's scalar dynamics from .npz), ema, predictor (the predictor study).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .common import (AGE, GAP_ETA, GAP_F, GAP_H, INIT_WEIGHT, INV_SQRT_D, KNN, LINEAR, LOSS, STALENESS, ZSTD,
                     ZSTD_SQRT_D, Group, RunData, group_runs, load_runs)
from .curves import expectation_gap, learning_curves
from .ema import ema_vs_m
from .ksweep import accuracy_vs_k, k_steps, staleness_vs_k, steps_per_epoch
from .predictor import GAP_DELTA, P_SQRT_S, W_OFFDIAG, accuracy_vs_target_views, gap_by_predictor, predictor_spectra
from .stopgrad import stopgrad_panels, su_phase_plot

#: Every run-directory figure, by name (su_phase_plot reads .npz files instead).
FIGURES: dict[str, Callable[[Path, Path], list[Path]]] = {
    "accuracy_vs_k": accuracy_vs_k,
    "learning_curves": learning_curves,
    "stopgrad_panels": stopgrad_panels,
    "ema_vs_m": ema_vs_m,
    "expectation_gap": expectation_gap,
    "staleness_vs_k": staleness_vs_k,
}

#: The predictor study's figures (experiments/predictor_as_expectation.py renders them after its runs).
PREDICTOR_FIGURES: dict[str, Callable[[Path, Path], list[Path]]] = {
    "accuracy_vs_target_views": accuracy_vs_target_views,
    "predictor_spectra": predictor_spectra,
    "gap_by_predictor": gap_by_predictor,
}

__all__ = [
    "AGE", "FIGURES", "GAP_DELTA", "GAP_ETA", "GAP_F", "GAP_H", "INIT_WEIGHT", "INV_SQRT_D", "KNN", "LINEAR", "LOSS",
    "P_SQRT_S", "PREDICTOR_FIGURES", "STALENESS", "W_OFFDIAG", "ZSTD", "ZSTD_SQRT_D", "Group", "RunData",
    "accuracy_vs_k", "accuracy_vs_target_views", "ema_vs_m", "expectation_gap", "gap_by_predictor", "group_runs",
    "k_steps", "learning_curves", "load_runs", "predictor_spectra", "staleness_vs_k", "steps_per_epoch",
    "stopgrad_panels", "su_phase_plot",
]
