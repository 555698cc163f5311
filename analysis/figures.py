"""Figures, one function each; every function reads only run directories and saves PNG + PDF."""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from analysis import stats  # noqa: E402


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


# ---------------------------------------------------------------------------------------
# Run directories -> config groups (seeds pooled)
# ---------------------------------------------------------------------------------------

KNN, LINEAR, LOSS = "eval/knn_top1", "eval/linear_top1", "train/loss"
ZSTD, ZSTD_SQRT_D, INV_SQRT_D = "collapse/z_std", "collapse/z_std_sqrt_d", "collapse/inv_sqrt_d"
GAP_H, GAP_F, GAP_ETA = "gap/cos_h_E", "gap/cos_F_E", "gap/cos_eta_E"
STALENESS, AGE = "bank/staleness_cos", "bank/age_steps"
INIT_WEIGHT = "bank/init_weight"  # ema: mean weight m^n of the initial targets η₀ left in the bank

#: Config fields that differ between seeds of one configuration or do not change the run
#: (``method.diag_every`` only sets how often the probes look: tests/test_alternation.py
#: checks that training is identical with any value).
_IGNORED_KEYS = {"name", "seed", "out_dir", "resume", "progress", "device", "ckpt_every", "ckpt_minutes",
                 "data.subset_seed", "data.cache_dir", "data.root", "method.bank_path", "method.diag_every"}
_IGNORED_SECTIONS = ("log.",)  # where metrics are also written (TensorBoard, W&B): not the experiment


@functools.lru_cache(maxsize=1)
def _config_defaults() -> dict[str, Any]:
    """Today's defaults, flattened: a config.yaml written before a field existed ran with
    the behaviour that field's default keeps, so missing fields read as their defaults."""
    import dataclasses

    from emsiam.config import Config

    return _flatten(dataclasses.asdict(Config()))


def _note(msg: str) -> None:
    print(f"figures: {msg}", file=sys.stderr)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (d or {}).items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return out


