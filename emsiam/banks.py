"""Target banks: the cached targets η_x of the alternation, indexed by image id.

A bank is an (N, V, d) array of targets plus an int64 version per row (the outer
iteration or step that last wrote it; -1 = never written). Backends
(``make_bank``): ``device`` (one tensor), ``disk`` (one HDF5 file) and ``memmap``
(a raw ``.npy`` file plus a ``<path>.meta.npz`` sidecar). The file banks journal
every write and commit atomically, keep a checksum per row, lock the file for one
process and belong to one run. Design, crash protocol, file formats and
throughput: docs/banks.md.

Semantics common to all backends:

- ``read(idx)``: (B, V, d) float32 on ``bank.device``; never-written rows are zeros;
  duplicates allowed. ``write``/``ema_update`` need unique ids within a call.
- ``write(idx, eta, version)``; ``ema_update(idx, value, m, version)``:
  η ← m·η + (1−m)·value in fp32, stored in the bank dtype.
- ``flush()`` commits everything written so far (``committed_version`` becomes the
  largest version written). Reads always see every write (read-your-writes).
- ``prepare()`` then ``commit()``: the same commit in two phases, around a
  checkpoint: ``prepare`` makes it durable and names its version (which
  ``state_dict`` then reports), ``commit`` applies it once the checkpoint is
  written. ``load_state_dict`` brings a file bank to the checkpoint's version:
  it applies a prepared commit the checkpoint names, or discards one it does not.
- ``state_dict()``: tensors/ints/strings only. Device bank: the data itself. File
  banks: where the file is and which committed version the checkpoint expects.
- ``close()`` does not commit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import os
import resource
import shutil
import socket
import time
import uuid
import warnings
import weakref
import zipfile
import zlib
from abc import ABC, abstractmethod

import numpy as np
import torch

__all__ = ["BankError", "TargetBank", "DeviceBank", "DiskBank", "MemmapBank", "make_bank", "BACKENDS"]

FORMAT = "emsiam-target-bank"
FORMAT_VERSION = 2  # bank files: 2 added per-row checksums and the owning run's id
STATE_VERSION = 1  # state_dict() layout
BACKENDS = ("device", "disk", "memmap")
_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_NP_DTYPES = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16)}
_BACKEND_DTYPES = {"device": ("fp32", "fp16", "bf16"), "disk": ("fp32", "fp16"), "memmap": ("fp32", "fp16")}
_META_FIELDS = ("n_rows", "n_views", "dim", "dtype", "fingerprint")

# One bank object per file per process: a second one would share the journal.
_OPEN_FILES: "weakref.WeakValueDictionary[str, TargetBank]" = weakref.WeakValueDictionary()


class BankError(ValueError):
    """Invalid bank arguments, a bank file that does not match the run, or misuse."""


_DAMAGED_ADVICE = ("The run cannot resume from this bank: start it again with a fresh bank (a new name=..., "
                   "or move the bank files away first).")


def _old_format(path: str, version) -> BankError:
    return BankError(f"{path} is a bank of format_version {version}; this code reads format_version "
                     f"{FORMAT_VERSION} (with row checksums) only. Start the run again with a fresh bank "
                     f"(move the file away or use another path)")


# --------------------------------------------------------------------------- helpers


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise BankError(f"{name} must be a positive int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise BankError(f"{name} must be a positive int, got {value!r}") from None
    if v < 1:
        raise BankError(f"{name} must be a positive int, got {v}")
    return v


def _check_version(version) -> int:
    if isinstance(version, bool):
        raise BankError(f"version must be an int >= 0, got {version!r}")
    try:
        v = operator.index(version)
    except TypeError:
        raise BankError(f"version must be an int >= 0, got {version!r}") from None
    if v < 0:
        raise BankError(f"version must be >= 0 (-1 marks never-written rows), got {v}")
    return v


def _check_m(m) -> float:
    try:
        m = float(m)
    except (TypeError, ValueError):
        raise BankError(f"EMA momentum m must be a float in [0, 1], got {m!r}") from None
    if not 0.0 <= m <= 1.0:
        raise BankError(f"EMA momentum m must be in [0, 1], got {m}")
    return m


def _as_index(idx) -> torch.Tensor:
    idx = torch.as_tensor(idx)
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise BankError(f"idx must be an integer tensor of image ids, got dtype {idx.dtype}")
    if idx.dim() != 1:
        raise BankError(f"idx must be 1-D (B,), got shape {tuple(idx.shape)}")
    return idx


def _check_bounds_cpu(idx: torch.Tensor, n_rows: int) -> None:
    if idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= n_rows:
            raise BankError(f"idx out of range: ids must be in [0, {n_rows}), got min {lo} max {hi}")


def _check_values(name: str, x, n: int, n_views: int, dim: int) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not x.dtype.is_floating_point:
        raise BankError(f"{name} must be a float tensor, got dtype {x.dtype}")
    if tuple(x.shape) != (n, n_views, dim):
        raise BankError(f"{name} must have shape (B, n_views, dim) = {(n, n_views, dim)}, got {tuple(x.shape)}")
    return x.detach()


def _ema(cur: torch.Tensor, value: torch.Tensor, m: float) -> torch.Tensor:
    """m·cur + (1−m)·value in fp32; the one formula every backend uses."""
    return cur.float() * m + value.float() * (1.0 - m)


def _parse_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BankError(f"invalid device {device!r}: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BankError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BankError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    elif dev.type not in ("cpu", "mps"):
        raise BankError(f"unsupported device {device!r}")
    return dev


def _available_ram() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_into_place(tmp: str, path: str) -> None:
    """Move a finished file to `path`, failing (never overwriting) if `path` exists."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        raise BankError(f"{path} appeared while the bank was being created; refusing to overwrite it") from None
    except OSError:  # filesystems without hard links
        if os.path.exists(path):
            os.unlink(tmp)
            raise BankError(f"{path} appeared while the bank was being created; refusing to overwrite it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- row checksums


@functools.lru_cache(maxsize=8)
def _sum_weights(n_words: int) -> np.ndarray:
    """Fixed odd 64-bit weights (splitmix64 of the word position): part of the file format."""
    x = np.arange(1, n_words + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x | np.uint64(1)


def _row_sums(data: np.ndarray) -> np.ndarray:
    """(B,) uint64 checksum of each row's bytes: sum_i w_i * word_i mod 2^64, w_i odd.

    Any change to one word changes the sum; random bytes go unnoticed with probability
    ~2^-64. ~5x faster than zlib.crc32 per row (docs/banks.md)."""
    b = data.shape[0]
    if b == 0:
        return np.empty(0, np.uint64)
    raw = np.ascontiguousarray(data).reshape(b, -1).view(np.uint8)
    size = raw.shape[1]
    word = next(w for w in (8, 4, 2, 1) if size % w == 0)
    words = raw.view(np.dtype(f"<u{word}"))
    if word != 8:
        words = words.astype(np.uint64)
    return np.einsum("ij,j->i", words, _sum_weights(words.shape[1]))


def _table_check(versions: np.ndarray, sums: np.ndarray) -> int:
    """crc32 of the versions and row checksums, kept beside them."""
    return zlib.crc32(np.ascontiguousarray(sums), zlib.crc32(np.ascontiguousarray(versions)))


# --------------------------------------------------------------------------- the bank lock


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


def _hdf5_locked(e: OSError) -> bool:
    """h5py's error for a file that HDF5's own lock (errno 11) keeps from us."""
    msg = str(e).lower()
    return "errno = 11" in msg or "unable to lock file" in msg


# --------------------------------------------------------------------------- base


class TargetBank(ABC):
    """Per-image targets η: (n_rows, n_views, dim) plus an int64 version per row."""

    backend: str = ""
    n_rows: int  # N images, indexed by image id 0..N-1
    n_views: int  # target slots per image: 2 for k-step (one per view), 1 for EMA
    dim: int  # d
    dtype: str  # storage dtype: "fp32" | "fp16" | "bf16"
    device: torch.device  # where read() / versions() return tensors
    fingerprint: str  # the run-config digest the bank belongs to
    committed_version: int  # the last outer iteration committed by flush(); -1 if none

    @abstractmethod
    def read(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, n_views, d) float32 on self.device for image ids idx (B,)."""

    @abstractmethod
    def write(self, idx: torch.Tensor, eta: torch.Tensor, version: int) -> None:
        """Store eta (B, n_views, d) at rows idx (unique) in the bank dtype; set their version."""

    @abstractmethod
    def ema_update(self, idx: torch.Tensor, value: torch.Tensor, m: float, version: int) -> None:
        """η_idx ← m·η_idx + (1−m)·value, in fp32, stored in the bank dtype; set their version."""

    @abstractmethod
    def versions(self, idx: torch.Tensor) -> torch.Tensor:
        """int64 (B,) version of each row; -1 for never written."""

    @abstractmethod
    def flush(self) -> None:
        """Commit the current outer iteration."""

    @abstractmethod
    def prepare(self) -> int:
        """Phase 1 of a commit around a checkpoint: make it durable; returns its version."""

    @abstractmethod
    def commit(self) -> None:
        """Phase 2: apply the prepared commit (after the checkpoint naming it is written)."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Checkpoint state: tensors, ints and strings only."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore (device) or verify (file banks) the state; BankError on mismatch."""

    @abstractmethod
    def close(self) -> None:
        """Release memory / files. Does not commit."""

    @property
    def nbytes(self) -> int:
        return self.n_rows * self.n_views * self.dim * _TORCH_DTYPES[self.dtype].itemsize

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_rows={self.n_rows}, n_views={self.n_views}, dim={self.dim}, "
            f"dtype={self.dtype!r}, committed_version={self.committed_version}, {_gib(self.nbytes)})"
        )

    def _check_state_header(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise BankError(f"bank state must be a dict, got {type(state).__name__}")
        backend = state.get("backend")
        if backend != self.backend:
            raise BankError(f"bank state is from a {backend!r} bank, this bank is {self.backend!r}")
        if state.get("format_version") != STATE_VERSION:
            raise BankError(f"bank state has format_version {state.get('format_version')!r}, expected {STATE_VERSION}")
        diffs = [
            f"{k}: checkpoint {state.get(k)!r}, this bank {getattr(self, k)!r}"
            for k in _META_FIELDS
            if state.get(k) != getattr(self, k)
        ]
        if diffs:
            raise BankError("bank state does not match this bank (" + "; ".join(diffs) + ")")


# --------------------------------------------------------------------------- device


class DeviceBank(TargetBank):
    """The bank as one (N, V, d) tensor on a device (CPU or CUDA)."""

    backend = "device"

    def __init__(
        self, n_rows: int, n_views: int, dim: int, *, dtype: str = "fp32", device="cpu", fingerprint: str = ""
    ):
        _validate(self.backend, n_rows, n_views, dim, dtype, device, None, fingerprint, 0)
        self.n_rows, self.n_views, self.dim = int(n_rows), int(n_views), int(dim)
        self.dtype, self.fingerprint = dtype, fingerprint
        self.device = torch.device(device)
        self.committed_version = -1
        self._pending_max = -1
        self._eta = torch.zeros((self.n_rows, self.n_views, self.dim), dtype=_TORCH_DTYPES[dtype], device=self.device)
        self._version = torch.full((self.n_rows,), -1, dtype=torch.int64, device=self.device)

    def _idx(self, idx) -> torch.Tensor:
        self._check_open()
        idx = _as_index(idx)
        if idx.device.type == "cpu":  # checking a device tensor would sync the host
            _check_bounds_cpu(idx, self.n_rows)
        return idx.to(self.device, torch.int64, non_blocking=True)

    def _check_open(self) -> None:
        if self._eta is None:
            raise BankError("the bank is closed")

    def read(self, idx):
        idx = self._idx(idx)
        return self._eta.index_select(0, idx).float()  # (B, V, d)

    def write(self, idx, eta, version):
        idx = self._idx(idx)
        version = _check_version(version)
        eta = _check_values("eta", eta, idx.shape[0], self.n_views, self.dim)
        self._eta.index_copy_(0, idx, eta.to(self.device, self._eta.dtype))
        self._version.index_fill_(0, idx, version)
        self._pending_max = max(self._pending_max, version)

    def ema_update(self, idx, value, m, version):
        idx = self._idx(idx)
        version, m = _check_version(version), _check_m(m)
        value = _check_values("value", value, idx.shape[0], self.n_views, self.dim).to(self.device)
        new = _ema(self._eta.index_select(0, idx), value, m)
        self._eta.index_copy_(0, idx, new.to(self._eta.dtype))
        self._version.index_fill_(0, idx, version)
        self._pending_max = max(self._pending_max, version)

    def versions(self, idx):
        return self._version.index_select(0, self._idx(idx))

    def flush(self):
        self._check_open()
        self.committed_version = max(self.committed_version, self._pending_max)
        self._pending_max = -1

    def prepare(self):
        self.flush()  # the checkpoint holds the data itself
        return self.committed_version

    def commit(self):
        self._check_open()

    def state_dict(self):
        self._check_open()
        return {
            "backend": self.backend,
            "format_version": STATE_VERSION,
            **{k: getattr(self, k) for k in _META_FIELDS},
            "committed_version": self.committed_version,
            "pending_version": self._pending_max,  # largest version written since the last flush
            "eta": self._eta,
            "version": self._version,
        }

    def load_state_dict(self, state):
        self._check_open()
        self._check_state_header(state)
        eta, version = state.get("eta"), state.get("version")
        if not isinstance(eta, torch.Tensor) or eta.shape != self._eta.shape or eta.dtype != self._eta.dtype:
            raise BankError(f"bank state 'eta' must be a {self._eta.dtype} tensor of shape {tuple(self._eta.shape)}")
        if not isinstance(version, torch.Tensor) or version.shape != (self.n_rows,) or version.dtype != torch.int64:
            raise BankError(f"bank state 'version' must be an int64 tensor of shape ({self.n_rows},)")
        self._eta.copy_(eta)
        self._version.copy_(version)
        self.committed_version = int(state["committed_version"])
        self._pending_max = int(state.get("pending_version", -1))

    def close(self):
        self._eta = self._version = None


# --------------------------------------------------------------------------- file banks


class _FileBank(TargetBank):
    """Journal, read-your-writes, atomic and two-phase commits, recovery, checksums and the lock,
    shared by the file backends (protocol: docs/banks.md). Subclasses provide the store: the
    bank file(s) proper, see the _store_* methods."""

    _apply_block_bytes = 64 << 20  # rows gathered from the journal per store write when applying
    _verify_block_bytes = 64 << 20  # rows read per block when verifying the whole store on open
    _journal_initial_bytes = 64 << 20  # first journal allocation (sparse); grows by doubling up to N rows

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

    # ---- store interface (subclasses)
    @abstractmethod
    def _store_exists(self) -> bool: ...

    @abstractmethod
    def _store_meta(self) -> dict:
        """The file's metadata, read without modifying anything; BankError if it is not a valid bank."""

    @abstractmethod
    def _store_create(self, meta: dict) -> dict:
        """Create the bank atomically (temp name, then link); return its metadata."""

    @abstractmethod
    def _store_open(self) -> None: ...

    @abstractmethod
    def _store_tables(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """Writable copies of the committed versions (N,) int64 and row checksums (N,) uint64, and
        whether they match their check value."""

    @abstractmethod
    def _store_read(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), V, d) bank-dtype rows; rows sorted, unique."""

    @abstractmethod
    def _store_read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1."""

    @abstractmethod
    def _store_write(self, rows: np.ndarray, data: np.ndarray) -> None:
        """Write rows (sorted, unique) of data (len(rows), V, d) in the bank dtype."""

    @abstractmethod
    def _store_commit(self, versions: np.ndarray, sums: np.ndarray, committed_version: int) -> None:
        """Write all versions, row checksums and committed_version; durable on return when self.durable."""

    @abstractmethod
    def _store_close(self) -> None: ...

    def _store_files(self) -> list[str]:
        return [self.path]

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

    # ---- journal state
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

    # ---- commits
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


class DiskBank(_FileBank):
    """The bank as datasets of one HDF5 file (h5py); writes journaled, committed by flush()."""

    backend = "disk"

    def __init__(self, path, n_rows, n_views, dim, *, dtype="fp32", device="cpu", fingerprint="", chunk_rows=0,
                 durable=True, run_id=""):
        self._f = None
        super().__init__(path, n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint,
                         durable=durable, chunk_rows=chunk_rows, run_id=run_id)

    def _store_exists(self):
        return os.path.exists(self.path)

    def _store_meta(self):
        import h5py

        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            if _hdf5_locked(e):
                raise _in_use(self.path, None) from None
            raise BankError(f"{self.path} exists and is not a readable HDF5 file ({e}); refusing to touch it. "
                            f"Delete it or use another path.") from None
        with f:
            a = f.attrs
            if a.get("format") != FORMAT or "eta" not in f or "version" not in f:
                raise BankError(f"{self.path} exists and is not an emsiam target bank; refusing to touch it. "
                                f"Delete it or use another path.")
            if int(a["format_version"]) != FORMAT_VERSION:
                raise _old_format(self.path, int(a["format_version"]))
            meta = {k: (str(a[k]) if k in ("dtype", "fingerprint") else int(a[k])) for k in _META_FIELDS}
            meta["file_id"] = str(a["file_id"])
            meta["run_id"] = str(a["run_id"])
            meta["committed_version"] = int(a["committed_version"])
            eta, ver = f["eta"], f["version"]
            shape = (meta["n_rows"], meta["n_views"], meta["dim"])
            if (eta.shape != shape or eta.dtype != _NP_DTYPES.get(meta["dtype"]) or ver.shape != shape[:1]
                    or "sum" not in f or f["sum"].shape != shape[:1]):
                raise BankError(f"{self.path} is damaged: its datasets do not match its attributes")
            self.chunk_rows = 0 if eta.chunks is None else int(eta.chunks[0])  # the file's layout wins
        return meta

    def _store_create(self, meta):
        import h5py

        tmp = f"{self.path}.creating-{os.getpid()}"
        _remove(tmp)
        versions, sums = np.full(self.n_rows, -1, np.int64), np.zeros(self.n_rows, np.uint64)  # zeros sum to 0
        try:
            with h5py.File(tmp, "w", libver="earliest") as f:  # superblock v0: no "open for write" flag
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # no metadata changes on data writes
                dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # sparse: unwritten rows read as 0
                chunks = None
                if self.chunk_rows:
                    chunks = (min(self.chunk_rows, self.n_rows), self.n_views, self.dim)
                f.create_dataset("eta", (self.n_rows, self.n_views, self.dim), dtype=self._np_dtype,
                                 chunks=chunks, dcpl=dcpl)
                f.create_dataset("version", data=versions)
                f.create_dataset("sum", data=sums)
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                for k, v in meta.items():
                    f.attrs[k] = v
                f.attrs["committed_version"] = np.int64(meta["committed_version"])
                f.attrs["table_check"] = np.int64(_table_check(versions, sums))
                f.attrs["chunk_rows"] = self.chunk_rows
            if self.durable:
                _fsync_path(tmp)
            _link_into_place(tmp, self.path)
            if self.durable:
                _fsync_dir(self.path)
        finally:
            _remove(tmp)
        return meta

    def _store_open(self):
        import h5py

        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
        fapl.set_sieve_buf_size(0)  # contiguous random rows: no 64 KiB read-around per row
        try:
            fid = h5py.h5f.open(self.path.encode(), h5py.h5f.ACC_RDWR, fapl=fapl)
        except OSError as e:
            if _hdf5_locked(e):
                raise _in_use(self.path, None) from None
            raise BankError(f"cannot open bank {self.path} for writing ({e})") from None
        self._f = h5py.File(fid)
        self._eta = self._f["eta"]
        self._ver = self._f["version"]
        self._sum = self._f["sum"]

    def _store_tables(self):
        versions, sums = self._ver[...], self._sum[...]
        return versions, sums, int(self._f.attrs["table_check"]) == _table_check(versions, sums)

    def _store_read(self, rows):
        if rows.size == 0:
            return np.empty((0, self.n_views, self.dim), self._np_dtype)
        return self._eta[rows]

    def _store_read_range(self, start, stop):
        return self._eta[start:stop]

    def _store_write(self, rows, data):
        # Runs of consecutive rows go as slices (one contiguous write each); the rest in one selection.
        if rows.size == 0:
            return
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [rows.size]])
        long = (ends - starts) >= 16
        for s, e in zip(starts[long], ends[long]):
            self._eta[int(rows[s]) : int(rows[s]) + int(e - s)] = data[s:e]
        if not long.all():
            pick = np.flatnonzero(~np.repeat(long, ends - starts))
            self._eta[rows[pick]] = data[pick]

    def _store_commit(self, versions, sums, committed_version):
        self._ver[...] = versions
        self._sum[...] = sums
        a = self._f.attrs  # in place: same type and size
        a.modify("committed_version", np.int64(committed_version))
        a.modify("table_check", np.int64(_table_check(versions, sums)))
        self._f.flush()
        if self.durable:
            os.fsync(self._f.id.get_vfd_handle())

    def _store_close(self):
        if self._f is not None:
            self._f.close()
            self._f = None


