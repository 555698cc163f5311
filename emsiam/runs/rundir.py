"""The run directory a training process writes: opened (new or resumed) after every cheap check,
then the config, git.txt, metrics and checkpoints. Only rank 0 writes; every rank reads."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import warnings
from typing import Any

import torch
import yaml

from .. import distributed, loggers
from ..config import RESUME_FREE_KEYS, Config, ConfigError, diff, flatten, from_dict, safe_load, to_dict
from .checkpoint import CKPT, check_checkpoint_file, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .errors import CheckpointError, RunError
from .files import atomic_write_text, git_sha, named
from .lock import acquire_lock, describe, holds, lock_holder, locked, release_lock
from .metrics import dedupe_records, read_metrics
from .preflight import preflight


class Run:
    """A run directory. Use :meth:`open` to create it or to resume it."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dir = cfg.run_dir
        self.ckpt_path = self.dir / CKPT
        self.metrics_path = self.dir / "metrics.jsonl"

    @property
    def writer(self) -> bool:
        """With several processes only rank 0 writes (config, git sha, metrics, checkpoints); all read."""
        return distributed.is_main()

    @classmethod
    def open(cls, cfg: Config) -> "Run":
        """Check everything cheap (:func:`preflight`), validate the directory against ``cfg``,
        and (rank 0) take the directory's lock, all before any data is loaded.

        - new run: the directory must not hold a checkpoint or metrics (nothing is overwritten);
        - ``resume=true``: the saved config must equal ``cfg`` up to resume-free keys,
          otherwise the diff is reported and nothing is touched;
        - ``resume=true`` on a run that died before its first checkpoint: the same config
          starts again from scratch (``cfg.resume`` is cleared), with a warning; the dead
          attempt's metrics are moved aside to ``metrics.jsonl.stale-<time>``.
        """
        run = cls(cfg)
        preflight(cfg)
        writer = distributed.env_rank() == 0  # the process group does not exist yet
        holder = lock_holder(run.dir) if writer and not holds(run.dir) else None
        if holder is not None:  # a live writer: say so, whatever the directory holds so far
            raise locked(run.dir, holder)
        restart = run._validate()  # refuse before writing anything (not even the lock file)
        if writer:
            stale = acquire_lock(run.dir)
            if stale:
                warnings.warn(f"{run.dir}: taking over the lock left by {describe(stale)}, which "
                              "is no longer running", stacklevel=2)
            restart = run._validate()  # again under the lock: the directory may have changed meanwhile
            if restart:
                run._move_metrics_aside()
        if restart:
            warnings.warn(f"{run.dir} holds no checkpoint (the run stopped before its first one): "
                          f"starting it again from scratch with the saved config (seed {cfg.seed})",
                          stacklevel=2)
            cfg.resume = False
        return run

    def _saved_config(self) -> dict[str, Any]:
        """The saved config.yaml as a dict; RunError naming the file if missing or unreadable."""
        saved = self.dir / "config.yaml"
        fix = f"restore it, or start a new run with another name=... (or delete {self.dir})"
        if not saved.is_file():
            raise RunError(f"resume=true but the saved config {saved} is missing; {fix}")
        try:
            old = safe_load(saved.read_text())
            from_dict(Config, old)
        except yaml.YAMLError as e:
            raise RunError(f"saved config {saved} is not valid YAML ({_yaml_where(e)}); {fix}") from None
        except ConfigError as e:
            raise RunError(f"saved config {saved} is not valid with this version: {e}; {fix}") from None
        return old

    def _validate(self) -> bool:
        """Refuse what cannot be done; True when a ``resume=true`` run must restart from scratch."""
        cfg = self.cfg
        if cfg.resume:
            has_ckpt = self.ckpt_path.exists()
            if not has_ckpt and not (self.dir / "config.yaml").exists():
                hint = ("; name= was not given, so it defaulted to a new timestamp: pass the run's name=..."
                        if re.fullmatch(r"\d{8}-\d{6}", cfg.name) else "")
                raise RunError(f"resume=true but {self.dir} holds no run (no config.yaml, no checkpoint at "
                               f"{self.ckpt_path}); drop resume=true to start anew{hint}")
            old = self._saved_config()
            new = to_dict(cfg)
            changed = diff(old, new, ignore=RESUME_FREE_KEYS | same_paths(old, new))
            if changed:
                raise RunError(
                    f"refusing to resume {self.dir}: the config differs from the saved one:\n  "
                    + "\n  ".join(changed)
                    + "\nResume with the original settings, or start a new run with another name=..."
                )
            if has_ckpt:
                check_checkpoint_file(self.ckpt_path)
            return not has_ckpt
        if self.ckpt_path.exists():
            raise RunError(
                f"run directory {self.dir} already holds a run; pass resume=true to continue it, "
                f"or choose another name=... (nothing was changed)"
            )
        if self.metrics_path.exists():
            raise RunError(
                f"run directory {self.dir} already holds a run that stopped before its first checkpoint; "
                f"pass resume=true to restart it from scratch with its saved config, or choose another "
                f"name=... (nothing was changed)"
            )
        return False

    def _move_metrics_aside(self) -> None:
        if self.metrics_path.exists():
            os.replace(self.metrics_path, self.dir / f"metrics.jsonl.stale-{int(time.time())}")

    def close(self) -> None:
        """Release the directory's lock (also done at process exit)."""
        release_lock(self.dir)

    def initialise(self) -> None:
        """Write the config (new run) and append the code version of this start to git.txt."""
        if not self.writer:
            return
        acquire_lock(self.dir)  # no-op when Run.open took it
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not self.cfg.resume:
            atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
        git = self.dir / "git.txt"
        earlier = git.read_text() if self.cfg.resume and git.exists() else ""
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        line = f"{git_sha()} {stamp} {'resume' if self.cfg.resume else 'start'}\n"
        atomic_write_text(git, earlier + line)

    # ---- metrics ------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        try:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
        except OSError as e:
            raise named(e, self.metrics_path) from e
        loggers.publish(self, record)  # TensorBoard / W&B when log.* asks for them

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.dir)

    def truncate_metrics(self, step: int) -> None:
        """Keep the records up to ``step`` (the checkpoint's): drop those of a run that died before
        checkpointing, torn lines, and all but the last record of any epoch written twice
        (:func:`dedupe_records`)."""
        if not self.writer:
            return
        if self.metrics_path.exists():
            keep = dedupe_records(r for r in self.metrics() if r.get("step", 0) <= step)
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))

    # ---- checkpoints ----------------------------------------------------------
    def save(self, state: dict[str, Any]) -> None:
        """Save ``state`` (tensors, numbers, strings, containers of them) with the RNG states and
        the config, atomically: a failed write raises and leaves the previous checkpoint in place."""
        if not self.writer:
            return
        save_checkpoint(self.ckpt_path, {**state, "rng": rng_state(), "config": to_dict(self.cfg)})

    def load(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.ckpt_path, map_location)

    def save_state(self, *, epoch: int, step: int, **objs: Any) -> None:
        """Checkpoint every stateful object by name (``model=..., optimizer=..., variant=...``):
        ``{name: obj.state_dict()}`` plus ``epoch`` and ``step``, written by :meth:`save`."""
        self.save({**{name: obj.state_dict() for name, obj in objs.items()}, "epoch": epoch, "step": step})

    def restore_state(self, device: str | torch.device, **objs: Any) -> tuple[int, int]:
        """The inverse of :meth:`save_state`: load the checkpoint onto ``device``, give each object
        its state (in the order given), restore the RNGs, keep the metrics up to the checkpoint's
        step; return ``(epoch, step)``. A name the checkpoint lacks raises :class:`CheckpointError`."""
        ckpt = self.load(device)
        for name in (*objs, "rng", "epoch", "step"):
            if name not in ckpt:
                raise CheckpointError(f"checkpoint {self.ckpt_path} has no {name!r} entry (it holds "
                                      f"{', '.join(sorted(ckpt))}); it was not written by this run's code")
        for name, obj in objs.items():
            obj.load_state_dict(ckpt[name])
        set_rng_state(ckpt["rng"])
        self.truncate_metrics(ckpt["step"])
        return ckpt["epoch"], ckpt["step"]


def _yaml_where(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


#: Config keys that name a file or folder: on resume, another spelling of the same absolute path
#: (``../shared/x`` for a saved ``/work/shared/x``) is the same setting.
PATH_KEYS = ("data.root", "data.cache_dir", "method.bank_path")


def same_paths(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """Path keys whose saved value is absolute and names the same file as the new value resolved
    from the current folder (a saved relative path never matches: its folder is unknown)."""
    fo, fn = flatten(old), flatten(new)
    return {k for k in PATH_KEYS
            if isinstance(fo.get(k), str) and isinstance(fn.get(k), str) and os.path.isabs(fo[k])
            and os.path.realpath(fo[k]) == os.path.realpath(fn[k])}