@dataclass
class RunData:
    path: Path
    label: str  # directory name without the ``_s<seed>`` suffix
    cfg: dict[str, Any]  # flattened config
    records: list[dict[str, Any]]
    status: str

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of the records carrying ``metric`` (last record wins per epoch)."""
        by_epoch: dict[float, float] = {}
        for r in self.records:
            v = r.get(metric)
            if v is not None and r.get("epoch") is not None and np.isfinite(v):
                by_epoch[float(r["epoch"])] = float(v)
        e = np.array(sorted(by_epoch))
        return e, np.array([by_epoch[x] for x in e])

    def final(self, metric: str) -> float | None:
        e, v = self.series(metric)
        return float(v[-1]) if len(v) else None

    def init(self, metric: str = KNN) -> float | None:
        e, v = self.series(metric)
        return float(v[0]) if len(v) and e[0] == 0 else None

    def mean_after_init(self, metric: str) -> float | None:
        e, v = self.series(metric)
        v = v[e > 0]
        return float(v.mean()) if len(v) else None


@dataclass
class Group:
    """Runs of one configuration (seeds pooled)."""

    label: str
    runs: list[RunData] = field(default_factory=list)

    @property
    def cfg(self) -> dict[str, Any]:
        return self.runs[0].cfg

    def get(self, key: str, default: Any = None) -> Any:
        return self.cfg.get(key, default)

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, fn: Callable[[RunData], float | None]) -> dict[Any, float]:
        """{seed: fn(run)} over the runs where it exists (seed from the run's config)."""
        return {r.cfg.get("seed", i): v for i, r in enumerate(self.runs) if (v := fn(r)) is not None}

    def stat(self, fn: Callable[[RunData], float | None]) -> tuple[float, float, int]:
        """mean, sample std (ddof = 1; nan for one run) and count of ``fn(run)`` over the runs where it exists."""
        vals = [v for v in (fn(r) for r in self.runs) if v is not None]
        return stats.mean(vals), stats.sample_std(vals), len(vals)

    def curve(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(epochs, mean, sample std (nan for one run)) over the runs at each epoch where any run has ``metric``."""
        per = [r.series(metric) for r in self.runs]
        epochs = sorted({float(x) for e, _ in per for x in e})
        mean, std = [], []
        for ep in epochs:
            vals = [v[e == ep][0] for e, v in per if np.any(e == ep)]
            mean.append(stats.mean(vals))
            std.append(stats.sample_std(vals))
        return np.array(epochs), np.array(mean), np.array(std)


def _label_of(run_dir: Path) -> str:
    return re.sub(r"_s\d+$", "", run_dir.name)


def load_runs(root: str | Path) -> list[RunData]:
    """Every readable run directory under ``root`` (itself included), skipping broken ones."""
    root = Path(root)
    runs = []
    for cfg_path in sorted(root.rglob("config.yaml")):
        d = cfg_path.parent
        try:
            cfg = {**_config_defaults(), **_flatten(yaml.safe_load(cfg_path.read_text()) or {})}
        except (OSError, yaml.YAMLError) as exc:
            _note(f"skipping {d}: unreadable config.yaml ({exc})")
            continue
        records = []
        mpath = d / "metrics.jsonl"
        if mpath.exists():
            for line in mpath.read_text().splitlines():
                try:
                    if line.strip():
                        records.append(json.loads(line))
                except json.JSONDecodeError:
                    _note(f"{d}: skipping a malformed metrics line (partially written?)")
        status = "unknown"
        spath = d / "status.json"
        if spath.exists():
            try:
                status = json.loads(spath.read_text()).get("status", "unknown")
            except (OSError, json.JSONDecodeError):
                pass
        if not records:
            _note(f"skipping {d}: no metrics yet (status {status})")
            continue
        runs.append(RunData(d, _label_of(d), cfg, records, status))
    return runs


def group_runs(runs: list[RunData]) -> list[Group]:
    """Runs grouped by configuration (every config field except seed/name/paths), in first-seen order."""
    groups: dict[tuple, Group] = {}
    for r in runs:
        key = tuple(sorted((k, repr(v)) for k, v in r.cfg.items()
                           if k not in _IGNORED_KEYS and not k.startswith(_IGNORED_SECTIONS)))
        groups.setdefault(key, Group(r.label)).runs.append(r)
    # two configurations sharing a label (rare): make the labels unique
    seen: dict[str, int] = {}
    for g in groups.values():
        seen[g.label] = seen.get(g.label, 0) + 1
        if seen[g.label] > 1:
            g.label = f"{g.label} ({seen[g.label]})"
    return list(groups.values())


def _groups(root: str | Path) -> list[Group]:
    groups = group_runs(load_runs(root))
    if not groups:
        raise ValueError(f"no run directories with metrics under {root}: nothing to plot")
    return groups


def _scale(groups: list[Group]) -> str:
    """'n seeds, epochs, data' caption for titles."""
    seeds = sorted({g.n for g in groups})
    epochs = sorted({int(max((r.records[-1].get("epoch") or 0) for r in g.runs)) for g in groups})
    data = sorted({f"{g.get('data.source', '?')} n={g.get('data.n_train') or 'all'}" for g in groups})
    s = f"{'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}"
    e = f"{'/'.join(map(str, epochs))} epoch{'s' if epochs != [1] else ''}"
    return f"{s}, {e}, {', '.join(data)}"


def _is_simsiam_ref(g: Group) -> bool:
    return (g.get("method.variant") == "simsiam" and g.get("method.predictor", "auto") in ("auto", "learned")
            and g.get("method.stopgrad", True) is not False and g.get("method.symmetric", True) is not False)


def _is_no_predictor(g: Group) -> bool:
    return g.get("method.variant") == "simsiam" and g.get("method.predictor") == "none" \
        and g.get("method.stopgrad", True) is not False


def steps_per_epoch(g: Group) -> int | None:
    """SGD steps per epoch of a group's runs: the step logged at epoch 1."""
    for r in g.runs:
        for rec in r.records:
            if rec.get("epoch") == 1 and rec.get("step"):
                return int(rec["step"])
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
        pts += [g for g in groups if _is_simsiam_ref(g) and g.stat(lambda r: r.final(metric))[2]][:1]
    pts = [g for g in pts if k_steps(g) is not None]
    pts.sort(key=lambda g: k_steps(g))
    return pts, np.array([k_steps(g) for g in pts])


def _k_axis(ax, groups: list[Group], ks: np.ndarray) -> None:
    ax.set_xscale("log")
    ax.set_xticks(ks, [("1 (SimSiam)" if g.get("method.variant") == "simsiam" else str(g.get("method.k")))
                       for g in groups], rotation=30, fontsize=7)
    ax.minorticks_off()


def _ref_line(ax, g: Group, metric: str, color: str, name: str, fn=None) -> None:
    fn = fn or (lambda r: r.final(metric))
    m, s, n = g.stat(fn)
    if n == 0:
        return
    ax.axhline(m, color=color, ls="--", lw=1.2, label=f"{name}: {m:.2f}" + (f" ± {s:.2f} (sd)" if n > 1 else ""))
    if n > 1 and s > 0:
        ax.axhspan(m - s, m + s, color=color, alpha=0.15)


def _init_line(ax, groups: list[Group]) -> None:
    vals = [v for g in groups for v in (r.init(KNN) for r in g.runs) if v is not None]
    if vals:
        ax.axhline(np.mean(vals), color="gray", ls=":", lw=1, label=f"encoder at init: {np.mean(vals):.1f}")


def _finish(ax, legend: bool = True) -> None:
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def accuracy_vs_k(runs_dir: Path, stem: Path) -> list[Path]:
    """Final kNN (and linear, when logged) top-1 against the refresh interval k in SGD steps, on a
    log axis (SimSiam is k = 1); the knee of the mean curve (analysis.stats.knee) is marked."""
    from analysis.stats import knee

    groups = _groups(runs_dir)
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
            _init_line(ax, kstep)
        ax.margins(y=0.12)
        _k_axis(ax, kstep, ks)
        ax.set(xlabel="k: SGD steps per target refresh (log)", ylabel=ylabel,
               title=f"final {ylabel.split(' (')[0]} vs k")
        _finish(ax)
    fig.suptitle(f"Multi-step alternation: mean ± sample std over seeds ({_scale(kstep)})", fontsize=9)
    fig.tight_layout()
    return _save(fig, stem)


def learning_curves(runs_dir: Path, stem: Path) -> list[Path]:
    """kNN top-1 against epoch, one line per configuration (mean over seeds, band = ± sample std)."""
    groups = [g for g in _groups(runs_dir) if g.stat(lambda r: r.final(KNN))[2]]
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
           title=f"kNN top-1 vs epoch, mean ± sample std over seeds ({_scale(groups)})")
    ax.title.set_fontsize(9)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, stem)


