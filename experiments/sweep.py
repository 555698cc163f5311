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

* ``status.json``: ``status`` (running | done | failed | interrupted | busy), ``error`` (last lines of the
  child's stderr), ``overrides``, ``command``, ``returncode``, ``wall_s``, ``started``,
  ``finished`` (ISO times), ``resumed``; written atomically. The training code only
  refuses a directory holding a checkpoint or metrics, so these files may sit there
  from the start, and :func:`analysis.results.read_status` finds them.
* ``log.txt``: the child's stdout and stderr (appended on every attempt).

A second invocation skips runs whose metrics reach ``optim.epochs``, resumes
(``resume=true``) runs with a checkpoint, restarts from scratch runs that stopped
before their first checkpoint (``resume=true`` on a run without checkpoint; the
saved config is still compared), and retries failed runs. A failing run never
stops the others. ``status.json`` is made to agree with the run's files first: a
``running`` status whose run no longer holds its directory's lock (the runner was
killed) becomes ``interrupted``; a run whose lock is held by a live process is left
alone (``busy``).

Each child runs in its own process group and, on Linux, gets SIGKILL when the
runner dies (``PR_SET_PDEATHSIG``), so ``kill -9`` of the runner leaves no orphan.
Ctrl-C or SIGTERM stops the whole sweep: running children get SIGTERM (SIGKILL
after :data:`GRACE_S` seconds) and are recorded as ``interrupted``, no further run
starts, the tables of what finished are written, and the runner exits with 130.
Changing a run's settings (``--epochs``, ``--data``, ...) for a directory that already
holds a run makes that run fail with the config diff; use another ``--out``.

GPUs and clusters. ``--gpus-per-run N`` gives each run its own N GPUs (``CUDA_VISIBLE_DEVICES``,
round-robin over the visible ones: ``CUDA_VISIBLE_DEVICES`` of the runner, else all), and runs
``torchrun --standalone --nproc_per_node=N`` inside a run when N > 1; a run waits for a free
group when ``--workers`` exceeds the groups. ``--launcher slurm`` submits each run as a SLURM
job through ``submitit`` (``pip install 'emsiam[slurm]'``; ``--partition``, ``--time``,
``--gpus-per-run``, ``--cpus-per-run``, ``--mem-gb``, ``--array-parallelism``: at most that many
jobs queued or running, default all); ``--launcher submitit-local`` runs the same jobs on this
machine (tests). Planning, skip/resume/failure, ``status.json`` and the tables are the same as with
the local launcher; a job stopped by its time limit or preempted is requeued by submitit and the
run resumes from its checkpoint (:class:`TrainJob`'s ``checkpoint``). The runner waits for its jobs.

At the end the tidy table ``OUT/<study>/results.{csv,parquet}`` is written
(:mod:`analysis.results`; one row per (run, eval record), plus a ``label`` column
and one row for each run that failed before writing a config) and a summary is printed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import importlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from analysis.results import collect, read_status, save_table
from emsiam.config import ConfigError, load_config
from emsiam.runs import CKPT, lock_holder, read_metrics

#: Lines of the child's stderr kept in ``status.json["error"]``.
ERROR_LINES = 20
#: Seconds a child gets after SIGTERM (on Ctrl-C) before SIGKILL.
GRACE_S = 10.0
#: Exit status of an interrupted sweep (as a shell reports Ctrl-C).
EXIT_INTERRUPTED = 130
#: Exit status of ``emsiam train`` refused by a live writer's lock on the run directory.
EXIT_LOCKED = 9
#: Child return codes that mean "stopped from outside", not "failed".
INTERRUPT_RCS = {130, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGTERM}


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


def _finished(spec: RunSpec, recs: list[dict]) -> bool:
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
    if _finished(spec, recs):
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
        record.update(status="interrupted", finished=record.get("finished") or _now(),
                      error="the run stopped without recording an end (no live process holds its lock)")
        write_status(spec.run_dir, record)


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


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True) if sys.platform == "linux" else None


def _child_setup(parent: int) -> None:
    """In the forked child, before exec: die with the runner (SIGKILL when it exits, Linux).

    The kernel sends the signal when the *thread* that forked the child ends; that is the pool
    thread that then waits for the child, so it outlives the child unless the runner dies."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)


_children: set[subprocess.Popen] = set()  # live children, for stop_children
_children_lock = threading.RLock()  # re-entrant: a second Ctrl-C may land inside stop_children
_stop = threading.Event()  # set by Ctrl-C / SIGTERM: start nothing new


def stop_children(grace_s: float = GRACE_S) -> None:
    """SIGTERM every running child's process group, SIGKILL those still alive after ``grace_s``."""
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)

    def kill_late() -> None:
        deadline = time.monotonic() + grace_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)

    threading.Thread(target=kill_late, daemon=True).start()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own process group
    except (ProcessLookupError, PermissionError):
        pass


