"""Curves over training: kNN top-1 per configuration, and the expectation gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .common import GAP_ETA, GAP_F, GAP_H, KNN, groups_under, save_figure, scale_caption


def learning_curves(runs_dir: Path, stem: Path) -> list[Path]:
    """kNN top-1 against epoch, one line per configuration (mean over seeds, band = ± sample std)."""
    groups = [g for g in groups_under(runs_dir) if g.stat(lambda r: r.final(KNN))[2]]
    if not groups:
        raise ValueError(f"learning_curves: no kNN evaluations under {runs_dir}")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    markers = "osD^v<>ph*"
    for i, g in enumerate(groups):
        e, m, s = g.curve(KNN)
        color = f"C{i % 10}"
        ax.plot(e, m, marker=markers[i % len(markers)], ms=4, color=color, label=f"{g.label} (n={g.n})")
        if g.n > 1:
            ax.fill_between(e, m - s, m + s, color=color, alpha=0.15)
    ax.set(xlabel="epoch", ylabel="kNN top-1 (%)",
           title=f"kNN top-1 vs epoch, mean ± sample std over seeds ({scale_caption(groups)})")
    ax.title.set_fontsize(9)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save_figure(fig, stem)


def expectation_gap(runs_dir: Path, stem: Path) -> list[Path]:
    """cos(h(F),Ē), cos(F,Ē) and (ema) cos(η,Ē) over training, one line per configuration."""
    groups = groups_under(runs_dir)
    panels = [(GAP_H, "cos(h(F), Ē)  predictor output vs expectation"),
              (GAP_F, "cos(F, Ē)  one view vs expectation"),
              (GAP_ETA, "cos(η, Ē)  moving-average target vs expectation")]
    panels = [p for p in panels if any(g.curve(p[0])[0].size for g in groups)]
    if not panels:
        raise ValueError(f"expectation_gap: no gap/* metrics under {runs_dir}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    used = []
    for ax, (metric, title) in zip(axes[0], panels):
        for i, g in enumerate(groups):
            e, m, s = g.curve(metric)
            if not len(e):
                continue
            used.append(g)
            ax.plot(e, m, marker="o", ms=3, color=f"C{i % 10}", label=f"{g.label} (n={g.n})")
            if g.n > 1:
                ax.fill_between(e, m - s, m + s, color=f"C{i % 10}", alpha=0.15)
        ax.set(xlabel="epoch", ylabel="cosine similarity", title=title)
        ax.title.set_fontsize(8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Expectation gap: Ē = mean of F over augmentations; mean over seeds ({scale_caption(used)})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)