def stopgrad_panels(runs_dir: Path, stem: Path) -> list[Path]:
    """Figure-2 style: training loss, std of l2-normalised z (with 1/√d) and kNN vs epoch, stop-grad on/off."""
    groups = [g for g in _groups(runs_dir) if g.get("method.variant") == "simsiam"
              and g.get("method.predictor", "auto") in ("auto", "learned")]
    on = [g for g in groups if g.get("method.stopgrad", True) is not False]
    off = [g for g in groups if g.get("method.stopgrad", True) is False]
    if not off:
        raise ValueError(f"stopgrad_panels: no run with method.stopgrad=false under {runs_dir}")
    if not on:
        _note("stopgrad_panels: no stop-grad (reference) run; plotting without it")
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
    _init_line(axes[2], groups)
    xmax = max(max((r.records[-1].get("epoch") or 0) for r in g.runs) for g in groups)
    handles: dict[str, Any] = {}
    for ax, (metric, ylabel) in zip(axes, panels):
        ax.set(xlabel="epoch", ylabel=ylabel, title=ylabel.split(" (")[0], xlim=(-0.1 * max(xmax, 1), xmax * 1.05 + 0.1))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.suptitle(f"Stop-gradient on vs off (paper Fig. 2 style): mean over seeds ({_scale(groups)})", fontsize=9)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 4))
    return _save(fig, stem)


def ema_vs_m(runs_dir: Path, stem: Path) -> list[Path]:
    """Final kNN and z_std·√d against the moving-average coefficient m (ema, no predictor)."""
    groups = _groups(runs_dir)
    ema = sorted([g for g in groups if g.get("method.variant") == "ema" and g.stat(lambda r: r.final(KNN))[2]],
                 key=lambda g: float(g.get("method.ema_m", 0)))
    if not ema:
        raise ValueError(f"ema_vs_m: no ema runs with a kNN evaluation under {runs_dir}")
    refs = [(g, "C2", "SimSiam (learned predictor)") for g in groups if _is_simsiam_ref(g)]
    refs += [(g, "C3", "SimSiam, no predictor") for g in groups if _is_no_predictor(g)]
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
            _ref_line(ax, g, metric, color, name)
        if metric == KNN:
            _init_line(ax, ema)
        else:
            ax.axhline(stats.COLLAPSE_ZSTD, color="gray", ls=":", lw=1,
                       label=f"collapse threshold {stats.COLLAPSE_ZSTD}")
            ax.set_ylim(0, 1.15)  # std(z)·√d <= 1 for unit vectors; headroom for the value labels
        ax.set_xticks(xs, [f"{float(g.get('method.ema_m')):g}" for g in ema])
        if metric == KNN:
            ax.margins(y=0.12)
        ax.set(xlabel="m (η ← m·η + (1−m)·F; categorical axis)", ylabel=ylabel, title=ylabel.split(" (")[0] + " vs m")
        _finish(ax)
    fig.suptitle(f"Moving-average targets vs predictor: mean ± sample std over seeds ({_scale(ema)})", fontsize=9)
    fig.tight_layout()
    return _save(fig, stem)


