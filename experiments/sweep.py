"""Run a study (a named set of configurations) over seeds, resumably, one subprocess per run.

    python -m experiments.kstep_sweep --preset cpu --seeds 2 --workers 1 \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz
    python -m experiments.sweep kstep_sweep --dry-run        # same, by study name

Every study script (``experiments/<study>.py``) defines a :class:`Study` and calls
:func:`main`. Shared flags: ``--preset`` (default ``cpu``), ``--seeds N`` (seeds
0..N-1), ``--data ...`` (data overrides), ``--epochs`` (``optim.epochs`` of every
run, times the study's per-run factor), ``--out`` (default ``runs``), ``--workers``,
``--dry-run`` (print the runs and what would happen, validate their configs, write
nothing) and ``--set ...`` (overrides for every run; they win over the study's).

Layout: ``OUT/<study>/<label>_s<seed>/`` is an ordinary run directory
(:mod:`emsiam.runs`) plus

* ``status.json``: ``status`` (running | done | failed), ``error`` (last lines of the
  child's stderr), ``overrides``, ``command``, ``returncode``, ``wall_s``, ``started``,
  ``finished`` (ISO times), ``resumed``; written atomically. The training code only
  refuses a directory holding a checkpoint or metrics, so these files may sit there
  from the start, and :func:`analysis.results.read_status` finds them.
* ``log.txt``: the child's stdout and stderr (appended on every attempt).

A second invocation skips runs whose status is ``done`` (or whose metrics already
reach ``optim.epochs``), resumes (``resume=true``) runs with a checkpoint but no
``done`` status, and retries failed runs. A failing run never stops the others.
Changing a run's settings (``--epochs``, ``--data``, ...) for a directory that already
holds a run makes that run fail with the config diff; use another ``--out``.

At the end the tidy table ``OUT/<study>/results.{csv,parquet}`` is written
(:mod:`analysis.results`; one row per (run, eval record), plus a ``label`` column
and one row for each run that failed before writing a config) and a summary is printed.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import importlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from analysis.results import collect, read_status, save_table
from emsiam.config import ConfigError, load_config
from emsiam.runs import CKPT, read_metrics

#: Lines of the child's stderr kept in ``status.json["error"]``.
ERROR_LINES = 20


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
    action: str = "run"  # run | resume | skip | invalid
    reason: str = ""

    @property
    def rel(self) -> str:
        return f"{self.study}/{self.name}"

    def command(self) -> list[str]:
        extra = ["resume=true"] if self.action == "resume" else []
        return [sys.executable, "-m", "emsiam", "train", "--config", self.preset, *self.overrides, *extra]


# --------------------------------------------------------------------------
# expansion and planning


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
                spec.epochs = load_config(preset, spec.overrides).optim.epochs  # validates, no compute
            except ConfigError as err:
                spec.action, spec.reason = "invalid", f"config error: {err}"
            specs.append(plan(spec))
    return specs


def plan(spec: RunSpec) -> RunSpec:
    """Decide what to do with a run directory: run, resume, skip (or keep ``invalid``)."""
    if spec.action == "invalid":
        return spec
    status = read_status(spec.run_dir)
    recs = read_metrics(spec.run_dir)
    if status.get("status") == "done":
        spec.action, spec.reason = "skip", "status done"
    elif recs and recs[-1].get("epoch") == spec.epochs:
        spec.action, spec.reason = "skip", f"metrics reach epoch {spec.epochs}"
    elif (spec.run_dir / CKPT).exists():
        spec.action, spec.reason = "resume", f"checkpoint at epoch {recs[-1].get('epoch') if recs else '?'}"
    else:
        spec.action, spec.reason = "run", ("retry after failure" if status.get("status") == "failed" else "new")
    return spec


# --------------------------------------------------------------------------
# execution


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_status(run_dir: Path, record: dict) -> None:
    """``run_dir/status.json``, atomically (temporary file + ``os.replace``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "status.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, run_dir / "status.json")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def subprocess_executor(spec: RunSpec, threads: int | None) -> tuple[int, str]:
    """Run ``python -m emsiam train ...`` for ``spec``; stdout and stderr are appended to
    ``run_dir/log.txt``. Returns (return code, last lines of stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    tail: collections.deque[str] = collections.deque(maxlen=ERROR_LINES)
    cmd = spec.command()
    with open(spec.run_dir / "log.txt", "a") as log:
        log.write(f"==== {_now()} {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            log.flush()
            tail.append(line.rstrip("\n"))
        rc = proc.wait()
    return rc, "\n".join(tail)


Executor = Callable[[RunSpec, "int | None"], "tuple[int, str]"]


def execute(spec: RunSpec, executor: Executor = subprocess_executor, threads: int | None = None) -> dict:
    """Run one planned run (or record its config error), keeping ``status.json`` up to date.
    Never raises: every failure ends up as ``status: failed`` with its error."""
    record = {"status": "running", "study": spec.study, "label": spec.label, "seed": spec.seed,
              "run": spec.rel, "preset": spec.preset, "overrides": spec.overrides,
              "resumed": spec.action == "resume", "command": " ".join(spec.command()),
              "started": _now(), "finished": None, "wall_s": None, "returncode": None, "error": None}
    t0 = time.monotonic()
    if spec.action == "invalid":
        record.update(status="failed", error=spec.reason, finished=_now(), wall_s=0.0)
        write_status(spec.run_dir, record)
        return record
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    metrics = spec.run_dir / "metrics.jsonl"
    if spec.action == "run" and metrics.exists():  # died before its first checkpoint: start anew
        os.replace(metrics, spec.run_dir / f"metrics.jsonl.stale-{int(time.time())}")
    write_status(spec.run_dir, record)
    try:
        rc, err = executor(spec, threads)
    except Exception as e:  # noqa: BLE001 - the runner must survive anything a run does
        rc, err = -1, f"{type(e).__name__}: {e}"
    recs = read_metrics(spec.run_dir)
    finished = bool(recs) and recs[-1].get("epoch") == spec.epochs
    if rc == 0 and not finished:
        err = (err + "\n" if err else "") + (
            f"exited 0 but metrics end at epoch {recs[-1].get('epoch') if recs else None}, not {spec.epochs}")
    record.update(status="done" if rc == 0 and finished else "failed", returncode=rc,
                  error=None if rc == 0 and finished else err, finished=_now(),
                  wall_s=round(time.monotonic() - t0, 2))
    write_status(spec.run_dir, record)
    return record


@dataclass
class SweepResult:
    specs: list[RunSpec]
    records: dict[str, dict]  # run (study/name) -> status record, for runs executed now
    table: pd.DataFrame | None = None
    table_paths: list[Path] = field(default_factory=list)

    def count(self, what: str) -> int:
        if what == "skipped":
            return sum(s.action == "skip" for s in self.specs)
        return sum(r["status"] == what for r in self.records.values())


def run_study(study: Study, *, preset: str = "cpu", seeds: int | Sequence[int] = 1, out: str | Path = "runs",
              data: Sequence[str] = (), extra: Sequence[str] = (), epochs: int | None = None,
              workers: int = 1, dry_run: bool = False, executor: Executor = subprocess_executor,
              quiet: bool = False) -> SweepResult:
    """Expand, run what is not done (``workers`` at a time), write the table, print a summary."""
    return run_studies([study], preset=preset, seeds=seeds, out=out, data=data, extra=extra, epochs=epochs,
                       workers=workers, dry_run=dry_run, executor=executor, quiet=quiet)[0]


def run_studies(studies: Sequence[Study], *, preset: str = "cpu", seeds: int | Sequence[int] = 1,
                out: str | Path = "runs", data: Sequence[str] = (), extra: Sequence[str] = (),
                epochs: int | None = None, workers: int = 1, dry_run: bool = False,
                executor: Executor = subprocess_executor, quiet: bool = False) -> list[SweepResult]:
    """:func:`run_study` for several studies sharing one pool of ``workers``, so that no
    worker idles at a study boundary; one table and summary per study."""
    say = (lambda *a: None) if quiet else print  # noqa: E731
    expanded = [(st, expand(st, preset=preset, seeds=seeds, out=out, data=data, extra=extra, epochs=epochs))
                for st in studies]
    if dry_run:
        for study, specs in expanded:
            say(f"study {study.name}: {len(specs)} runs under {Path(out) / study.name} (preset {preset})")
            for s in specs:
                mine = [o for o in s.overrides if not o.startswith(("out_dir=", "name=", "progress="))]
                say(f"  {s.name:28s} {s.action:7s} {s.reason if s.action != 'run' else ''}\n      {' '.join(mine)}")
        return [SweepResult(specs, {}) for _, specs in expanded]

    todo = [s for _, specs in expanded for s in specs if s.action != "skip"]
    total = sum(len(specs) for _, specs in expanded)
    threads = max(1, cpu_count() // workers) if workers > 1 else None
    names = ", ".join(st.name for st in studies)
    say(f"study {names}: {len(todo)} to run, {total - len(todo)} already done"
        + (f"; {workers} workers x {threads} threads" if threads else ""))
    records: dict[str, dict] = {}
    lock = threading.Lock()

    def one(spec: RunSpec) -> dict:
        with lock:
            say(f"  start {spec.rel} ({spec.action}{': ' + spec.reason if spec.reason else ''})")
        return execute(spec, executor, threads)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(one, s): s for s in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            spec, rec = futures[fut], fut.result()
            records[spec.rel] = rec
            with lock:
                first = (rec["error"] or "").strip().splitlines()[-1:] if rec["status"] == "failed" else []
                say(f"  [{i}/{len(todo)}] {spec.rel} {rec['status']} in {rec['wall_s']:.0f} s"
                    + (f": {first[0]}" if first else ""))

    results = []
    for study, specs in expanded:
        result = SweepResult(specs, {s.rel: records[s.rel] for s in specs if s.rel in records})
        result.table = study_table(study, specs, out)
        result.table_paths = save_table(result.table, Path(out) / study.name / "results")
        failed = [s for s in specs if read_status(s.run_dir).get("status") == "failed"]
        say(f"study {study.name}: {result.count('done')} done, {result.count('failed')} failed, "
            f"{result.count('skipped')} skipped; table: {', '.join(map(str, result.table_paths))}")
        for s in failed:
            say(f"  FAILED {s.rel}: see {s.run_dir / 'status.json'} and log.txt")
        results.append(result)
    return results


def study_table(study: Study, specs: Sequence[RunSpec], out: str | Path) -> pd.DataFrame:
    """The tidy table of the study's runs (analysis.results.collect over ``out``, this study
    only), with a ``label`` column and a row for each failed run that wrote no config."""
    df = collect(out)
    df = df[df["study"] == study.name].reset_index(drop=True) if len(df) else df
    labels = {s.rel: s.label for s in specs}
    missing = [s for s in specs if s.rel not in set(df["run"]) and read_status(s.run_dir)]
    if missing:
        extra = pd.DataFrame([{"run": s.rel, "study": s.study, "status": read_status(s.run_dir).get("status"),
                               "epoch": None, "step": None, "seed": s.seed} for s in missing])
        df = pd.concat([df, extra], ignore_index=True) if len(df) else extra
    df.insert(min(2, len(df.columns)), "label", df["run"].map(labels))
    return df


# --------------------------------------------------------------------------
# command line


def parser(study: Study | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=f"python -m experiments.{study.name}" if study else "python -m experiments.sweep",
        description=study.doc if study else __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    return ap


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """The flags every study script accepts (also used by ``su_dynamics``, which ignores most)."""
    ap.add_argument("--preset", default="cpu", help="preset or YAML file (cpu, demo, gpu-cifar)")
    ap.add_argument("--seeds", type=int, default=1, help="number of seeds: 0..N-1")
    ap.add_argument("--data", nargs="*", default=[], metavar="KEY=VALUE",
                    help="data overrides, e.g. data.source=imagefolder data.root=PATH")
    ap.add_argument("--epochs", type=int, default=None, help="optim.epochs of every run (default: the preset's)")
    ap.add_argument("--out", default="runs", help="root of the run directories (default: runs)")
    ap.add_argument("--workers", type=int, default=1, help="runs in parallel (threads split between them)")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and exit; nothing is written")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="set",
                    help="overrides for every run (win over the study's)")


def study_main(study: Study, argv: Sequence[str] | None = None) -> int:
    """Entry point of a study script's ``main()``; exit status 1 if any run failed."""
    args = parser(study).parse_args(argv)
    if args.workers < 1 or args.seeds < 1:
        raise SystemExit("--workers and --seeds must be >= 1")
    res = run_study(study, preset=args.preset, seeds=args.seeds, out=args.out, data=args.data, extra=args.set,
                    epochs=args.epochs, workers=args.workers, dry_run=args.dry_run)
    return 1 if res.count("failed") else 0


#: The study modules under ``experiments/``.
STUDIES = ("kstep_sweep", "ema_vs_predictor", "predictor_ablation", "stopgrad", "symmetry", "mean_input")


def load_study(name: str) -> Study:
    return importlib.import_module(f"experiments.{name}").STUDY


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.sweep STUDY [flags]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STUDIES:
        print(f"usage: python -m experiments.sweep STUDY [flags]; STUDY is one of {', '.join(STUDIES)}",
              file=sys.stderr)
        return 2
    return study_main(load_study(argv[0]), argv[1:])


if __name__ == "__main__":
    sys.exit(main())
