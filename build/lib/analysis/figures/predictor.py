"""The predictor question (experiments/predictor_as_expectation.py): accuracy against M, the
views averaged in an explicit expectation target; eigen-spectra; the gap by predictor kind."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from analysis import stats

from .common import (GAP_F, GAP_H, KNN, ZSTD_SQRT_D, Group, RunData, finish_axes, groups_under, init_line,
                     save_figure, scale_caption)

GAP_DELTA = "gap/cos_h_E - gap/cos_F_E"  # derived per run: what h adds towards the expectation
W_OFFDIAG, P_SQRT_S = "spectral/W_offdiag", "spectral/p_sqrt_s_corr"
_KIND_COLORS = {"learned": "C0", "none": "C3", "fixed_random": "C7", "directpred": "C2", "directcopy": "C1"}


def _predictor_of(g: Group) -> str:
    """The predictor kind a group trained with (``auto`` resolved as the code does)."""
    p = g.get("method.predictor", "auto")
    if p == "auto":
        return "none" if g.get("method.variant") == "ema" else "learned"
    return p


def _target_views(g: Group) -> int:
    """M of the explicit expectation target: ``method.target_views`` of kstep runs; 1 for the
    one-sample targets of simsiam and kstep k = 1 (the same run, bit for bit)."""
    if g.get("method.variant") == "kstep":
        return int(g.get("method.target_views", 1) or 1)
    return 1


def _m_axis_groups(groups: list[Group]) -> dict[str, dict[int, Group]]:
    """{predictor: {M: group}} for learned and none: kstep target-view runs, with simsiam (or
    kstep k = 1, M = 1) as M = 1."""
    out: dict[str, dict[int, Group]] = {"learned": {}, "none": {}}
    for g in groups:
        pred = _predictor_of(g)
        if pred not in out or g.get("method.stopgrad", True) is False or g.get("method.symmetric", True) is False:
            continue
        if g.get("method.variant") == "kstep" and (str(g.get("method.k")) == "1" or _target_views(g) > 1):
            out[pred].setdefault(_target_views(g), g)
        elif g.get("method.variant") == "simsiam" and g.get("method.pairs", 1) in (1, None):
            out[pred].setdefault(1, g)
    return out


def accuracy_vs_target_views(runs_dir: Path, stem: Path) -> list[Path]:
    """Final kNN and z_std·√d against M, the views averaged in the explicit expectation target
    η_x = (1/M) Σ_i F(T(x; s_i)), with and without the learned predictor (M = 1: SimSiam)."""
    series = _m_axis_groups(groups_under(runs_dir))
    if not any(len(v) > 1 or any(m > 1 for m in v) for v in series.values()):
        raise ValueError(f"accuracy_vs_target_views: no kstep runs with method.target_views > 1 under {runs_dir}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    used = []
    for ax, metric, ylabel in [(axes[0], KNN, "final kNN top-1 (%)"),
                               (axes[1], ZSTD_SQRT_D, "final std(z)·√d (1 = no collapse)")]:
        for (pred, by_m), color, name in zip(series.items(), ("C0", "C3"), ("learned predictor", "no predictor")):
            ms = sorted(by_m)
            stats_ = [by_m[m].stat(lambda r, k=metric: r.final(k)) for m in ms]
            keep = [(m, s) for m, s in zip(ms, stats_) if s[2]]
            if not keep:
                continue
            used += [by_m[m] for m, _ in keep]
            xs = [m for m, _ in keep]
            ax.errorbar(xs, [s[0] for _, s in keep], yerr=[s[1] for _, s in keep], fmt="o-", color=color,
                        capsize=4, label=name)
            for x, (m_, s_, n_) in zip(xs, (s for _, s in keep)):
                ax.annotate(f"{m_:.2f}" if metric == ZSTD_SQRT_D else f"{m_:.1f}", (x, m_),
                            textcoords="offset points", xytext=(6, 4), fontsize=7)
        if metric == KNN:
            init_line(ax, used)
        else:
            ax.axhline(stats.COLLAPSE_ZSTD, color="gray", ls=":", lw=1, label=f"collapse threshold {stats.COLLAPSE_ZSTD}")
        ax.set_xscale("log", base=2)
        ticks = sorted({m for v in series.values() for m in v})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.margins(y=0.12)
        ax.set(xlabel="M (views averaged in the target; 1 = one-sample η, SimSiam)", ylabel=ylabel,
               title=ylabel.split(" (")[0] + " vs M")
        finish_axes(ax)
    fig.suptitle(f"Explicit expectation target: mean ± sample std over seeds ({scale_caption(used)})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)


def _last_spectra(run: RunData) -> dict[str, np.ndarray] | None:
    """The run's last saved spectra (``<run>/spectra/epochNNNN.npz``), or None."""
    files = sorted((run.path / "spectra").glob("epoch*.npz"))
    if not files:
        return None
    with np.load(files[-1], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def predictor_spectra(runs_dir: Path, stem: Path) -> list[Path]:
    """Eigen-spectra at the last evaluation: F̂'s eigenvalues s_j/s_1, and the predictor's symmetric
    part in F̂'s eigenbasis, q_jᵀ W_s q_j (normalised by its largest |value|), against DirectPred's
    law √(s_j/s_1); one line per configuration (seeds averaged). A predictor aligned with F̂ and
    obeying the law follows the dashed line (plus ε)."""
    groups = groups_under(runs_dir)
    rows = []
    for g in groups:
        spectra = [sp for sp in (_last_spectra(r) for r in g.runs) if sp is not None]
        if spectra:
            rows.append((g, spectra))
    if not rows:
        raise ValueError(f"predictor_spectra: no spectra/*.npz under {runs_dir} (runs before issue 12 have none)")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    law_drawn = False
    for i, (g, spectra) in enumerate(rows):
        color = plt.cm.tab20(i % 20)
        s = np.mean([sp["F_eig"] / max(sp["F_eig"][0], 1e-30) for sp in spectra], axis=0)
        j = np.arange(1, len(s) + 1)
        axes[0].plot(j, np.clip(s, 1e-8, None), color=color, label=f"{g.label} (n={len(spectra)})")
        with_w = [sp for sp in spectra if "W_in_F" in sp]
        if with_w:
            w = np.mean([sp["W_in_F"] / max(np.abs(sp["W_in_F"]).max(), 1e-30) for sp in with_w], axis=0)
            axes[1].plot(j, w, color=color, label=f"{g.label} [{_predictor_of(g)}]")
            if not law_drawn:
                axes[1].plot(j, np.sqrt(np.clip(s, 0, None)), "k--", lw=1, label=f"√(s_j/s_1) of {g.label}")
                law_drawn = True
    axes[0].set_yscale("log")
    axes[0].set(xlabel="eigenvalue rank j", ylabel="s_j / s_1", title="F̂ = EMA of mean(z zᵀ): eigenvalues")
    axes[1].set(xlabel="eigenvalue rank j of F̂", ylabel="q_jᵀ W_s q_j / max",
                title="predictor in F̂'s eigenbasis (MLP: least-squares linear proxy)")
    for ax in axes:
        ax.title.set_fontsize(8)
        finish_axes(ax)
    fig.suptitle(f"Spectra at the last evaluation ({scale_caption([g for g, _ in rows])})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)


def gap_by_predictor(runs_dir: Path, stem: Path) -> list[Path]:
    """Per configuration, final cos(h(F), Ē) − cos(F, Ē) (leave-one-out Ē; > 0: h moves F towards
    the expectation over augmentations) and the predictor's misalignment with F̂ (W_offdiag)."""
    groups = [g for g in groups_under(runs_dir) if g.stat(lambda r: r.final(GAP_H))[2]]
    if not groups:
        raise ValueError(f"gap_by_predictor: no gap/* metrics under {runs_dir}")

    def delta(r: RunData) -> float | None:
        h, f = r.final(GAP_H), r.final(GAP_F)
        return None if h is None or f is None else h - f

    panels = [(delta, "cos(h(F), Ē) − cos(F, Ē)", "gap: what the predictor adds"),
              (lambda r: r.final(W_OFFDIAG), "‖offdiag(Qᵀ W_s Q)‖ / ‖Qᵀ W_s Q‖",
               "predictor misalignment with F̂ (0 = aligned)")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8 + 0.12 * len(groups)))
    ys = np.arange(len(groups))
    for ax, (fn, xlabel, title) in zip(axes, panels):
        st = [g.stat(fn) for g in groups]
        vals = np.array([s[0] if s[2] else np.nan for s in st])
        err = np.array([s[1] if s[2] > 1 else 0.0 for s in st])
        colors = [_KIND_COLORS.get(_predictor_of(g), "gray") for g in groups]
        ax.barh(ys, np.nan_to_num(vals), xerr=err if err.any() else None, color=colors, alpha=0.8, capsize=3)
        for y, v in zip(ys, vals):
            ax.annotate("n/a" if np.isnan(v) else f"{v:.3f}", (0 if np.isnan(v) else v, y),
                        textcoords="offset points", xytext=(4, -3), fontsize=7)
        ax.axvline(0, color="gray", lw=0.8)
        ax.set_yticks(ys, [f"{g.label} [{_predictor_of(g)}]" for g in groups], fontsize=7)
        ax.set(xlabel=xlabel, title=title)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"By predictor kind, final evaluation, mean ± sample std over seeds ({scale_caption(groups)})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)