def expectation_gap(runs_dir: Path, stem: Path) -> list[Path]:
    """cos(h(F),Ē), cos(F,Ē) and (ema) cos(η,Ē) over training, one line per configuration."""
    groups = _groups(runs_dir)
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
    fig.suptitle(f"Expectation gap: Ē = mean of F over augmentations; mean over seeds ({_scale(used)})", fontsize=9)
    fig.tight_layout()
    return _save(fig, stem)


def staleness_vs_k(runs_dir: Path, stem: Path) -> list[Path]:
    """Staleness cos(cached η, fresh F) and mean target age (steps) against k, at the last epoch."""
    groups, ks = _k_points([g for g in _groups(runs_dir) if g.get("method.variant") == "kstep"], STALENESS)
    if not groups:
        raise ValueError(f"staleness_vs_k: no kstep runs with bank/staleness_cos under {runs_dir}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = ks
    for ax, metric, ylabel in [(axes[0], STALENESS, "staleness cos(cached η, current F)"),
                               (axes[1], AGE, "mean target age (SGD steps)")]:
        per_group = [g.stat(lambda r, m=metric: r.final(m)) for g in groups]
        ax.errorbar(xs, [s[0] for s in per_group], yerr=[s[1] for s in per_group], fmt="o-", capsize=4, color="C0",
                    label="last epoch, mean ± sample std over seeds")
        ax.margins(y=0.15)
        for x, (m, s, n) in zip(xs, per_group):
            if n:
                ax.annotate(f"{m:.3f}" if metric == STALENESS else f"{m:.3g}", (x, m),
                            textcoords="offset points", xytext=(6, 4), fontsize=7)
        if metric == AGE and all(s[2] for s in per_group) and min(s[0] for s in per_group) > 0:
            ax.set_yscale("log")
        _k_axis(ax, groups, ks)
        ax.set(xlabel="k: SGD steps per target refresh (log)", ylabel=ylabel, title=ylabel + " vs k")
        ax.title.set_fontsize(9)
        _finish(ax)
    fig.suptitle(f"Cached-target staleness in k-step alternation ({_scale(groups)})", fontsize=9)
    fig.tight_layout()
    return _save(fig, stem)


#: Every run-directory figure, by name (su_phase_plot reads .npz files instead).
FIGURES: dict[str, Callable[[Path, Path], list[Path]]] = {
    "accuracy_vs_k": accuracy_vs_k,
    "learning_curves": learning_curves,
    "stopgrad_panels": stopgrad_panels,
    "ema_vs_m": ema_vs_m,
    "expectation_gap": expectation_gap,
    "staleness_vs_k": staleness_vs_k,
}


# ---------------------------------------------------------------------------------------
# The predictor question (issue 12): experiments/predictor_as_expectation.py
# ---------------------------------------------------------------------------------------

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
    series = _m_axis_groups(_groups(runs_dir))
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
            _init_line(ax, used)
        else:
            ax.axhline(stats.COLLAPSE_ZSTD, color="gray", ls=":", lw=1, label=f"collapse threshold {stats.COLLAPSE_ZSTD}")
        ax.set_xscale("log", base=2)
        ticks = sorted({m for v in series.values() for m in v})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.margins(y=0.12)
        ax.set(xlabel="M (views averaged in the target; 1 = one-sample η, SimSiam)", ylabel=ylabel,
               title=ylabel.split(" (")[0] + " vs M")
        _finish(ax)
    fig.suptitle(f"Explicit expectation target: mean ± sample std over seeds ({_scale(used)})", fontsize=9)
    fig.tight_layout()
    return _save(fig, stem)


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
    groups = _groups(runs_dir)
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
        _finish(ax)
    fig.suptitle(f"Spectra at the last evaluation ({_scale([g for g, _ in rows])})", fontsize=9)
    fig.tight_layout()
    return _save(fig, stem)


def gap_by_predictor(runs_dir: Path, stem: Path) -> list[Path]:
    """Per configuration, final cos(h(F), Ē) − cos(F, Ē) (leave-one-out Ē; > 0: h moves F towards
    the expectation over augmentations) and the predictor's misalignment with F̂ (W_offdiag)."""
    groups = [g for g in _groups(runs_dir) if g.stat(lambda r: r.final(GAP_H))[2]]
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
    fig.suptitle(f"By predictor kind, final evaluation, mean ± sample std over seeds ({_scale(groups)})", fontsize=9)
    fig.tight_layout()
    return _save(fig, stem)


#: The predictor study's figures (experiments/predictor_as_expectation.py renders them after its runs).
PREDICTOR_FIGURES: dict[str, Callable[[Path, Path], list[Path]]] = {
    "accuracy_vs_target_views": accuracy_vs_target_views,
    "predictor_spectra": predictor_spectra,
    "gap_by_predictor": gap_by_predictor,
}
