"""Stop-gradient on vs off: the paper's Fig. 2 panels from runs, and Su's scalar dynamics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .common import INV_SQRT_D, KNN, LOSS, ZSTD, groups_under, init_line, note, save_figure, scale_caption


def stopgrad_panels(runs_dir: Path, stem: Path) -> list[Path]:
    """Figure-2 style: training loss, std of l2-normalised z (with 1/√d) and kNN vs epoch, stop-grad on/off."""
    groups = [g for g in groups_under(runs_dir) if g.get("method.variant") == "simsiam"
              and g.get("method.predictor", "auto") in ("auto", "learned")]
    on = [g for g in groups if g.get("method.stopgrad", True) is not False]
    off = [g for g in groups if g.get("method.stopgrad", True) is False]
    if not off:
        raise ValueError(f"stopgrad_panels: no run with method.stopgrad=false under {runs_dir}")
    if not on:
        note("stopgrad_panels: no stop-grad (reference) run; plotting without it")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [(LOSS, "training loss (−cosine; min −1)"), (ZSTD, "std of l2-normalised z"), (KNN, "kNN top-1 (%)")]
    styles = [(g, "C0", "with stop-grad") for g in on] + [(g, "C3", "without stop-grad") for g in off]
    for i, (g, color, name) in enumerate(styles):
        ls = ["-", "--", ":", "-."][i % 4] if len(styles) > 2 else "-"
        for ax, (metric, _) in zip(axes, panels):
            e, m, s = g.curve(metric)
            if not len(e):
                continue
            ax.plot(e, m, marker="o", ms=3, ls=ls, color=color, label=f"{name} [{g.label}, n={g.n}]")
            if g.n > 1:
                ax.fill_between(e, m - s, m + s, color=color, alpha=0.15)
    inv = [r.final(INV_SQRT_D) for g in groups for r in g.runs]
    inv = [v for v in inv if v is not None] or [1 / math.sqrt(g.get("model.dim")) for g in groups if g.get("model.dim")]
    if inv:
        axes[1].axhline(inv[0], color="gray", ls=":", label=f"1/√d = {inv[0]:.3f}")
    axes[0].axhline(-1, color="gray", ls=":", lw=0.8, label="minimum −1")
    init_line(axes[2], groups)
    xmax = max(max((r.records[-1].get("epoch") or 0) for r in g.runs) for g in groups)
    handles: dict[str, Any] = {}
    for ax, (metric, ylabel) in zip(axes, panels):
        ax.set(xlabel="epoch", ylabel=ylabel, title=ylabel.split(" (")[0], xlim=(-0.1 * max(xmax, 1), xmax * 1.05 + 0.1))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.suptitle(f"Stop-gradient on vs off (paper Fig. 2 style): mean over seeds ({scale_caption(groups)})", fontsize=9)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 4))
    return save_figure(fig, stem)


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
    return save_figure(fig, stem)
