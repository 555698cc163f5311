"""One tidy table from run directories: a row per (run, evaluation record).

:func:`collect` walks a tree of run directories (read by :func:`emsiam.runs.read_run`) and
returns a pandas DataFrame with

* ``run``: the run directory relative to the root (e.g. ``kstep_sweep/k10_s0``);
* ``study``: its first path component ("" for a run directly under the root);
* ``status``: :func:`emsiam.runs.run_status` (status.json, else "done" or "incomplete");
* ``epoch``, ``step`` and every metric of the record (``eval/knn_top1``,
  ``collapse/z_std_sqrt_d``, ``gap/cos_h_E``, ``bank/staleness_cos``, ...);
* every config field, flattened with dotted names (``method.k``, ``optim.epochs``).

Only records with an evaluation (``eval/knn_top1``) become rows, one per
(run, epoch): if an epoch was logged twice (a run resumed after a crash) the
last record wins. Runs that failed before their first evaluation still get one
row so failures show up.

:func:`restore_runs` goes the other way: from a saved table back to run
directories holding its evaluation records, so that the report and its figures
can be rebuilt when only the table was kept (``python -m analysis.report
--from-table``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from emsiam.config import flatten
from emsiam.runs import read_run, run_dirs

#: A run name ends in its seed (``k10_s0``); without it, the name is the configuration's label.
SEED_SUFFIX = re.compile(r"_s\d+$")


def run_label(run: str) -> str:
    """``kstep_sweep/k10_s1`` -> ``k10``: the configuration a run belongs to."""
    return SEED_SUFFIX.sub("", str(run).split("/")[-1])


#: Columns every table has, in this order, before metrics and config fields.
ID_COLUMNS = ("run", "study", "status", "epoch", "step")


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A nested config as one level of dotted keys; a list becomes its JSON text (hashable, one cell)."""
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(config).items()}


def table_rows(run_dir: Path, root: Path) -> list[dict[str, Any]]:
    """Rows of one run (see module docstring)."""
    run = read_run(run_dir)
    cfg = flat_config(run.config)
    rel = run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name
    ident = {"run": rel, "study": rel.split("/")[0] if "/" in rel else "", "status": run.status}
    evals = list({r.get("epoch"): r for r in run.records if "eval/knn_top1" in r}.values())  # last record per epoch
    if not evals:
        evals = [{"epoch": None, "step": None}]
    return [{**ident, **r, **cfg} for r in evals]


def collect(root: str | Path) -> pd.DataFrame:
    """The tidy table of every run under ``root`` (empty DataFrame with the id columns if none)."""
    root = Path(root)
    rows = [row for d in run_dirs(root) for row in table_rows(d, root)]
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


# ---------------------------------------------------------------------------------------
# The way back: run directories from a saved tidy table
# ---------------------------------------------------------------------------------------

#: Columns of a table that are neither metrics (names with "/") nor config fields
#: (``label`` is added by experiments.sweep).
TABLE_ID_COLUMNS = ("run", "study", "status", "label", "epoch", "step")


def read_table(path: str | Path) -> pd.DataFrame:
    """A tidy table saved by :func:`save_table` (``.csv`` or ``.parquet``)."""
    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _config_types() -> dict[str, Any]:
    """{dotted config key: its type annotation} of today's :class:`emsiam.config.Config`."""
    import dataclasses
    import typing

    from emsiam.config import Config

    def walk(cls: type, prefix: str) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                out.update(walk(tp, f"{prefix}{f.name}."))
            else:
                out[f"{prefix}{f.name}"] = tp
        return out

    return walk(Config, "")


def _base_types(tp: Any) -> set[type]:
    """The plain types a config annotation admits (``int | str`` -> {int, str}; Literal -> its values' types)."""
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return {type(a) for a in args}
    if origin is list:
        return {list}
    if args:
        return set().union(*(_base_types(a) for a in args))
    return {tp} if isinstance(tp, type) else set()


def _cell(value: Any, tp: Any = None) -> Any:
    """A table cell back as the YAML value a config.yaml held: numpy scalars as Python ones;
    by the field's type, "10" -> 10 (``method.k`` mixes ints and "epoch"), 1.0 -> 1 (an int
    column with empty cells reads as floats), "True" -> True, "[32, 64]" -> [32, 64]."""
    if hasattr(value, "item"):
        value = value.item()
    allowed = _base_types(tp) if tp is not None else set()
    if isinstance(value, str):
        if list in allowed and value.startswith("["):
            return json.loads(value)
        if bool in allowed and value in ("True", "False", "true", "false"):
            return value.lower() == "true"
        if int in allowed and re.fullmatch(r"-?\d+", value):
            return int(value)
        if float in allowed:
            try:
                return float(value)
            except ValueError:
                pass
        return value
    if isinstance(value, float) and value.is_integer() and (int in allowed or not allowed) and float not in allowed:
        return int(value)
    return value


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def restore_runs(df: pd.DataFrame, root: str | Path, study: str = "") -> list[Path]:
    """Write back the run directories a tidy table came from, as far as the table holds them.

    One directory per distinct ``run`` under ``root`` (a run named without a study, as from
    a flat root, goes under ``root/study``), each with

    * ``config.yaml``: the config columns; an empty cell is left out, so it reads as today's
      default, exactly as a config.yaml written before that field existed does (a field
      that was explicitly null reads as its default too); values are retyped by the field's
      type in :class:`emsiam.config.Config`;
    * ``metrics.jsonl``: one record per row (``epoch``, ``step`` and the row's metrics),
      i.e. the evaluation records only: metrics logged between evaluations are not in a
      table; empty for a run with no evaluation (it is then skipped, like a run without
      metrics);
    * ``status.json``: the ``status`` column.

    Returns the run directories written."""
    root = Path(root)
    types = _config_types()
    metric_cols = [c for c in df.columns if "/" in c]
    config_cols = [c for c in df.columns if c not in TABLE_ID_COLUMNS and c not in metric_cols]
    out = []
    for run, rows in df.groupby("run", sort=True):
        rel = run if "/" in run or not study else f"{study}/{run}"
        d = root / rel
        d.mkdir(parents=True, exist_ok=False)
        cfg: dict[str, Any] = {}
        for c in config_cols:
            values = rows[c].dropna()
            if len(values):
                _set_dotted(cfg, c, _cell(values.iloc[0], types.get(c)))
        (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True))
        records = []
        for _, row in rows.sort_values("epoch", na_position="first").iterrows():
            if pd.isna(row.get("epoch")):
                continue
            step = None if pd.isna(row.get("step")) else _cell(row["step"], int)
            rec = {"epoch": _cell(row["epoch"], int), "step": step}
            rec.update({c: _cell(row[c]) for c in metric_cols if not pd.isna(row[c])})
            records.append(rec)
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        status = rows["status"].dropna() if "status" in rows else []
        if len(status):
            (d / "status.json").write_text(json.dumps({"status": str(status.iloc[0])}))
        out.append(d)
    return out
