"""The one reader of a run directory's files: ``config.yaml``, ``metrics.jsonl`` and the
sweep runner's ``status.json``. Training, the sweep runner and analysis/ all read through it."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..config import safe_load

#: The statuses of a run directory without ``status.json`` (or whose status.json names none):
#: "done" when its last record reached the configured ``optim.epochs``, else "incomplete".
#: status.json, written by experiments/sweep.py, adds running, failed, interrupted and busy.
DONE, INCOMPLETE = "done", "incomplete"


def _parse_lines(text: str, path: Path) -> list[dict[str, Any]]:
    out, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            out.append(rec)
    if bad:
        warnings.warn(f"{path}: skipped {bad} unreadable line(s) (a write cut short)", stacklevel=3)
    return out


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (torn lines from an interrupted write are skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return _parse_lines(path.read_text(), path)


def dedupe_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (tag, epoch): the last one written, in order of first appearance.
    Training records have no ``tag``; post-hoc evaluations carry theirs, so they never
    replace the training record of their epoch."""
    out: dict[Any, dict[str, Any]] = {}
    for r in records:
        out[(r.get("tag"), r.get("epoch"))] = r
    return list(out.values())


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/status.json`` as a dict; {} when there is none (or it cannot be read, with a warning)."""
    path = Path(run_dir) / "status.json"
    if not path.exists():
        return {}
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        warnings.warn(f"{path}: unreadable ({e}); the run's status is taken from its files", stacklevel=2)
        return {}
    return rec if isinstance(rec, dict) else {}


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/config.yaml`` as saved (nested dict; {} when empty). OSError or yaml.YAMLError
    when it is missing or unreadable."""
    return safe_load((Path(run_dir) / "config.yaml").read_text()) or {}


def run_status(status: dict[str, Any], config: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The status.json's ``status``, else :data:`DONE` or :data:`INCOMPLETE` from the records."""
    if "status" in status:
        return status["status"]
    optim = config.get("optim")
    epochs = optim.get("epochs") if isinstance(optim, dict) else None
    return DONE if records and records[-1].get("epoch") == epochs else INCOMPLETE


@dataclass(frozen=True)
class RunFiles:
    """What a run directory holds, as read by :func:`read_run`."""

    dir: Path
    config: dict[str, Any]  # config.yaml, nested as saved
    status: str  # see run_status
    records: list[dict[str, Any]]  # metrics.jsonl, every readable record in file order


def read_run(run_dir: str | Path) -> RunFiles:
    """A run directory's config, status and records (config errors as :func:`read_config`)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    records = read_metrics(run_dir)
    return RunFiles(run_dir, config, run_status(read_status(run_dir), config, records), records)


def run_dirs(root: str | Path) -> list[Path]:
    """Every directory under ``root`` (itself included) that holds a ``config.yaml``, sorted."""
    return sorted(p.parent for p in Path(root).rglob("config.yaml"))
