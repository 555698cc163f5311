"""The bank lock: one process (and one run) per bank file. An exclusive flock on <path>.lock,
released by the kernel when the process dies, with the owner written into it so that a second
process is told who holds the bank."""

from __future__ import annotations

import json
import os
import socket
import time

from .base import BankError


def _owner_of(lock_path: str) -> str:
    """' (pid P on host H, run R, since T)' from a lock file, or '' if unknown."""
    try:
        with open(lock_path) as f:
            o = json.load(f)
        run = f", run {o['run_id']}" if o.get("run_id") else ""
        return f" (pid {o['pid']} on host {o['host']}{run}, since {o['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _in_use(path: str, lock_path: str | None) -> BankError:
    """lock_path: the bank lock another process holds; None: HDF5's own lock (the holder is unknown)."""
    who = _owner_of(lock_path) if lock_path else " (it holds HDF5's lock on the file)"
    return BankError(
        f"bank {path} is in use by another process{who}. A bank serves one run at a "
        f"time: wait for that process to finish, or stop it, then try again. The bank was not touched."
    )


def _lock(path: str, lock_path: str):
    """An exclusive flock on <path>.lock for the life of the bank object (released by the kernel
    if the process dies). Returns (file, created)."""
    import fcntl

    created = not os.path.exists(lock_path)
    f = open(lock_path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise _in_use(path, lock_path) from None
    return f, created


def _write_owner(f, run_id: str) -> None:
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id,
                        "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
    f.flush()
