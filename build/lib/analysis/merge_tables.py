"""Replace configurations of a saved tidy table by their re-runs.

    python -m analysis.merge_tables TABLE NEWER --labels ema_m0.5 ema_m0.8 [--seeds 0 1] [--study S] [--out FILE]

When a fix changes what some runs measure (issue 10: the EMA bank), those
configurations are re-run and their rows in the checked-in table must be swapped
for the new ones, while the other rows stay as they were. ``NEWER`` is a runs
directory of one study (``runs/x/ema_vs_predictor``), its ``results.csv``, or any
tidy table. A label is a run name without its seed suffix (``ema_m0.8`` for
``ema_m0.8_s0``); ``--seeds`` keeps only those seeds of NEWER (a one-seed
study takes seed 0 of a two-seed re-run). Every row of TABLE with one of the labels is dropped and every
row of NEWER with one of them is added, renamed into TABLE's study (``--study``,
default: the study TABLE's rows carry). The new rows must be complete ("done")
and cover every label, else nothing is written. The result replaces TABLE (or goes
to ``--out``) through a temporary file, so a failed write leaves TABLE intact.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from analysis.results import SEED_SUFFIX, collect, read_table
from analysis.results import run_label as label_of


def load(newer: str | Path) -> pd.DataFrame:
    """A tidy table from a table file or a runs directory."""
    newer = Path(newer)
    if newer.is_dir():
        return collect(newer)
    if not newer.exists():
        raise FileNotFoundError(f"{newer}: no such table or runs directory")
    return read_table(newer)


def seed_of(run: str) -> int | None:
    """``ema_m0.8_s1`` -> 1 (None without a seed suffix)."""
    m = SEED_SUFFIX.search(str(run))
    return int(m.group()[2:]) if m else None


def replace_labels(table: pd.DataFrame, newer: pd.DataFrame, labels: Sequence[str],
                   study: str | None = None, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """``table`` with the rows of ``labels`` taken from ``newer`` (see module docstring)."""
    labels = list(dict.fromkeys(labels))
    if not labels:
        raise ValueError("no labels given")
    if study is None:
        studies = sorted(set(table["study"].dropna().astype(str)))
        if len(studies) != 1:
            raise ValueError(f"the table holds studies {studies}; name the one to write with --study")
        study = studies[0]
    new = newer[newer["run"].map(label_of).isin(labels)].copy()
    if seeds is not None:
        new = new[new["run"].map(seed_of).isin(list(seeds))]
    missing = [lab for lab in labels if lab not in set(new["run"].map(label_of))]
    if missing:
        raise ValueError(f"no rows for {missing} in the newer runs")
    unfinished = sorted(set(new.loc[new["status"] != "done", "run"]))
    if unfinished:
        raise ValueError(f"runs not done in the newer table: {unfinished}")
    new["run"] = [f"{study}/{str(r).split('/')[-1]}" for r in new["run"]]
    new["study"] = study
    kept = table[~table["run"].map(label_of).isin(labels)]
    columns = list(table.columns) + [c for c in new.columns if c not in table.columns]
    merged = pd.concat([kept, new], ignore_index=True)[columns]
    return merged.sort_values(["run", "epoch"], kind="stable").reset_index(drop=True)


def write_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write a ``.csv`` (or ``.parquet``) table through a temporary file in the same folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", help="the saved tidy table to update (.csv or .parquet)")
    ap.add_argument("newer", help="the re-runs: a runs directory of one study, or a tidy table")
    ap.add_argument("--labels", nargs="+", required=True, help="run names without _s<seed> to replace")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="keep only these seeds of NEWER")
    ap.add_argument("--study", default=None, help="study name for the new rows (default: the table's)")
    ap.add_argument("--out", default=None, help="write here instead of replacing TABLE")
    args = ap.parse_args(argv)
    table_path = Path(args.table)
    try:
        merged = replace_labels(read_table(table_path), load(args.newer), args.labels, args.study, args.seeds)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"merge_tables: {e}") from None
    out = Path(args.out) if args.out else table_path
    write_atomic(merged, out)
    print(f"{out}: {len(merged)} rows ({sum(merged['run'].map(label_of).isin(args.labels))} replaced)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
