"""_FileBank: what the file backends share: opening or creating the bank file, the checks on
open (format, run, checksums), reads and writes through the journal, and closing.

It combines the journal (journal.py), the commit protocol (commit.py) and the lock
(lock.py); a subclass provides the store (store.py): DiskBank (hdf5.py), MemmapBank
(memmap.py).
"""

from __future__ import annotations

import os
import resource
import shutil
import uuid
import warnings
import weakref

import numpy as np
import torch

from .base import _DAMAGED_ADVICE, _META_FIELDS, _NP_DTYPES, _TORCH_DTYPES, BankError, TargetBank, _gib
from .checks import _as_index, _check_m, _check_values, _check_version, _ema, _validate
from .checksums import _row_sums
from .commit import _TwoPhaseCommit
from .files import _remove
from .journal import _Journal
from .lock import _lock, _write_owner
from .store import _Store

# One bank object per file per process: a second one would share the journal.
_OPEN_FILES: "weakref.WeakValueDictionary[str, TargetBank]" = weakref.WeakValueDictionary()


class _FileBank(_TwoPhaseCommit, _Journal, _Store, TargetBank):
    """Read-your-writes through the journal, checksums and the lock, shared by the file backends
    (protocol: docs/banks.md). Subclasses provide the store: the bank file(s) proper, see the
    _store_* methods (store.py)."""

    _verify_block_bytes = 64 << 20  # rows read per block when verifying the whole store on open

    def __init__(self, path, n_rows, n_views, dim, *, dtype, device, fingerprint, durable, chunk_rows=0,
                 run_id=""):
        _validate(self.backend, n_rows, n_views, dim, dtype, device, path, fingerprint, chunk_rows, run_id)
        self.path = os.path.abspath(os.fspath(path))
        self.n_rows, self.n_views, self.dim = int(n_rows), int(n_views), int(dim)
        self.dtype, self.fingerprint, self.run_id = dtype, fingerprint, run_id
        self.device = torch.device(device)
        self.durable = bool(durable)
        self.chunk_rows = int(chunk_rows)
        self._np_dtype = _NP_DTYPES[dtype]
        self._row_bytes = self.n_views * self.dim * self._np_dtype.itemsize
        self._jpath = self.path + ".journal"
        self._jindex = self.path + ".journal-index.npy"
        self._jcommit = self.path + ".journal-commit.json"
        self._lock_path = self.path + ".lock"
        self._lockf = None
        self._closed = True
        self._broken = False
        self._prepared = None  # marker of this object's prepared commit (awaiting commit())
        self._index = None  # (n, 3) int64 journal index (row, version, checksum) of a sealed journal
        self._pending = None  # marker of a prepared commit found on open (awaiting load_state_dict)
        self._reset_journal_state()
        self._slot = None  # (N,) int64 journal slot of each row, -1 if none; allocated on first write
        self.recovered_version = None  # committed version reached by replaying a journal, if any

        other = _OPEN_FILES.get(self.path)
        if other is not None and not getattr(other, "_closed", True):
            raise BankError(f"{self.path} is already open in this process ({other!r}); close it first")
        self._lockf, created_lock = _lock(self.path, self._lock_path)
        try:
            meta = self._open_or_create()
        except BaseException:
            self._lockf.close()
            self._lockf = None
            if created_lock:
                _remove(self._lock_path)
            raise
        _write_owner(self._lockf, run_id)
        self._file_id = meta["file_id"]
        self.committed_version = int(meta["committed_version"])
        self._closed = False
        _OPEN_FILES[self.path] = self
        try:
            self._store_open()
            self._versions, self._sums, tables_ok = self._store_tables()  # (N,) int64, (N,) uint64
            self._recover()
            if not tables_ok and self.recovered_version is None:
                raise BankError(f"bank {self.path} is damaged: its versions or row checksums do not match their "
                                f"check value. {_DAMAGED_ADVICE}")
            if not self.created:
                self._verify_store()
        except BaseException:
            self._release()
            raise

    def _open_or_create(self) -> dict:
        requested = {k: getattr(self, k) for k in _META_FIELDS}
        if not self._store_exists():
            self._check_disk_space()
            self.created = True
            return self._store_create({**requested, "run_id": self.run_id, "file_id": uuid.uuid4().hex,
                                       "committed_version": -1})
        meta = self._store_meta()  # read-only
        diffs = [(k, meta[k], requested[k]) for k in _META_FIELDS if meta[k] != requested[k]]
        if diffs:
            what = "; ".join(f"{k}: file has {a!r}, this run asks for {b!r}" for k, a, b in diffs)
            raise BankError(
                f"refusing to open bank {self.path}: it belongs to another run ({what}). "
                f"It was left untouched. Delete it (and its {os.path.basename(self._jpath)}* files) "
                f"or use another path."
            )
        if meta["run_id"] != self.run_id:
            raise BankError(
                f"refusing to open bank {self.path}: it belongs to run {meta['run_id'] or '(unnamed)'!r}, and this "
                f"is run {self.run_id or '(unnamed)'!r}. It was left untouched. Give this run a bank of its own "
                f"(another bank_path), or resume that run instead."
            )
        self.created = False
        return meta

    # ---- checks
    def _check_disk_space(self) -> None:
        need = self.nbytes + 16 * self.n_rows
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]  # a process file-size cap (ulimit -f)
        if limit != resource.RLIM_INFINITY and need > limit:  # HDF5 can crash on a failed write: refuse first
            raise BankError(
                f"bank {self.path} needs {_gib(need)} but this process may write files of at most "
                f"{_gib(limit)} (ulimit -f); raise the limit, or use dtype='fp16' or fewer rows"
            )
        free = shutil.disk_usage(os.path.dirname(self.path)).free
        if need > free:
            raise BankError(
                f"bank {self.path} needs {_gib(need)} but only {_gib(free)} is free on that disk; "
                f"use another path, dtype='fp16' or fewer rows"
            )
        if 2 * need > free:
            warnings.warn(
                f"bank {self.path}: {_gib(free)} free; its journal can grow to the size of the bank "
                f"({_gib(need)}) between two checkpoints",
                stacklevel=4,
            )

    def _check_usable(self) -> None:
        if self._closed:
            raise BankError(f"bank {self.path} is closed")
        if self._broken:
            raise BankError(
                f"a commit of bank {self.path} failed after its commit point; close the bank and open it "
                f"again: opening finishes the commit from the journal"
            )

    def _check_rows(self, rows: np.ndarray, data: np.ndarray) -> None:
        """Raise if rows read from the store do not match their checksums."""
        bad = np.flatnonzero(_row_sums(data) != self._sums[rows])
        if bad.size:
            self._raise_damaged(rows[bad])

    def _raise_damaged(self, rows: np.ndarray) -> None:
        shown = ", ".join(str(int(r)) for r in rows[:8]) + (", ..." if rows.size > 8 else "")
        raise BankError(f"bank {self.path} is damaged: {rows.size} row(s) do not match their checksums "
                        f"(rows {shown}). {_DAMAGED_ADVICE}")

    def _verify_store(self) -> None:
        """Every row of the store against its checksum (on open)."""
        block = max(1, self._verify_block_bytes // self._row_bytes)
        bad = []
        for s in range(0, self.n_rows, block):
            e = min(s + block, self.n_rows)
            bad.append(s + np.flatnonzero(_row_sums(self._store_read_range(s, e)) != self._sums[s:e]))
        bad = np.concatenate(bad)
        if bad.size:
            self._raise_damaged(bad)

    def _rows(self, idx, unique: bool) -> np.ndarray:
        self._check_usable()
        idx = _as_index(idx)
        rows = idx.detach().to("cpu", torch.int64).numpy()
        if rows.size:
            lo, hi = int(rows.min()), int(rows.max())
            if lo < 0 or hi >= self.n_rows:
                raise BankError(f"idx out of range: ids must be in [0, {self.n_rows}), got min {lo} max {hi}")
            if unique and rows.size > 1:
                s = np.sort(rows)
                if (s[1:] == s[:-1]).any():
                    raise BankError("idx has duplicate ids; write/ema_update need unique ids within a call")
        return rows

    def _values(self, name, x, n) -> np.ndarray:
        x = _check_values(name, x, n, self.n_views, self.dim)
        return x.to(_TORCH_DTYPES[self.dtype]).to("cpu").contiguous().numpy()  # convert, then copy

    # ---- reads and writes
    def _read_np(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((rows.shape[0], self.n_views, self.dim), self._np_dtype)
        rest = None  # positions to read from the store; None = all
        if self._n:
            slots = self._slot[rows]
            hit = slots >= 0
            if hit.any():
                out[hit] = self._jmm[slots[hit]]
                rest = np.flatnonzero(~hit)
                if rest.size == 0:
                    return out
        r = rows if rest is None else rows[rest]
        uniq, inv = np.unique(r, return_inverse=True)
        data = self._store_read(uniq)
        self._check_rows(uniq, data)
        if rest is None:
            np.take(data, inv, axis=0, out=out)
        else:
            out[rest] = data[inv]
        return out

    def _write_np(self, rows: np.ndarray, data: np.ndarray, version: int) -> None:
        if rows.size == 0:
            return
        slots = self._journal_rows(rows)
        self._jmm[slots] = data
        self._jvers[slots] = version
        self._versions[rows] = version
        self._pending_max = max(self._pending_max, version)

    def _out(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x)
        if self.device.type != "cpu":
            t = t.to(self.device)  # copy in the bank dtype, then convert
        return t.float()

    def read(self, idx):
        return self._out(self._read_np(self._rows(idx, unique=False)))

    def write(self, idx, eta, version):
        rows = self._rows(idx, unique=True)
        version = _check_version(version)
        self._write_np(rows, self._values("eta", eta, rows.shape[0]), version)

    def ema_update(self, idx, value, m, version):
        rows = self._rows(idx, unique=True)
        version, m = _check_version(version), _check_m(m)
        value = _check_values("value", value, rows.shape[0], self.n_views, self.dim).to("cpu")
        cur = torch.from_numpy(self._read_np(rows))
        new = _ema(cur, value, m).to(_TORCH_DTYPES[self.dtype]).numpy()
        self._write_np(rows, new, version)

    def versions(self, idx):
        rows = self._rows(idx, unique=False)
        return torch.from_numpy(self._versions[rows]).to(self.device)

    # ---- closing
    def _release(self) -> None:
        try:
            self._jmm = None
            if self._jfd is not None:
                os.close(self._jfd)
                self._jfd = None
            self._store_close()
        finally:
            self._closed = True
            if self._lockf is not None:
                self._lockf.close()
                self._lockf = None
            if _OPEN_FILES.get(self.path) is self:
                del _OPEN_FILES[self.path]

    def close(self):
        if self._closed:
            return
        if self._prepared is not None and not self._broken:
            warnings.warn(
                f"closing bank {self.path} with a prepared commit (version {self._target_version()}): kept; "
                f"the next load_state_dict applies it if its checkpoint was written, and drops it otherwise",
                stacklevel=2,
            )
        elif self._n and not self._broken:
            warnings.warn(
                f"closing bank {self.path} with {self._n} unflushed rows: they are discarded "
                f"(call flush() to commit them)",
                stacklevel=2,
            )
        keep = self._broken or self._prepared is not None or self._pending is not None
        self._release()
        if not keep:  # a broken commit or a prepared one stays for the next open
            self._close_journal()
            self._remove_journal()
        self._slot = self._versions = self._sums = None
