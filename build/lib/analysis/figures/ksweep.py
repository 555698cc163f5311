"""The k-sweep: accuracy and cached-target staleness against the refresh interval k (in SGD steps)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .common import (AGE, KNN, LINEAR, STALENESS, Group, finish_axes, groups_under, init_line, is_simsiam_ref,
                     save_figure, scale_caption)


def steps_per_epoch(g: Group) -> int | None:
    """SGD steps per epoch of a group's runs: step / epoch of the first record past epoch 0 (every
    epoch has the same number of steps; a table of evaluation records may skip epoch 1)."""
    for r in g.runs:
        for rec in r.records:
            epoch, step = rec.get("epoch"), rec.get("step")
            if epoch and step:
                return int(step) // int(epoch)
    return None


def k_steps(g: Group) -> float | None:
    """The refresh interval k in SGD steps: 1 for SimSiam, min(k, epoch) for an integer k,
    E epochs of steps for ``epoch`` / ``Eepochs`` (None when the epoch length is unknown)."""
    if g.get("method.variant") == "simsiam":
        return 1.0
    k, spe = g.get("method.k"), steps_per_epoch(g)
    try:
        steps = float(int(k))
        return min(steps, spe) if spe else steps
    except (TypeError, ValueError):
        pass
    try:
        from emsiam.config import k_epochs

        return float(k_epochs(str(k)) * spe) if spe else None
    except ValueError:
        return None


def _k_points(groups: list[Group], metric: str) -> tuple[list[Group], np.ndarray]:
    """kstep groups with a final ``metric`` (plus SimSiam as k = 1 when no kstep k = 1 ran), by k."""
    pts = [g for g in groups if g.get("method.variant") == "kstep" and g.stat(lambda r: r.final(metric))[2]]
    if not any(k_steps(g) == 1 for g in pts):
        pts += [g for g in groups if is_simsiam_ref(g) and g.stat(lambda r: r.final(metric))[2]][:1]
    pts = [g for g in pts if k_steps(g) is not None]
    pts.sort(key=lambda g: k_steps(g))
    return pts, np.array([k_steps(g) for g in pts])


def _k_axis(ax, groups: list[Group], ks: np.ndarray) -> None:
    ax.set_xscale("log")
    ax.set_xticks(ks, [("1 (SimSiam)" if g.get("method.variant") == "simsiam" else str(g.get("method.k")))
                       for g in groups], rotation=30, fontsize=7)
    ax.minorticks_off()


def accuracy_vs_k(runs_dir: Path, stem: Path) -> list[Path]:
    """Final kNN (and linear, when logged) top-1 against the refresh interval k in SGD steps, on a
    log axis (SimSiam is k = 1); the knee of the mean curve (analysis.stats.knee) is marked."""
    from analysis.stats import knee

    groups = groups_under(runs_dir)
    kstep, ks = _k_points(groups, KNN)
    if not [g for g in kstep if g.get("method.variant") == "kstep"]:
        raise ValueError(f"accuracy_vs_k: no kstep runs with a kNN evaluation under {runs_dir}")
    metrics = [(KNN, "kNN top-1 (%)")]
    if any(g.stat(lambda r: r.final(LINEAR))[2] for g in kstep):
        metrics.append((LINEAR, "linear top-1 (%)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.8), squeeze=False)
    for ax, (metric, ylabel) in zip(axes[0], metrics):
        per_group = [g.stat(lambda r, m=metric: r.final(m)) for g in kstep]
        mean = np.array([st[0] for st in per_group])
        std = np.array([st[1] for st in per_group])
        ax.errorbar(ks, mean, yerr=np.nan_to_num(std), fmt="o-", color="C0", capsize=4,
                    label="k-step alternation (k = 1: SimSiam)")
        for x, (m, sd, n) in zip(ks, per_group):
            if n:
                ax.annotate(f"{m:.1f}", (x, m), textcoords="offset points", xytext=(6, 4), fontsize=7)
        i = knee(np.log10(ks), mean) if len(ks) >= 3 else None
        if i is not None:
            ax.axvline(ks[i], color="C2", ls=":", lw=1.2, label=f"knee: k = {ks[i]:g} steps")
        if metric == KNN:
            init_line(ax, kstep)
        ax.margins(y=0.12)
        _k_axis(ax, kstep, ks)
        ax.set(xlabel="k: SGD steps per target refresh (log)", ylabel=ylabel,
               title=f"final {ylabel.split(' (')[0]} vs k")
        finish_axes(ax)
    fig.suptitle(f"Multi-step alternation: mean ± sample std over seeds ({scale_caption(kstep)})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)


def run_averages(groups: list[Group], metric: str) -> list[tuple[float, float, int]]:
    """Per group: (mean, sample std, n) over seeds of each run's ``metric`` averaged over its
    logged epochs after 0. The run average, not the last epoch: with k longer than an epoch, the
    last epoch may sit anywhere in an outer iteration (32 epochs at k = 5 epochs end two epochs
    into one), so its staleness says little about k."""
    return [g.stat(lambda r: r.mean_after_init(metric)) for g in groups]


def staleness_vs_k(runs_dir: Path, stem: Path) -> list[Path]:
    """Staleness cos(cached η, fresh F) and mean target age (steps) against k, averaged over each
    run's epochs (:func:`run_averages`)."""
    groups, ks = _k_points([g for g in groups_under(runs_dir) if g.get("method.variant") == "kstep"], STALENESS)
    if not groups:
        raise ValueError(f"staleness_vs_k: no kstep runs with bank/staleness_cos under {runs_dir}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = ks
    for ax, metric, ylabel in [(axes[0], STALENESS, "staleness cos(cached η, current F)"),
                               (axes[1], AGE, "mean target age (SGD steps)")]:
        per_group = run_averages(groups, metric)
        ax.errorbar(xs, [s[0] for s in per_group], yerr=[s[1] for s in per_group], fmt="o-", capsize=4, color="C0",
                    label="average over the run's epochs; mean ± sample std over seeds")
        ax.margins(y=0.15)
        fmt = ".3g" if metric == AGE else ".5f" if min(s[0] for s in per_group if s[2]) > 0.99 else ".3f"
        for x, (m, s, n) in zip(xs, per_group):
            if n:
                ax.annotate(format(m, fmt), (x, m), textcoords="offset points", xytext=(6, 4), fontsize=7)
        if metric == AGE and all(s[2] for s in per_group) and min(s[0] for s in per_group) > 0:
            ax.set_yscale("log")
        _k_axis(ax, groups, ks)
        ax.set(xlabel="k: SGD steps per target refresh (log)", ylabel=ylabel, title=ylabel + " vs k")
        ax.title.set_fontsize(9)
        finish_axes(ax)
    fig.suptitle(f"Cached-target staleness in k-step alternation ({scale_caption(groups)})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)
