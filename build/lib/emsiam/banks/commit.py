"""Commits and recovery of a file bank: flush (one phase), prepare then commit (two phases,
around a checkpoint), what opening does with a journal it finds, and state_dict /
load_state_dict, which bring the bank to the checkpoint's version or refuse.
Protocol and the table of kill points: docs/banks.md.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from .base import _META_FIELDS, STATE_VERSION, BankError


class _TwoPhaseCommit:
    """The commit protocol of a _FileBank (a mixin over _Journal: seal, apply, replay)."""

    def _finish(self, marker: dict) -> None:
        """Apply this object's committed journal and remove it."""
        self._broken = True  # from here on a crash is finished by the next open
        index = self._index
        self._apply(index[:, 0], index[:, 1], index[:, 2].view(np.uint64), self._jmm, marker["committed_version"])
        self._close_journal()
        self._remove_journal()
        self._index = None
        self._broken = False

    def flush(self):
        self._check_usable()
        if self._prepared is not None:
            return self.commit()
        if self._n == 0:
            return
        self._finish(self._seal("committed"))

    def prepare(self):
        self._check_usable()
        if self._prepared is None and self._n:
            self._prepared = self._seal("prepared")
        return self._target_version()

    def commit(self):
        self._check_usable()
        if self._prepared is None:
            if self._n:
                raise BankError(f"bank {self.path}: commit() without prepare(); use flush() to commit at once")
            return
        marker = {**self._prepared, "state": "committed"}
        self._write_marker(marker)  # from here on the next open applies it, whatever the checkpoint says
        self._finish(marker)

    def _target_version(self) -> int:
        return self.committed_version if self._prepared is None else int(self._prepared["committed_version"])

    def _recover(self) -> None:
        """On open: finish a committed journal, keep a prepared one for load_state_dict, drop the rest."""
        if not any(os.path.exists(p) for p in (self._jpath, self._jindex, self._jcommit)):
            return
        if os.path.exists(self._jcommit):
            with open(self._jcommit) as f:
                marker = json.load(f)
            if marker.get("file_id") != self._file_id:
                warnings.warn(
                    f"bank {self.path}: removing a journal that belongs to another bank file "
                    f"(file_id {marker.get('file_id')}, this file {self._file_id})",
                    stacklevel=4,
                )
            elif marker.get("state") == "prepared" and marker.get("base_version") == self.committed_version:
                self._pending = marker  # applied or dropped by load_state_dict, by the checkpoint's version
                return
            elif marker.get("state") == "committed":
                self._replay(marker)
                self.recovered_version = self.committed_version
                return
            else:
                warnings.warn(
                    f"bank {self.path}: removing a prepared commit of version {marker.get('committed_version')} "
                    f"made on top of version {marker.get('base_version')}, not of this file's "
                    f"{self.committed_version}",
                    stacklevel=4,
                )
        else:
            warnings.warn(
                f"bank {self.path}: discarding an uncommitted outer iteration (a run stopped before flush()); "
                f"the bank stays at committed_version {self.committed_version}",
                stacklevel=4,
            )
        self._remove_journal()

    def _discard_pending(self, why: str) -> None:
        warnings.warn(
            f"bank {self.path}: discarding the prepared commit of version {self._pending['committed_version']} "
            f"({why}); the bank stays at committed_version {self.committed_version}",
            stacklevel=4,
        )
        self._pending = None
        self._remove_journal()

    def _discard_own(self) -> None:
        """Drop this object's uncommitted (or prepared) rows: they are in no checkpoint."""
        self._close_journal()
        self._remove_journal()
        self._versions, self._sums, _ = self._store_tables()

    # ---- checkpoints
    def state_dict(self):
        self._check_usable()
        if self._n and self._prepared is None:
            raise BankError(
                f"bank {self.path} holds {self._n} uncommitted rows; call prepare() (or flush()) before "
                f"state_dict() (a checkpoint refers to a committed or prepared version)"
            )
        return {
            "backend": self.backend,
            "format_version": STATE_VERSION,
            "path": self.path,
            "file_id": self._file_id,
            **{k: getattr(self, k) for k in _META_FIELDS},
            "committed_version": self._target_version(),
        }

    def load_state_dict(self, state):
        self._check_usable()
        self._check_state_header(state)
        if state.get("file_id") != self._file_id:
            raise BankError(
                f"bank file {self.path} is not the bank of this checkpoint (checkpoint: {state.get('path')!r}, "
                f"file_id {state.get('file_id')!r}; this file: file_id {self._file_id!r}). It was recreated or "
                f"belongs to another run; point the run at the checkpoint's bank file or refill the bank"
            )
        expected = int(state.get("committed_version", -2))
        if self._prepared is not None and expected == self._target_version():
            self.commit()
        elif self._n:  # uncommitted rows are not part of this checkpoint
            self._discard_own()
        if self._pending is not None:
            target = int(self._pending["committed_version"])
            if expected == target:
                self._replay(self._pending)  # the checkpoint was written: roll forward
                self.recovered_version = target
                self._pending = None
            elif expected == self.committed_version:
                self._discard_pending(f"its checkpoint was never written; this one expects version {expected}")
        if expected != self.committed_version:
            raise BankError(
                f"bank file {self.path} is at committed_version {self.committed_version} but the checkpoint "
                f"expects {state.get('committed_version')}: the bank holds the targets of another point of the "
                f"run, and those of the checkpoint are gone. Resume from a checkpoint taken at version "
                f"{self.committed_version} if there is one; otherwise the run cannot be resumed exactly: start "
                f"it again (a new name=..., or move this bank away first)"
            )
