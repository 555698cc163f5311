"""Run directories: resolved config, metrics.jsonl, git sha, checkpoints, resume.

Layout of ``<out_dir>/<name>/``::

    config.yaml        the resolved config (every key, after overrides)
    git.txt            git sha of the code (plus "-dirty" if uncommitted changes)
    metrics.jsonl      one JSON record per evaluation / epoch
    checkpoints/last.pt  model, optimizer, RNG states, step, epoch (and any extra state)

Checkpoints and metrics are written atomically (temporary file + ``os.replace``),
so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import torch
import yaml

from . import distributed
from .config import Config, ConfigError, diff, from_dict, to_dict

CKPT = "checkpoints/last.pt"


class RunError(RuntimeError):
    """The run directory cannot be used as asked (exists, mismatched config, ...)."""


def git_sha() -> str:
    """Short git sha of the package's checkout, ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
        """Validate the directory against ``cfg`` before any compute.

        - new run: the directory must not hold a checkpoint (nothing is overwritten);
        - ``resume=true``: the saved config must equal ``cfg`` up to resume-free keys,
          otherwise the diff is reported and nothing is touched.
        """
        run = cls(cfg)
        saved = run.dir / "config.yaml"
        if cfg.resume:
            if not run.ckpt_path.exists():
                raise RunError(f"resume=true but no checkpoint at {run.ckpt_path}; drop resume=true to start anew")
            old = yaml.safe_load(saved.read_text())
            try:
                from_dict(Config, old)
            except ConfigError as e:
                raise RunError(f"saved config {saved} is not valid with this version: {e}") from None
            changed = diff(old, to_dict(cfg))
            if changed:
                raise RunError(
                    f"refusing to resume {run.dir}: the config differs from the saved one:\n  "
                    + "\n  ".join(changed)
                    + "\nResume with the original settings, or start a new run with another name=..."
                )
        elif run.ckpt_path.exists() or run.metrics_path.exists():
            raise RunError(
                f"run directory {run.dir} already holds a run; pass resume=true to continue it, "
                f"or choose another name=... (nothing was changed)"
            )
        return run

    def initialise(self) -> None:
        """Write config and git sha (on a new run; on resume only the sha is refreshed)."""
        if not self.writer:
            return
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not self.cfg.resume:
            _atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
        _atomic_write_text(self.dir / "git.txt", git_sha() + "\n")

    # ---- metrics ------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.dir)

    def truncate_metrics(self, step: int) -> None:
        """Drop records written after ``step`` (by a run that died before checkpointing)."""
        if not self.writer:
            return
        if self.metrics_path.exists():
            keep = [r for r in self.metrics() if r.get("step", 0) <= step]
            _atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))

    # ---- checkpoints ----------------------------------------------------------
    def save(self, state: dict[str, Any]) -> None:
        """Save ``state`` (tensors, numbers, strings, containers of them) atomically."""
        if not self.writer:
            return
        state = {**state, "rng": rng_state(), "config": to_dict(self.cfg)}
        tmp = self.ckpt_path.with_name(self.ckpt_path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)

    def load(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.ckpt_path, map_location)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