def visible_gpus() -> list[str]:
    """The GPUs this runner may hand out: ``CUDA_VISIBLE_DEVICES`` when set, else every CUDA device."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class GpuPool:
    """Disjoint groups of ``per_run`` GPUs, handed out round-robin to running runs."""

    def __init__(self, per_run: int, gpus: Sequence[str] | None = None):
        gpus = list(visible_gpus() if gpus is None else gpus)
        if per_run < 1 or len(gpus) < per_run:
            raise SystemExit(f"--gpus-per-run {per_run}: only {len(gpus)} GPU(s) visible ({','.join(gpus) or 'none'})")
        self.per_run = per_run
        self.groups = [gpus[i : i + per_run] for i in range(0, len(gpus) - per_run + 1, per_run)]
        self.free: queue.Queue[list[str]] = queue.Queue()
        for g in self.groups:
            self.free.put(g)

    @contextlib.contextmanager
    def take(self):
        group = self.free.get()  # waits for a group when more workers than groups
        try:
            yield group
        finally:
            self.free.put(group)


def subprocess_executor(spec: RunSpec, threads: int | None, gpus: Sequence[str] | None = None) -> tuple[int, str]:
    """Run ``python -m emsiam train ...`` for ``spec``; stdout and stderr are appended to
    ``run_dir/log.txt``. Returns (return code, last lines of stderr). With ``gpus``, the child
    sees only those (``CUDA_VISIBLE_DEVICES``) and runs under torchrun when there are several.

    The child leads its own process group (a terminal's Ctrl-C reaches only the runner,
    which stops the children itself) and is killed by the kernel if the runner dies."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    tail: collections.deque[str] = collections.deque(maxlen=ERROR_LINES)
    cmd = spec.command(len(gpus) if gpus else 1)
    with open(spec.run_dir / "log.txt", "a") as log:
        log.write(f"==== {_now()} {'CUDA_VISIBLE_DEVICES=' + env['CUDA_VISIBLE_DEVICES'] + ' ' if gpus else ''}"
                  f"{' '.join(cmd)}\n")
        log.flush()
        parent = os.getpid()
        with _children_lock:  # no child starts once a stop is under way
            if _stop.is_set():
                return -signal.SIGTERM, "not started: the sweep was interrupted"
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, env=env,
                                    start_new_session=True, preexec_fn=lambda: _child_setup(parent))
            _children.add(proc)
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                log.write(line)
                log.flush()
                tail.append(line.rstrip("\n"))
            rc = proc.wait()
        finally:
            with _children_lock:
                _children.discard(proc)
    return rc, "\n".join(tail)


Executor = Callable[[RunSpec, "int | None"], "tuple[int, str]"]


def gpu_executor(pool: GpuPool) -> Executor:
    """:func:`subprocess_executor` on a group of GPUs taken from ``pool`` for the run's duration."""
    def run(spec: RunSpec, threads: int | None) -> tuple[int, str]:
        with pool.take() as gpus:
            return subprocess_executor(spec, threads, gpus)
    return run


# --------------------------------------------------------------------------
# submitit: a run as a job (SLURM, or this machine for tests)


