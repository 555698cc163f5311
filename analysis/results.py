"""One tidy table from run directories: a row per (run, evaluation record).

A run directory (emsiam.runs) holds ``config.yaml`` and ``metrics.jsonl``; a
sweep adds ``status.json`` (``{"status": "done"|"failed"|"running", ...}``).
:func:`collect` walks a tree of them and returns a pandas DataFrame with

* ``run``: the run directory relative to the root (e.g. ``kstep_sweep/k10_s0``);
* ``study``: its first path component ("" for a run directly under the root);
* ``status``: from ``status.json`` ("done" when absent and the run finished);
* ``epoch``, ``step`` and every metric of the record (``eval/knn_top1``,
  ``collapse/z_std_sqrt_d``, ``gap/cos_h_E``, ``bank/staleness_cos``, ...);
* every config field, flattened with dotted names (``method.k``, ``optim.epochs``).

Only records with an evaluation (``eval/knn_top1``) become rows, one per
(run, epoch): if an epoch was logged twice (a run resumed after a crash) the
last record wins. Runs that failed before their first evaluation still get one
row so failures show up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

#: Columns every table has, in this order, before metrics and config fields.
ID_COLUMNS = ("run", "study", "status", "epoch", "step")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, list):
            out[name] = json.dumps(value)  # hashable, one cell
        else:
            out[name] = value
    return out


def run_dirs(root: str | Path) -> list[Path]:
    """Every directory under ``root`` (itself included) that holds a ``config.yaml``, sorted."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("config.yaml"))


def read_status(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _read_records(path: Path) -> list[dict[str, Any]]:
    """JSON records of a metrics file; lines cut short by an interrupted write are skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_run(run_dir: Path, root: Path) -> list[dict[str, Any]]:
    """Rows of one run (see module docstring)."""
    cfg = _flatten(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    records = _read_records(run_dir / "metrics.jsonl")
    status = read_status(run_dir)
    finished = bool(records) and records[-1].get("epoch") == cfg.get("optim.epochs")
    state = status.get("status", "done" if finished else "incomplete")
    rel = run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name
    ident = {"run": rel, "study": rel.split("/")[0] if "/" in rel else "", "status": state}
    evals = list({r.get("epoch"): r for r in records if "eval/knn_top1" in r}.values())  # last record per epoch
    if not evals:
        evals = [{"epoch": None, "step": None}]
    return [{**ident, **r, **cfg} for r in evals]


def collect(root: str | Path) -> pd.DataFrame:
    """The tidy table of every run under ``root`` (empty DataFrame with the id columns if none)."""
    root = Path(root)
    rows = [row for d in run_dirs(root) for row in read_run(d, root)]
    if not rows:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    df = pd.DataFrame(rows)
    front = [c for c in ID_COLUMNS if c in df.columns]
    config_cols = sorted(c for c in df.columns if "." in c)  # metrics use "/", config "."
    metric_cols = sorted(c for c in df.columns if c not in front and c not in config_cols)
    return df[front + metric_cols + config_cols]


def save_table(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Write ``stem.csv`` and ``stem.parquet`` (pyarrow; skipped if it is missing); return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".csv")]
    df.to_csv(paths[0], index=False)
    # Parquet needs one type per column; ``method.k`` mixes ints and "epoch".
    mixed = [c for c in df.columns if df[c].dtype == object and df[c].map(type).nunique() > 1]
    df = df.astype({c: str for c in mixed})
    try:
        df.to_parquet(stem.with_suffix(".parquet"), index=False)
        paths.append(stem.with_suffix(".parquet"))
    except ImportError:
        pass
    return paths
