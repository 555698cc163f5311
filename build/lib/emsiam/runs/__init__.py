"""Run directories: resolved config, metrics, code version, checkpoints, resume, the writer's lock.

Layout of ``<out_dir>/<name>/`` (design notes: docs/runs.md)::

    config.yaml          the resolved config (every key, after overrides)
    git.txt              one line per start or resume: git sha (+ "-dirty"), UTC time, start|resume
    metrics.jsonl        one JSON record per evaluation / epoch
    checkpoints/last.pt  model, optimizer, variant, RNG states, epoch, step, config
    run.lock             the writer's lock: pid, host and start time of its holder
    status.json          (sweep runner only) running | done | failed | interrupted | busy

Modules: errors, files (atomic writes, code version), lock, checkpoint, metrics (the one
reader of a run directory), preflight (checks before data is loaded), rundir (class Run).
"""

from .checkpoint import CKPT, check_checkpoint_file, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .errors import CheckpointError, RunError, RunLocked
from .files import code_versions, git_sha
from .lock import LOCK, acquire_lock, lock_holder, release_lock
from .metrics import (DONE, INCOMPLETE, RunFiles, dedupe_records, read_config, read_metrics, read_run,
                      read_status, run_dirs, run_status)
from .preflight import KNOWN_TRAIN_SIZES, check_device, check_writable, known_train_size, preflight
from .rundir import Run

__all__ = [
    "CKPT", "DONE", "INCOMPLETE", "KNOWN_TRAIN_SIZES", "LOCK", "CheckpointError", "Run", "RunError", "RunFiles",
    "RunLocked", "acquire_lock", "check_checkpoint_file", "check_device", "check_writable", "code_versions",
    "dedupe_records", "git_sha", "known_train_size", "load_checkpoint", "lock_holder", "preflight",
    "read_config", "read_metrics", "read_run", "read_status", "release_lock", "rng_state", "run_dirs",
    "run_status", "save_checkpoint", "set_rng_state",
]