class TrainJob:
    """One run as a submitit job: ``emsiam train`` in a subprocess of the job (under torchrun
    for several GPUs). When submitit signals a time limit or preemption, :meth:`checkpoint`
    stops the run (SIGTERM: the run keeps its last checkpoint and releases its lock) and
    returns itself with ``resume=True``, which submitit requeues; the requeued job resumes
    the run from its checkpoint (or restarts it when none was written yet)."""

    def __init__(self, spec: RunSpec, threads: int | None = None, gpus: int = 0, resume: bool = False):
        self.spec, self.threads, self.gpus, self.resume = spec, threads, gpus, resume
        self._proc: subprocess.Popen | None = None

    def __call__(self) -> tuple[int, str]:
        spec = self.spec
        if self.resume:  # what the run's files say now (a checkpoint, or a config only)
            spec = plan(RunSpec(spec.study, spec.label, spec.seed, spec.name, spec.run_dir, spec.preset,
                                list(spec.overrides), spec.epochs))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.threads is not None:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[var] = str(self.threads)
        cmd = spec.command(self.gpus if self.gpus > 1 else 1)
        tail: collections.deque[str] = collections.deque(maxlen=ERROR_LINES)
        with open(spec.run_dir / "log.txt", "a") as log:
            log.write(f"==== {_now()} job {os.environ.get('SLURM_JOB_ID') or os.environ.get('SUBMITIT_LOCAL_JOB_ID', '?')}"
                      f"{' (requeued)' if self.resume else ''}: {' '.join(cmd)}\n")
            log.flush()
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, env=env)
            assert self._proc.stderr is not None
            for line in self._proc.stderr:
                log.write(line)
                log.flush()
                tail.append(line.rstrip("\n"))
            rc = self._proc.wait()
        return rc, "\n".join(tail)

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on timeout/preemption: stop the run, requeue this job with resume=true."""
        import submitit

        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        return submitit.helpers.DelayedSubmission(TrainJob(self.spec, self.threads, self.gpus, resume=True))


@dataclass
class JobOptions:
    """Resources of each run's job (``--launcher slurm|submitit-local``)."""

    launcher: str = "slurm"  # slurm | submitit-local
    folder: str | None = None  # submitit's logs and pickles (default: OUT/.submitit)
    partition: str | None = None
    time_min: int = 60
    gpus: int = 0  # per run (one node)
    cpus: int | None = None
    mem_gb: float | None = None


def _submitit():
    try:
        import submitit
    except ImportError:
        raise SystemExit("--launcher slurm|submitit-local needs submitit: pip install submitit "
                         "(or pip install 'emsiam[slurm]')") from None
    return submitit


def submitit_executor(opts: JobOptions, out: str | Path) -> Executor:
    """Each run as one submitit job; the pool thread waits for it (cancels it on Ctrl-C)."""
    submitit = _submitit()
    folder = Path(opts.folder or Path(out) / ".submitit")
    if opts.launcher == "slurm":
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        params = {"timeout_min": opts.time_min, "gpus_per_node": opts.gpus, "tasks_per_node": 1, "nodes": 1}
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.cpus:
            params["cpus_per_task"] = opts.cpus
        if opts.mem_gb:
            params["mem_gb"] = opts.mem_gb
        ex.update_parameters(**params)
    elif opts.launcher == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder / "%j")
        ex.update_parameters(timeout_min=opts.time_min, gpus_per_node=opts.gpus)
    else:
        raise ValueError(f"unknown launcher {opts.launcher!r}")

    def run(spec: RunSpec, threads: int | None) -> tuple[int, str]:
        job = ex.submit(TrainJob(spec, opts.cpus or (threads if opts.launcher == "submitit-local" else None), opts.gpus))
        with open(spec.run_dir / "log.txt", "a") as log:
            log.write(f"==== {_now()} submitted job {job.job_id} ({opts.launcher}); its output: {folder}\n")
        while not job.done():
            if _stop.is_set():
                job.cancel(check=False)
                return -signal.SIGTERM, f"job {job.job_id} cancelled: the sweep was interrupted"
            time.sleep(0.5)
        try:
            return job.result()
        except Exception as e:  # noqa: BLE001 - the job failed outside our callable (node failure, cancelled)
            return -1, f"job {job.job_id}: {type(e).__name__}: {str(e)[-2000:]}"
    return run


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
    holder = lock_holder(spec.run_dir)  # again: a queued run may have been started elsewhere since planning
    if holder is not None:
        spec.action, spec.reason = "busy", f"in use by pid {holder.get('pid')} on {holder.get('host')}"
        record.update(status="busy", error=spec.reason, finished=_now(), wall_s=0.0)
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
    finished = _finished(spec, recs)
    if finished and rc == 0:
        status = "done"
    elif rc == EXIT_LOCKED:  # another process started it meanwhile and holds its lock
        status = "busy"
    elif _stop.is_set() or rc in INTERRUPT_RCS:
        status = "interrupted"
    else:
        status = "failed"
        if rc == 0:
            err = (err + "\n" if err else "") + (
                f"exited 0 but metrics end at epoch {recs[-1].get('epoch') if recs else None}, not {spec.epochs}")
    record.update(status=status, returncode=rc, error=None if status == "done" else err, finished=_now(),
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

    for _, specs in expanded:
        for s in specs:
            reconcile(s)
    todo = [s for _, specs in expanded for s in specs if s.action not in ("skip", "busy")]
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
        if _stop.is_set():
            return None
        with lock:
            say(f"  start {spec.rel} ({spec.action}{': ' + spec.reason if spec.reason else ''})")
        return execute(spec, executor, threads)

    _stop.clear()
    with _stop_on_signals(say):
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending = {pool.submit(one, s): s for s in todo}
            i = 0
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                if _stop.is_set():
                    for fut in pending:
                        fut.cancel()
                for fut in done:
                    spec = pending.pop(fut)
                    rec = None if fut.cancelled() else fut.result()
                    if rec is None:
                        continue
                    i += 1
                    records[spec.rel] = rec
                    with lock:
                        first = (rec["error"] or "").strip().splitlines()[-1:] if rec["status"] == "failed" else []
                        say(f"  [{i}/{len(todo)}] {spec.rel} {rec['status']} in {rec['wall_s']:.0f} s"
                            + (f": {first[0]}" if first else ""))
    interrupted = _stop.is_set()

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
        if not _stop.is_set():
            try:  # printing inside a handler can collide with a print it interrupted
                self.say(f"\n{signal.Signals(signum).name}: stopping the sweep (running runs get SIGTERM)")
            except RuntimeError:
                pass
        _stop.set()  # before stop_children takes the lock: a child starting now is stopped or never starts
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
    ap.add_argument("--workers", type=int, default=None,
                    help="runs in parallel (threads split between them); default 1, or one per GPU group with "
                         "--gpus-per-run, or --array-parallelism with a submitit launcher")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and exit; nothing is written")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="set",
                    help="overrides for every run (win over the study's)")
    ap.add_argument("--only", nargs="*", default=None, metavar="LABEL", help="only these runs of the study")
    ap.add_argument("--launcher", choices=["local", "submitit-local", "slurm"], default="local",
                    help="local subprocesses (default), or one submitit job per run (SLURM, or this machine)")
    ap.add_argument("--gpus-per-run", type=int, default=0,
                    help="GPUs per run (CUDA_VISIBLE_DEVICES round-robin; torchrun inside a run when > 1)")
    ap.add_argument("--partition", default=None, help="SLURM partition")
    ap.add_argument("--time", type=int, default=60, dest="time_min",
                    help="job time limit in minutes (submitit; a job that reaches it is requeued and resumes)")
    ap.add_argument("--cpus-per-run", type=int, default=None, help="CPUs per job (submitit)")
    ap.add_argument("--mem-gb", type=float, default=None, help="memory per job in GB (SLURM)")
    ap.add_argument("--array-parallelism", type=int, default=None,
                    help="at most this many jobs queued or running at once (submitit; default: all)")


