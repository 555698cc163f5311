"""Moving-average targets: accuracy and collapse against the coefficient m, with the SimSiam references."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from analysis import stats

from .common import (KNN, ZSTD_SQRT_D, finish_axes, groups_under, init_line, is_no_predictor, is_simsiam_ref,
                     ref_line, save_figure, scale_caption)


def ema_vs_m(runs_dir: Path, stem: Path) -> list[Path]:
    """Final kNN and z_std·√d against the moving-average coefficient m (ema, no predictor)."""
    groups = groups_under(runs_dir)
    ema = sorted([g for g in groups if g.get("method.variant") == "ema" and g.stat(lambda r: r.final(KNN))[2]],
                 key=lambda g: float(g.get("method.ema_m", 0)))
    if not ema:
        raise ValueError(f"ema_vs_m: no ema runs with a kNN evaluation under {runs_dir}")
    refs = [(g, "C2", "SimSiam (learned predictor)") for g in groups if is_simsiam_ref(g)]
    refs += [(g, "C3", "SimSiam, no predictor") for g in groups if is_no_predictor(g)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = np.arange(len(ema))
    for ax, metric, ylabel in [(axes[0], KNN, "final kNN top-1 (%)"),
                               (axes[1], ZSTD_SQRT_D, "final std(z)·√d (1 = no collapse)")]:
        per_group = [g.stat(lambda r, m=metric: r.final(m)) for g in ema]
        ax.errorbar(xs, [s[0] for s in per_group], yerr=[s[1] for s in per_group], fmt="o-", color="C0", capsize=4,
                    label="moving-average η, no predictor")
        for x, (m, s, n) in zip(xs, per_group):
            if n:
                ax.annotate(f"{m:.2f}" if metric == ZSTD_SQRT_D else f"{m:.1f}", (x, m),
                            textcoords="offset points", xytext=(6, 4), fontsize=7)
        for g, color, name in refs:
            ref_line(ax, g, metric, color, name)
        if metric == KNN:
            init_line(ax, ema)
        else:
            ax.axhline(stats.COLLAPSE_ZSTD, color="gray", ls=":", lw=1,
                       label=f"collapse threshold {stats.COLLAPSE_ZSTD}")
            ax.set_ylim(0, 1.15)  # std(z)·√d <= 1 for unit vectors; headroom for the value labels
        ax.set_xticks(xs, [f"{float(g.get('method.ema_m')):g}" for g in ema])
        if metric == KNN:
            ax.margins(y=0.12)
        ax.set(xlabel="m (η ← m·η + (1−m)·F; categorical axis)", ylabel=ylabel, title=ylabel.split(" (")[0] + " vs m")
        finish_axes(ax)
    fig.suptitle(f"Moving-average targets vs predictor: mean ± sample std over seeds ({scale_caption(ema)})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)
