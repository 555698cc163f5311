"""A study (named runs over seeds) expanded into run specs, each planned from its run directory's files.

:func:`plan` decides skip / busy / resume / run from the metrics, the lock and the checkpoint;
:func:`reconcile` makes ``status.json`` agree with them (docs/sweep.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from emsiam.config import ConfigError, load_config
from emsiam.variants import check_config
from emsiam.runs import CKPT, lock_holder, read_metrics, read_status


@dataclass
class Study:
    """A named, ordered set of runs: ``runs`` maps a label to its overrides.

    ``epochs_factor`` multiplies ``optim.epochs`` for some labels (e.g. 2 for a run
    that should see twice the steps of the others)."""

    name: str
    doc: str
    runs: dict[str, list[str]]
    epochs_factor: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        safe = [safe_label(k) for k in self.runs]
        if len(set(safe)) != len(safe):
            raise ValueError(f"study {self.name}: labels clash once made filesystem-safe: {safe}")
        unknown = set(self.epochs_factor) - set(self.runs)
        if unknown:
            raise ValueError(f"study {self.name}: epochs_factor for unknown labels {sorted(unknown)}")


def safe_label(label: str) -> str:
    """``"ema m=0.8"`` -> ``"ema_m0.8"``: letters, digits, ``.``, ``-`` and ``_`` only."""
    s = label.strip().replace("=", "")
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_.")
    if not s:
        raise ValueError(f"label {label!r} has no filesystem-safe characters")
    return s


@dataclass
class RunSpec:
    """One (label, seed) of a study, with everything the child needs."""

    study: str
    label: str
    seed: int
    name: str  # directory name: <safe label>_s<seed>
    run_dir: Path
    preset: str
    overrides: list[str]  # full list given to the child (without resume=true)
    epochs: int | None = None  # resolved optim.epochs (None if the config is invalid)
    action: str = "run"  # run | resume | skip | busy | invalid
    reason: str = ""

    @property
    def rel(self) -> str:
        return f"{self.study}/{self.name}"

    def command(self, nproc: int = 1) -> list[str]:
        """``python -m emsiam train ...``; under ``torchrun`` (one node, ``nproc`` processes) when nproc > 1."""
        extra = ["resume=true"] if self.action == "resume" else []
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                  "-m", "emsiam"] if nproc > 1 else [sys.executable, "-m", "emsiam"]
        return [*launch, "train", "--config", self.preset, *self.overrides, *extra]


def expand(study: Study, *, preset: str = "cpu", seeds: int | Sequence[int] = 1, out: str | Path = "runs",
           data: Sequence[str] = (), extra: Sequence[str] = (), epochs: int | None = None) -> list[RunSpec]:
    """The runs of ``study`` x ``seeds`` (an int N means seeds 0..N-1), planned (see :func:`plan`).

    Override order: data, the study's, ``extra`` (``--set``), then the runner's own
    (``optim.epochs``, ``out_dir``, ``name``, ``seed``, ``progress=false``)."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    study_dir = Path(out).resolve() / study.name
    specs = []
    for label, over in study.runs.items():
        base = [*data, *over, *extra]
        factor = study.epochs_factor.get(label, 1)
        for seed in seed_list:
            name = f"{safe_label(label)}_s{seed}"
            ident = [f"out_dir={study_dir}", f"name={name}", f"seed={seed}", "progress=false"]
            spec = RunSpec(study.name, label, seed, name, study_dir / name, preset, base + ident)
            try:
                e = epochs if epochs is not None else load_config(preset, base).optim.epochs
                if epochs is not None or factor != 1:
                    spec.overrides = base + [f"optim.epochs={e * factor}"] + ident
                cfg = load_config(preset, spec.overrides)  # validates, no compute
                check_config(cfg)  # keys the chosen variant does not read (method.k with simsiam ...)
                spec.epochs = cfg.optim.epochs
            except ConfigError as err:
                spec.action, spec.reason = "invalid", f"config error: {err}"
            specs.append(plan(spec))
    return specs


def reaches_last_epoch(spec: RunSpec, recs: list[dict]) -> bool:
    return bool(recs) and recs[-1].get("epoch") == spec.epochs


def plan(spec: RunSpec) -> RunSpec:
    """Decide what to do with a run directory from its files (not from ``status.json`` alone):
    skip (metrics reach the last epoch), busy (a live process holds its lock), resume
    (a checkpoint, or a saved config without one: restarted from scratch), run (or keep
    ``invalid``)."""
    if spec.action == "invalid":
        return spec
    status = read_status(spec.run_dir).get("status")
    recs = read_metrics(spec.run_dir)
    holder = lock_holder(spec.run_dir)
    if reaches_last_epoch(spec, recs):
        spec.action, spec.reason = "skip", f"metrics reach epoch {spec.epochs}"
    elif holder is not None:
        spec.action, spec.reason = "busy", f"in use by pid {holder.get('pid')} on {holder.get('host')}"
    elif (spec.run_dir / CKPT).exists():
        spec.action, spec.reason = "resume", f"checkpoint at epoch {recs[-1].get('epoch') if recs else '?'}"
    elif (spec.run_dir / "config.yaml").exists():
        spec.action, spec.reason = "resume", "restart from scratch: stopped before its first checkpoint"
    else:
        spec.action, spec.reason = "run", {"failed": "retry after failure", "interrupted": "restart after interruption",
                                           "running": "restart after interruption"}.get(status or "", "new")
    if status == "running" and holder is None and spec.action != "skip":
        spec.reason += " (status said running, but no live process holds the run)"
    return spec


def reconcile(spec: RunSpec) -> None:
    """Make ``status.json`` say what the run's files say: ``running`` without a live lock holder
    becomes ``interrupted``; a run whose metrics reach the last epoch is ``done``."""
    record = read_status(spec.run_dir)
    if not record or spec.action in ("invalid", "busy"):
        return
    if spec.action == "skip" and record.get("status") != "done":
        record.update(status="done", error=None,
                      note=f"status was {record.get('status')!r}; the metrics reach epoch {spec.epochs}")
        write_status(spec.run_dir, record)
    elif spec.action != "skip" and record.get("status") == "running":
        record.update(status="interrupted", finished=record.get("finished") or now(),
                      error="the run stopped without recording an end (no live process holds its lock)")
        write_status(spec.run_dir, record)


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_status(run_dir: Path, record: dict) -> None:
    """``run_dir/status.json``, atomically (temporary file + ``os.replace``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "status.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, run_dir / "status.json")