def study_main(study: Study, argv: Sequence[str] | None = None) -> int:
    """Entry point of a study script's ``main()``; exit status 1 if any run failed, 130 if interrupted."""
    args = parser(study).parse_args(argv)
    if (args.workers is not None and args.workers < 1) or args.seeds < 1 or args.gpus_per_run < 0:
        raise SystemExit("--workers and --seeds must be >= 1, --gpus-per-run >= 0")
    if args.only is not None:
        unknown = set(args.only) - set(study.runs)
        if unknown:
            raise SystemExit(f"--only: no run labelled {sorted(unknown)} in {study.name} ({', '.join(study.runs)})")
        study = Study(study.name, study.doc, {k: v for k, v in study.runs.items() if k in args.only},
                      {k: v for k, v in study.epochs_factor.items() if k in args.only})
    executor, workers = subprocess_executor, args.workers or 1
    if args.dry_run:
        pass
    elif args.launcher != "local":
        opts = JobOptions(args.launcher, None, args.partition, args.time_min, args.gpus_per_run, args.cpus_per_run,
                          args.mem_gb)
        executor = submitit_executor(opts, Path(args.out) / study.name)
        workers = args.workers or args.array_parallelism or 256
    elif args.gpus_per_run:
        pool = GpuPool(args.gpus_per_run)
        executor, workers = gpu_executor(pool), args.workers or len(pool.groups)
    res = run_study(study, preset=args.preset, seeds=args.seeds, out=args.out, data=args.data, extra=args.set,
                    epochs=args.epochs, workers=workers, dry_run=args.dry_run, executor=executor)
    if res.interrupted:
        return EXIT_INTERRUPTED
    return 1 if res.count("failed") else 0


#: The study modules under ``experiments/``.
STUDIES = ("kstep_sweep", "ema_vs_predictor", "predictor_ablation", "stopgrad", "symmetry", "mean_input",
           "predictor_as_expectation", "cifar10_long")


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