class MemmapBank(_FileBank):
    """The bank as a raw .npy file used through np.memmap, plus a <path>.meta.npz sidecar (metadata,
    versions and row checksums, replaced atomically at each commit; its presence marks a complete bank)."""

    backend = "memmap"

    def __init__(self, path, n_rows, n_views, dim, *, dtype="fp32", device="cpu", fingerprint="", durable=True,
                 run_id=""):
        self._mm = None
        p = os.path.abspath(os.fspath(path)) if path is not None else None
        self._meta_path = None if p is None else p + ".meta.npz"
        super().__init__(path, n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint,
                         durable=durable, run_id=run_id)

    def _store_exists(self):
        return os.path.exists(self.path) or os.path.exists(self._meta_path)

    def _store_files(self):
        return [self.path, self._meta_path]

    def _load_sidecar(self):
        try:
            with np.load(self._meta_path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"][()]))
                if meta.get("format_version") != FORMAT_VERSION:
                    return meta, None, None
                return meta, np.array(z["version"]), np.array(z["sum"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise BankError(f"{self._meta_path} is not a readable bank sidecar ({e}); refusing to touch the bank. "
                            f"{_DAMAGED_ADVICE}") from None

    def _store_meta(self):
        if not os.path.exists(self._meta_path):
            raise BankError(f"{self.path} exists without its sidecar {os.path.basename(self._meta_path)}: not a bank, "
                            f"or its creation was interrupted; refusing to touch it. Delete it or use another path.")
        if not os.path.exists(self.path):
            raise BankError(f"{self._meta_path} exists but its data file {self.path} is missing; "
                            f"delete the sidecar or use another path.")
        meta, versions, sums = self._load_sidecar()
        if meta.get("format") != FORMAT:
            raise BankError(f"{self.path} is not an emsiam target bank")
        if meta.get("format_version") != FORMAT_VERSION:
            raise _old_format(self.path, meta.get("format_version"))
        with open(self.path, "rb") as f:
            try:
                major, _ = np.lib.format.read_magic(f)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if major == 1
                                         else np.lib.format.read_array_header_2_0(f))
            except ValueError as e:
                raise BankError(f"{self.path} is not a .npy file ({e}); refusing to touch it") from None
        expect = (meta["n_rows"], meta["n_views"], meta["dim"])
        if (tuple(shape) != expect or fortran or dtype != _NP_DTYPES.get(meta["dtype"])
                or versions.shape != expect[:1] or sums.shape != expect[:1]):
            raise BankError(f"{self.path} is damaged: its header or versions do not match its sidecar")
        meta.setdefault("run_id", "")
        return meta

    def _write_sidecar(self, meta: dict, versions: np.ndarray, sums: np.ndarray, target: str) -> None:
        meta = {**meta, "table_check": _table_check(versions, sums)}
        tmp = target + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), version=versions, sum=sums)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        os.replace(tmp, target)
        if self.durable:
            _fsync_dir(target)

    def _store_create(self, meta):
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
        tmp = f"{self.path}.creating-{os.getpid()}"
        _remove(tmp)
        try:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=self._np_dtype,
                                           shape=(self.n_rows, self.n_views, self.dim))  # sparse zeros
            del mm
            if self.durable:
                _fsync_path(tmp)
            _link_into_place(tmp, self.path)
        finally:
            _remove(tmp)
        # The sidecar last: its presence marks a complete bank. Rows of zeros have checksum 0.
        self._write_sidecar(meta, np.full(self.n_rows, -1, np.int64), np.zeros(self.n_rows, np.uint64),
                            self._meta_path)
        return meta

    def _store_open(self):
        self._mm = np.load(self.path, mmap_mode="r+")
        self._meta = self._load_sidecar()[0]

    def _store_tables(self):
        meta, versions, sums = self._load_sidecar()
        return versions, sums, meta.get("table_check") == _table_check(versions, sums)

    def _store_read(self, rows):
        return self._mm[rows]

    def _store_read_range(self, start, stop):
        return self._mm[start:stop]

    def _store_write(self, rows, data):
        self._mm[rows] = data

    def _store_commit(self, versions, sums, committed_version):
        if self.durable:
            self._mm.flush()  # msync the rows before the sidecar names them committed
        self._meta["committed_version"] = int(committed_version)
        self._write_sidecar(self._meta, versions, sums, self._meta_path)

    def _store_close(self):
        self._mm = None


