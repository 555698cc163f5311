"""The writer's lock on a run directory: an exclusive ``flock`` on ``run.lock``.

The writing process holds it until it exits, so a second run into the same directory is
refused naming the holder. The kernel drops the lock when its holder dies (even by
``kill -9``); the next run finds the lock free and takes it over.
"""

from __future__ import annotations

import atexit
import datetime as dt
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .errors import RunLocked

LOCK = "run.lock"

_held: dict[Path, int] = {}  # resolved run dir -> fd of the lock this process holds


def holds(run_dir: str | Path) -> bool:
    """This process holds ``run_dir``'s lock."""
    return Path(run_dir).resolve() in _held


def _lock_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds")}


def _read_lock_record(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        rec = json.loads(raw.decode()) if raw.strip() else {}
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def describe(rec: dict[str, Any]) -> str:
    """Who holds (or held) a lock, from its record."""
    if not rec or rec.get("pid") is None:
        return "another process (its lock record is not readable yet)"
    return f"pid {rec.get('pid', '?')} on host {rec.get('host', '?')} (started {rec.get('started', '?')})"


def lock_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """The lock record (pid, host, started) of the live process holding ``run_dir``'s lock,
    or None when no process holds it (a lock file left by a dead process is not held)."""
    run_dir = Path(run_dir)
    if run_dir.resolve() in _held:
        return _read_lock_record(_held[run_dir.resolve()])
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_lock_record(fd) or {"pid": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def acquire_lock(run_dir: str | Path, wait_s: float = 0.5) -> dict[str, Any] | None:
    """Take the exclusive lock of ``run_dir`` (created if needed) for the life of this process.

    Raises :class:`RunLocked` naming the holder if another live process keeps it for
    ``wait_s`` seconds. Returns the record of a stale lock taken over (its holder died
    without releasing it), else None. Re-entrant within one process."""
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _held:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _read_lock_record(fd)
                os.close(fd)
                raise locked(run_dir, holder) from None
            time.sleep(0.05)
    try:
        stale = _read_lock_record(fd) or None
        data = (json.dumps(_lock_record()) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except BaseException:
        os.close(fd)
        raise
    _held[key] = fd
    return stale


def locked(run_dir: Path, holder: dict[str, Any]) -> RunLocked:
    """The error for a run directory whose lock ``holder`` keeps."""
    return RunLocked(f"run directory {run_dir} is in use by {describe(holder)} (lock file {run_dir / LOCK}); "
                     "wait for that run to finish or stop it, or choose another name=...")


def release_lock(run_dir: str | Path) -> None:
    """Release this process's lock on ``run_dir`` (emptying the lock file); no-op if not held."""
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)  # an empty lock file: the run ended cleanly
    except OSError:
        pass
    finally:
        os.close(fd)  # closing the last descriptor drops the flock


@atexit.register
def _release_all() -> None:
    for d in list(_held):
        release_lock(d)
