"""Run planned studies on a pool of workers: one status record per run, a table and a summary per study."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from analysis.results import collect, save_table
from emsiam.runs import lock_holder, read_metrics, read_status

from .archive import archive_run, restore
from .executors import Executor, cpu_count, stop_children, stop_requested, subprocess_executor
from .study import RunSpec, Study, expand, now, reaches_last_epoch, reconcile, write_status

#: Exit status of an interrupted sweep (as a shell reports Ctrl-C).
EXIT_INTERRUPTED = 130
#: Exit status of ``emsiam train`` refused by a live writer's lock on the run directory.
EXIT_LOCKED = 9
#: The orders in which a sweep can start its runs (``run_studies(order=...)``, ``--order``).
ORDERS = ("label", "seed")
#: Child return codes that mean "stopped from outside", not "failed".
INTERRUPT_RCS = {130, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGTERM}


def execute(spec: RunSpec, executor: Executor = subprocess_executor, threads: int | None = None) -> dict:
    """Run one planned run (or record its config error), keeping ``status.json`` up to date.
    Never raises: every failure ends up as ``status: failed`` with its error."""
    record = {"status": "running", "study": spec.study, "label": spec.label, "seed": spec.seed,
              "run": spec.rel, "preset": spec.preset, "overrides": spec.overrides,
              "resumed": spec.action == "resume", "command": " ".join(spec.command()),
              "started": now(), "finished": None, "wall_s": None, "returncode": None, "error": None}
    t0 = time.monotonic()
    if spec.action == "invalid":
        record.update(status="failed", error=spec.reason, finished=now(), wall_s=0.0)
        write_status(spec.run_dir, record)
        return record
    holder = lock_holder(spec.run_dir)  # again: a queued run may have been started elsewhere since planning
    if holder is not None:
        spec.action, spec.reason = "busy", f"in use by pid {holder.get('pid')} on {holder.get('host')}"
        record.update(status="busy", error=spec.reason, finished=now(), wall_s=0.0)
        return record  # status.json belongs to whoever runs it
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    metrics = spec.run_dir / "metrics.jsonl"
    if spec.action == "run" and metrics.exists():  # metrics but no config: start anew
        os.replace(metrics, spec.run_dir / f"metrics.jsonl.stale-{int(time.time())}")
    write_status(spec.run_dir, record)
    try:
        rc, err = executor(spec, threads)
    except Exception as e:  # noqa: BLE001 - the runner must survive anything a run does
        rc, err = -1, f"{type(e).__name__}: {e}"
    recs = read_metrics(spec.run_dir)
    finished = reaches_last_epoch(spec, recs)
    if finished and rc == 0:
        status = "done"
    elif rc == EXIT_LOCKED:  # another process started it meanwhile and holds its lock
        status = "busy"
    elif stop_requested.is_set() or rc in INTERRUPT_RCS:
        status = "interrupted"
    else:
        status = "failed"
        if rc == 0:
            err = (err + "\n" if err else "") + (
                f"exited 0 but metrics end at epoch {recs[-1].get('epoch') if recs else None}, not {spec.epochs}")
    record.update(status=status, returncode=rc, error=None if status == "done" else err, finished=now(),
                  wall_s=round(time.monotonic() - t0, 2))
    write_status(spec.run_dir, record)
    return record


@dataclass
class SweepResult:
    specs: list[RunSpec]
    records: dict[str, dict]  # run (study/name) -> status record, for runs executed now
    table: pd.DataFrame | None = None
    table_paths: list[Path] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM

    def count(self, what: str) -> int:
        if what == "skipped":
            return sum(s.action == "skip" for s in self.specs)
        if what == "busy":  # found busy when planned, or when its turn came
            return sum(s.action == "busy" or self.records.get(s.rel, {}).get("status") == "busy" for s in self.specs)
        return sum(r["status"] == what for r in self.records.values())


def run_study(study: Study, *, preset: str = "cpu", seeds: int | Sequence[int] = 1, out: str | Path = "runs",
              data: Sequence[str] = (), extra: Sequence[str] = (), epochs: int | None = None,
              workers: int = 1, dry_run: bool = False, executor: Executor = subprocess_executor,
              quiet: bool = False, archive: str | Path | None = None, order: str = "label") -> SweepResult:
    """Expand, run what is not done (``workers`` at a time), write the table, print a summary."""
    return run_studies([study], preset=preset, seeds=seeds, out=out, data=data, extra=extra, epochs=epochs,
                       workers=workers, dry_run=dry_run, executor=executor, quiet=quiet, archive=archive,
                       order=order)[0]


def run_studies(studies: Sequence[Study], *, preset: str = "cpu", seeds: int | Sequence[int] = 1,
                out: str | Path = "runs", data: Sequence[str] = (), extra: Sequence[str] = (),
                epochs: int | None = None, workers: int = 1, dry_run: bool = False,
                executor: Executor = subprocess_executor, quiet: bool = False,
                archive: str | Path | None = None, order: str = "label") -> list[SweepResult]:
    """:func:`run_study` for several studies sharing one pool of ``workers``, so that no
    worker idles at a study boundary; one table and summary per study.

    With ``archive``, finished runs are kept in ``archive/<study>/<run>`` without checkpoints
    or banks (:mod:`.archive`): archived runs missing from ``out`` are restored first (and then
    skipped as done), and each run is archived as soon as it finishes.

    ``order``: ``label`` starts the runs label by label (every seed of the first label first),
    ``seed`` seed by seed (every label of seed 0 first), so that complete pairs over seeds
    arrive as early as possible while no worker waits at a seed boundary."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    say = (lambda *a: None) if quiet else print  # noqa: E731
    if archive is not None and not dry_run:
        for st in studies:
            restore(Path(archive) / st.name, Path(out) / st.name, say)
    expanded = [(st, expand(st, preset=preset, seeds=seeds, out=out, data=data, extra=extra, epochs=epochs))
                for st in studies]
    if dry_run:
        for study, specs in expanded:
            say(f"study {study.name}: {len(specs)} runs under {Path(out) / study.name} (preset {preset})")
            for s in sorted(specs, key=lambda s: s.seed) if order == "seed" else specs:  # in starting order
                mine = [o for o in s.overrides if not o.startswith(("out_dir=", "name=", "progress="))]
                if archive is not None and not s.run_dir.exists() and (Path(archive) / s.rel).is_dir():
                    s.action, s.reason = "skip", f"archived in {Path(archive) / s.rel}: would be restored"
                say(f"  {s.name:28s} {s.action:7s} {s.reason if s.action != 'run' else ''}\n      {' '.join(mine)}")
        return [SweepResult(specs, {}) for _, specs in expanded]

    for _, specs in expanded:
        for s in specs:
            reconcile(s)

    def keep(spec: RunSpec) -> None:
        if archive is None:
            return
        try:
            left_out = archive_run(spec.run_dir, Path(archive) / spec.rel)
        except OSError as e:  # the run itself is fine; its copy can be made by the next invocation
            say(f"  archive of {spec.rel} failed: {e}")
            return
        if left_out:
            say(f"  archive of {spec.rel} leaves out large files: {', '.join(left_out)}")

    for s in (s for _, specs in expanded for s in specs if s.action == "skip"):
        if archive is not None and not (Path(archive) / s.rel).is_dir():
            keep(s)  # finished by an invocation without the archive
    todo = [s for _, specs in expanded for s in specs if s.action not in ("skip", "busy")]
    if order == "seed":
        todo.sort(key=lambda s: s.seed)  # stable: label order within a seed
    total = sum(len(specs) for _, specs in expanded)
    threads = max(1, cpu_count() // workers) if workers > 1 else None
    names = ", ".join(st.name for st in studies)
    say(f"study {names}: {len(todo)} to run, {total - len(todo)} already done"
        + (f"; {workers} workers x {threads} threads" if threads else ""))
    records: dict[str, dict] = {}
    lock = threading.Lock()

    for s in (s for _, specs in expanded for s in specs if s.action == "busy"):
        say(f"  busy {s.rel}: {s.reason}; left alone")

    def one(spec: RunSpec) -> dict | None:
        if stop_requested.is_set():
            return None
        with lock:
            say(f"  start {spec.rel} ({spec.action}{': ' + spec.reason if spec.reason else ''})")
        return execute(spec, executor, threads)

    stop_requested.clear()
    with _stop_on_signals(say):
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending = {pool.submit(one, s): s for s in todo}
            i = 0
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                if stop_requested.is_set():
                    for fut in pending:
                        fut.cancel()
                for fut in done:
                    spec = pending.pop(fut)
                    rec = None if fut.cancelled() else fut.result()
                    if rec is None:
                        continue
                    i += 1
                    records[spec.rel] = rec
                    if rec["status"] == "done":
                        keep(spec)
                    with lock:
                        first = (rec["error"] or "").strip().splitlines()[-1:] if rec["status"] == "failed" else []
                        say(f"  [{i}/{len(todo)}] {spec.rel} {rec['status']} in {rec['wall_s']:.0f} s"
                            + (f": {first[0]}" if first else ""))
    interrupted = stop_requested.is_set()

    results = []
    for study, specs in expanded:
        result = SweepResult(specs, {s.rel: records[s.rel] for s in specs if s.rel in records},
                             interrupted=interrupted)
        result.table = study_table(study, specs, out)
        result.table_paths = save_table(result.table, Path(out) / study.name / "results")
        failed = [s for s in specs if read_status(s.run_dir).get("status") == "failed"]
        say(f"study {study.name}: {result.count('done')} done, {result.count('failed')} failed, "
            + (f"{result.count('interrupted')} interrupted, " if interrupted else "")
            + (f"{result.count('busy')} busy, " if result.count("busy") else "")
            + f"{result.count('skipped')} skipped; table: {', '.join(map(str, result.table_paths))}")
        for s in failed:
            say(f"  FAILED {s.rel}: see {s.run_dir / 'status.json'} and log.txt")
        results.append(result)
    if interrupted:
        say("interrupted: the runs above marked interrupted resume when the same command is run again")
    return results


class _stop_on_signals:
    """While active (main thread only): SIGINT and SIGTERM set the stop flag and stop the children."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say: Callable[..., None]):
        self.say, self.previous = say, {}

    def _handler(self, signum, frame) -> None:  # noqa: ARG002
        if not stop_requested.is_set():
            try:  # printing inside a handler can collide with a print it interrupted
                self.say(f"\n{signal.Signals(signum).name}: stopping the sweep (running runs get SIGTERM)")
            except RuntimeError:
                pass
        stop_requested.set()  # before stop_children takes the lock: a child starting now is stopped or never starts
        stop_children()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


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