# --------------------------------------------------------------------------- factory


def _validate(backend, n_rows, n_views, dim, dtype, device, path, fingerprint, chunk_rows, run_id="") -> None:
    """All argument checks, before anything is allocated or created."""
    if backend not in BACKENDS:
        raise BankError(f"unknown bank backend {backend!r}; choose one of {BACKENDS}")
    n_rows, n_views, dim = (_positive_int(k, v) for k, v in (("n_rows", n_rows), ("n_views", n_views), ("dim", dim)))
    if dtype not in _BACKEND_DTYPES[backend]:
        hint = " (HDF5/numpy have no bfloat16; use fp16)" if dtype == "bf16" else ""
        raise BankError(f"dtype {dtype!r} is not supported by the {backend!r} bank; "
                        f"choose one of {_BACKEND_DTYPES[backend]}{hint}")
    if not isinstance(fingerprint, str):
        raise BankError(f"fingerprint must be a str, got {type(fingerprint).__name__}")
    if not isinstance(run_id, str):
        raise BankError(f"run_id must be a str, got {type(run_id).__name__}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 0:
        raise BankError(f"chunk_rows must be an int >= 0 (0 = contiguous), got {chunk_rows!r}")
    dev = _parse_device(device)
    nbytes = n_rows * n_views * dim * _TORCH_DTYPES[dtype].itemsize + 8 * n_rows
    if backend == "device":
        if path is not None:
            raise BankError("path is only used by the 'disk' and 'memmap' backends; the device bank lives in memory")
        if dev.type == "cuda":
            free, _ = torch.cuda.mem_get_info(dev)
            where = f"GPU memory on {dev}"
        else:
            free, where = _available_ram(), "RAM"
        if free is not None and nbytes > 0.9 * free:
            raise BankError(
                f"a device bank of {n_rows} x {n_views} x {dim} {dtype} needs {_gib(nbytes)} but only {_gib(free)} "
                f"of {where} is available; use backend='disk' (or 'memmap') with a path"
                + (", or dtype='fp16'" if dtype == "fp32" else "")
            )
    else:
        if path is None:
            raise BankError(f"the {backend!r} bank needs a path (the bank file to create or reopen)")
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        if not os.path.isdir(parent):
            raise BankError(f"directory {parent} of bank path {path!r} does not exist")
        if os.path.isdir(path):
            raise BankError(f"bank path {path!r} is a directory; give a file name")


def make_bank(
    backend: str,
    n_rows: int,
    n_views: int,
    dim: int,
    *,
    dtype: str = "fp32",
    device="cpu",
    path: str | None = None,
    fingerprint: str = "",
    chunk_rows: int = 0,
    durable: bool = True,
    run_id: str = "",
) -> TargetBank:
    """Create a bank, or reopen the file bank at `path` (which must match the run).

    Args:
        backend: "device" (tensor on `device`), "disk" (HDF5 file) or "memmap" (.npy + sidecar).
        n_rows, n_views, dim: N images, targets per image (2 for k-step, 1 for EMA), d.
        dtype: storage dtype: "fp32", "fp16", or "bf16" (device only).
        device: where read()/versions() return tensors (and where the device bank lives).
        path: the bank file (disk/memmap). Reopened if it exists and matches, never overwritten.
        fingerprint: a digest of the run config; reopening with another one is refused.
        chunk_rows: disk only: 0 = contiguous dataset (fastest for random rows), >0 = HDF5 chunks
            of that many rows. Ignored when reopening (the file's layout is kept).
        durable: file banks: fsync at commit points (survive power loss, not just a killed process).
        run_id: file banks: the run the bank belongs to (e.g. its run directory); a file made for
            another run is refused even when the fingerprint matches. Ignored by the device bank.
    """
    _validate(backend, n_rows, n_views, dim, dtype, device, path, fingerprint, chunk_rows, run_id)
    if backend == "device":
        return DeviceBank(n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint)
    if backend == "disk":
        return DiskBank(path, n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint,
                        chunk_rows=chunk_rows, durable=durable, run_id=run_id)
    if chunk_rows:
        raise BankError("chunk_rows applies to the 'disk' (HDF5) backend only")
    return MemmapBank(path, n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint, durable=durable,
                      run_id=run_id)
