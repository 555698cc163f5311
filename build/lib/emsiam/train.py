"""``train(cfg)``: the public entry point; builds the run (:mod:`emsiam.setup`), trains it
(:mod:`emsiam.alternation`), and releases its bank file and run-directory lock however it ends."""

from __future__ import annotations

from typing import Any

from . import distributed
from .alternation import fit
from .config import Config
from .runs import release_lock
from .setup import setup


def train(cfg: Config) -> list[dict[str, Any]]:
    """Train as configured (any variant); returns the run's metric records."""
    s = None
    try:
        s = setup(cfg)
        return fit(s)
    finally:
        if s is not None and s.variant.bank is not None:
            s.variant.bank.close()  # releases the bank file's lock now, not at garbage collection
        release_lock(cfg.run_dir)  # taken by Run.open; a no-op where another process holds it
        distributed.cleanup()
