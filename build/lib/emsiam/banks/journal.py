"""The write-ahead journal of a file bank: writes never touch the bank file.

Rows written since the last commit go to <path>.journal (one slot per row, reused when a
row is written again). Sealing makes it durable with an index (row, version, checksum per
slot) and a marker; applying copies it to the store in row order; replaying applies a
journal left by an earlier process. Protocol: docs/banks.md, "The journal and the commit".
"""

from __future__ import annotations

import json
import os

import numpy as np

from .base import _DAMAGED_ADVICE, FORMAT, FORMAT_VERSION, BankError
from .checksums import _row_sums
from .files import _fsync_dir, _remove, _sha256


class _Journal:
    """Journal state and files of a _FileBank (a mixin: it uses the bank's paths, store and tables)."""

    _apply_block_bytes = 64 << 20  # rows gathered from the journal per store write when applying
    _journal_initial_bytes = 64 << 20  # first journal allocation (sparse); grows by doubling up to N rows

    def _reset_journal_state(self) -> None:
        self._n = 0  # journaled rows since the last commit
        self._cap = 0  # journal capacity in rows
        self._jrows = np.empty(0, np.int64)  # row id of each slot
        self._jvers = np.empty(0, np.int64)  # version of each slot
        self._jmm = None  # np.memmap (cap, V, d) of the journal file
        self._jfd = None
        self._pending_max = -1

    def _open_journal_mm(self, cap: int) -> None:
        self._jmm = np.memmap(self._jpath, dtype=self._np_dtype, mode="r+", shape=(cap, self.n_views, self.dim))

    def _grow_journal(self, need: int) -> None:
        if need <= self._cap:
            return
        if self._jfd is None:
            self._jfd = os.open(self._jpath, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            cap = max(1, self._journal_initial_bytes // self._row_bytes)
        else:
            cap = 2 * self._cap
        cap = min(self.n_rows, max(need, cap))
        self._jmm = None  # unmap before remapping
        os.ftruncate(self._jfd, cap * self._row_bytes)  # sparse
        self._open_journal_mm(cap)
        self._jrows = np.concatenate([self._jrows[: self._n], np.empty(cap - self._n, np.int64)])
        self._jvers = np.concatenate([self._jvers[: self._n], np.empty(cap - self._n, np.int64)])
        self._cap = cap

    def _close_journal(self) -> None:
        self._jmm = None
        if self._jfd is not None:
            os.close(self._jfd)
        if self._slot is not None and self._n:
            self._slot[self._jrows[: self._n]] = -1
        self._reset_journal_state()
        self._prepared = None

    def _remove_journal(self) -> None:
        """Marker first: once it is gone the rest is an incomplete journal, which is discarded."""
        if os.path.exists(self._jcommit):
            os.unlink(self._jcommit)
            if self.durable:
                _fsync_dir(self._jcommit)
        for p in (self._jindex, self._jpath, self._jcommit + ".tmp", self._jindex + ".tmp"):
            _remove(p)

    def _write_marker(self, marker: dict) -> None:
        tmp = self._jcommit + ".tmp"
        with open(tmp, "w") as f:
            json.dump(marker, f)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        os.replace(tmp, self._jcommit)  # the commit (or prepare) point
        if self.durable:
            _fsync_dir(self._jcommit)

    def _journal_rows(self, rows: np.ndarray) -> np.ndarray:
        """Journal slots for rows (unique), allocating new ones; (B,) int64."""
        if self._prepared is not None:
            raise BankError(f"bank {self.path} has a prepared commit (version "
                            f"{self._prepared['committed_version']}); call commit() before writing again")
        if self._pending is not None:
            self._discard_pending("this run writes to the bank without having loaded a checkpoint")
        if self._slot is None:
            self._slot = np.full(self.n_rows, -1, np.int64)
        slots = self._slot[rows]
        new = slots < 0
        k = int(new.sum())
        if k:
            self._grow_journal(self._n + k)
            fresh = np.arange(self._n, self._n + k)
            slots[new] = fresh
            self._slot[rows[new]] = fresh
            self._jrows[fresh] = rows[new]
            self._n += k
        return slots

    def _seal(self, state: str) -> dict:
        """Make the journal durable, with its index (row, version, checksum per slot) and a marker."""
        n = self._n
        if self.durable:
            self._jmm.flush()
            os.fsync(self._jfd)
        block = max(1, self._apply_block_bytes // self._row_bytes)
        sums = np.concatenate([_row_sums(np.asarray(self._jmm[s : min(s + block, n)])) for s in range(0, n, block)])
        index = np.stack([self._jrows[:n], self._jvers[:n], sums.view(np.int64)], axis=1)  # (n, 3)
        with open(self._jindex, "wb") as f:
            np.save(f, index)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        marker = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "file_id": self._file_id,
            "state": state,
            "n_slots": n,
            "row_bytes": self._row_bytes,
            "base_version": self.committed_version,
            "committed_version": max(self.committed_version, self._pending_max),
            "index_sha256": _sha256(self._jindex),
        }
        self._write_marker(marker)
        self._index = index
        return marker

    def _apply(self, rows, vers, sums, jdata, committed: int) -> None:
        """Copy journal slots to the store in row order, then versions, checksums, committed_version."""
        order = np.argsort(rows, kind="stable")
        block = max(1, self._apply_block_bytes // self._row_bytes)
        for s in range(0, order.shape[0], block):
            o = order[s : s + block]
            self._store_write(rows[o], np.asarray(jdata[o]))
        self._versions[rows] = vers
        self._sums[rows] = sums
        self._store_commit(self._versions, self._sums, committed)
        self.committed_version = int(committed)

    def _replay(self, marker: dict) -> None:
        """Apply a journal left by another bank object (verified first) and remove it."""
        n = int(marker["n_slots"])
        if (
            marker.get("row_bytes") != self._row_bytes
            or not os.path.exists(self._jindex)
            or _sha256(self._jindex) != marker["index_sha256"]
            or not os.path.exists(self._jpath)
            or os.path.getsize(self._jpath) < n * self._row_bytes
        ):
            raise BankError(
                f"bank {self.path}: the journal of commit {marker['committed_version']} is damaged "
                f"({self._jpath}*); the bank cannot be brought to that version"
            )
        index = np.load(self._jindex)
        jdata = np.memmap(self._jpath, dtype=self._np_dtype, mode="r", shape=(n, self.n_views, self.dim))
        sums = index[:, 2].view(np.uint64)
        block = max(1, self._apply_block_bytes // self._row_bytes)
        for s in range(0, n, block):
            if (_row_sums(np.asarray(jdata[s : s + block])) != sums[s : s + block]).any():
                raise BankError(f"bank {self.path}: the journal of commit {marker['committed_version']} "
                                f"({self._jpath}) does not match its checksums; the bank cannot be brought to "
                                f"that version. {_DAMAGED_ADVICE}")
        self._apply(index[:, 0], index[:, 1], sums, jdata, int(marker["committed_version"]))
        del jdata
        self._remove_journal()
