"""Figures, one function each; every function reads only run directories and saves PNG + PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, stem: Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def su_phase_plot(run_dir: Path, stem: Path) -> list[Path]:
    """Su's scalar dynamics: trajectories in the (θ, φ) plane and θ(t), with and without stop-grad."""
    run_dir = Path(run_dir)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, label, color in [("stopgrad", "with stop-grad", "C0"), ("no_stopgrad", "without stop-grad", "C3")]:
        r = np.load(run_dir / f"{name}.npz")
        ax1.plot(r["theta"], r["phi"], color=color, label=label)
        ax1.plot(r["theta"][-1], r["phi"][-1], "o", color=color)
        ax2.plot(r["t"][1:], r["theta"][1:], color=color, label=label)
    ax1.plot(r["theta"][0], r["phi"][0], "ks", label="start (θ=0.1, φ=0.6)")
    ax1.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax1.set(xlabel="encoder θ", ylabel="predictor φ", title="phase plane of l = ½(φθ − θ)²")
    ax2.set(xlabel="time (gradient flow)", ylabel="encoder θ", title="θ(t): collapse means θ → 0")
    ax2.set_xscale("log")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, stem)
