"""Local executors: each run as a child process (its own process group, killed with the runner),
on this machine's CPUs or on a group of GPUs; and stopping the children on Ctrl-C / SIGTERM."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

from .study import RunSpec, now

#: Lines of the child's stderr kept in ``status.json["error"]``.
ERROR_LINES = 20
#: Seconds a child gets after SIGTERM (on Ctrl-C) before SIGKILL.
GRACE_S = 10.0


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
stop_requested = threading.Event()  # set by Ctrl-C / SIGTERM: start nothing new


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
        log.write(f"==== {now()} {'CUDA_VISIBLE_DEVICES=' + env['CUDA_VISIBLE_DEVICES'] + ' ' if gpus else ''}"
                  f"{' '.join(cmd)}\n")
        log.flush()
        parent = os.getpid()
        with _children_lock:  # no child starts once a stop is under way
            if stop_requested.is_set():
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
