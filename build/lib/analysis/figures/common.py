"""Run directories as configuration groups (seeds pooled), and the plot helpers every figure uses."""

from __future__ import annotations

import functools
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
from analysis.results import flat_config, run_label  # noqa: E402
from emsiam.runs import read_run, run_dirs  # noqa: E402

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
def config_defaults() -> dict[str, Any]:
    """Today's defaults, flattened: a config.yaml written before a field existed ran with
    the behaviour that field's default keeps, so missing fields read as their defaults."""
    import dataclasses

    from emsiam.config import Config

    return flat_config(dataclasses.asdict(Config()))


def note(msg: str) -> None:
    """A message to stderr (a run skipped, a figure drawn without its reference)."""
    print(f"figures: {msg}", file=sys.stderr)


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


def label_of(run_dir: Path) -> str:
    return run_label(run_dir.name)


def load_runs(root: str | Path) -> list[RunData]:
    """Every readable run directory with metrics under ``root`` (itself included), skipping broken ones."""
    runs = []
    for d in run_dirs(root):
        try:
            run = read_run(d)
        except (OSError, yaml.YAMLError) as exc:
            note(f"skipping {d}: unreadable config.yaml ({exc})")
            continue
        if not run.records:
            note(f"skipping {d}: no metrics yet (status {run.status})")
            continue
        runs.append(RunData(d, label_of(d), {**config_defaults(), **flat_config(run.config)}, run.records, run.status))
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


def groups_under(root: str | Path) -> list[Group]:
    groups = group_runs(load_runs(root))
    if not groups:
        raise ValueError(f"no run directories with metrics under {root}: nothing to plot")
    return groups


def scale_caption(groups: list[Group]) -> str:
    """'n seeds, epochs, data' caption for titles."""
    seeds = sorted({g.n for g in groups})
    epochs = sorted({int(max((r.records[-1].get("epoch") or 0) for r in g.runs)) for g in groups})
    data = sorted({f"{g.get('data.source', '?')} n={g.get('data.n_train') or 'all'}" for g in groups})
    s = f"{'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}"
    e = f"{'/'.join(map(str, epochs))} epoch{'s' if epochs != [1] else ''}"
    return f"{s}, {e}, {', '.join(data)}"


def is_simsiam_ref(g: Group) -> bool:
    return (g.get("method.variant") == "simsiam" and g.get("method.predictor", "auto") in ("auto", "learned")
            and g.get("method.stopgrad", True) is not False and g.get("method.symmetric", True) is not False)


def is_no_predictor(g: Group) -> bool:
    return g.get("method.variant") == "simsiam" and g.get("method.predictor") == "none" \
        and g.get("method.stopgrad", True) is not False


# ---------------------------------------------------------------------------------------
# plot helpers
# ---------------------------------------------------------------------------------------


def save_figure(fig, stem: Path) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` (folders made as needed) and close it. The PDF
    carries no creation date, so a rebuilt report changes only the figures whose content changed."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p, meta in zip(paths, ({}, {"CreationDate": None})):
        fig.savefig(p, dpi=150, bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return paths


def ref_line(ax, g: Group, metric: str, color: str, name: str, fn=None) -> None:
    fn = fn or (lambda r: r.final(metric))
    m, s, n = g.stat(fn)
    if n == 0:
        return
    ax.axhline(m, color=color, ls="--", lw=1.2, label=f"{name}: {m:.2f}" + (f" ± {s:.2f} (sd)" if n > 1 else ""))
    if n > 1 and s > 0:
        ax.axhspan(m - s, m + s, color=color, alpha=0.15)


def init_line(ax, groups: list[Group]) -> None:
    vals = [v for g in groups for v in (r.init(KNN) for r in g.runs) if v is not None]
    if vals:
        ax.axhline(np.mean(vals), color="gray", ls=":", lw=1, label=f"encoder at init: {np.mean(vals):.1f}")


def finish_axes(ax, legend: bool = True) -> None:
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
