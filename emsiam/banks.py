"""Target banks: the cached targets η_x of the alternation, indexed by image id.

The outer loop (E-step) writes one target per view for every image of an outer
iteration; the inner loop (M-step) reads them back by image id. The EMA variant
keeps one target per image for the whole run and updates it in place every step
(design/alternation.md, "Bank sizes" and "Variant ema"). A bank is an (N, V, d)
array of targets plus an int64 version per row (the outer iteration, or step,
that last wrote it; -1 = never written), so that staleness can be measured.

Backends (``make_bank(backend, ...)``):

- ``device``: one tensor on CPU or CUDA, fp32/fp16/bf16. index_select /
  index_copy_, no Python loops, no host sync. ``flush`` only advances
  ``committed_version``. For everything that fits in memory (k-step with small
  k; CIFAR: 50k x 2 x 2048 fp32 = 0.8 GB).
- ``disk``: one HDF5 file (h5py), for ImageNet scale without holding the bank in
  RAM (1,281,167 x 1 x 2048 fp16 = 5.2 GB; x 2 views = 10.5 GB). Datasets
  ``eta`` (N, V, d) fp16/fp32 and ``version`` (N,) int64; file attributes
  ``n_rows, n_views, dim, dtype, fingerprint, committed_version, file_id,
  format, format_version, chunk_rows``.
- ``memmap``: the same data as a raw ``.npy`` file used through ``np.memmap``,
  plus a sidecar ``<path>.meta.npz`` holding the metadata (JSON) and the
  versions, replaced atomically at each commit.

All file banks share the same write path and crash-safety mechanism.

Semantics common to all backends:

- ``read(idx)`` returns (B, V, d) float32 on ``bank.device``; never-written rows
  read as zeros. ``idx`` is int64 (B,), any order; duplicates are allowed in
  reads. In ``write``/``ema_update`` indices must be unique within one call:
  file banks raise BankError on duplicates, the device bank does not check (that
  would need a host sync) and then keeps an unspecified one of them.
- ``write(idx, eta, version)`` stores eta (B, V, d; any float dtype/device)
  rounded to the bank dtype and sets the rows' version (an int >= 0).
- ``ema_update(idx, value, m, version)``: η ← m·η + (1−m)·value, computed in
  fp32 by the same function on every backend, stored in the bank dtype. A
  never-written row counts as η = 0: initialise with ``write`` first.
- ``flush()`` commits the outer iteration: ``committed_version`` becomes the
  largest version written since the last flush (if larger). Reads always see
  every write so far, flushed or not (read-your-writes), on every backend.
- ``state_dict()`` holds tensors/ints/strings only (``torch.load(...,
  weights_only=True)`` works). Device bank: the data and versions themselves
  (references, like ``nn.Module.state_dict``). File banks: no data, only where
  the file is and which state it must be in: path, file_id (random, set at
  creation), fingerprint, shape, dtype and committed_version. A file bank
  refuses ``state_dict()`` while it holds unflushed writes (flush first), and
  ``load_state_dict`` checks that the file is that same bank at that same
  committed version, and raises BankError otherwise; uncommitted writes of the
  current object are discarded by it (they are not part of any checkpoint).
- ``close()`` does not commit: unflushed writes are discarded (with a warning).

Crash safety of file banks (a process killed at any point). An outer
iteration's writes never touch the bank file: they go to a journal next to it
(``<path>.journal``, a raw array of rows in the bank dtype, appended in place, a
row written twice in one iteration reuses its slot, so it never outgrows the
bank), with the row ids, versions
and the slot of each row kept in RAM (16 B per journaled row + an 8 B/row slot
map + the (N,) versions: ~40 MB at ImageNet scale; the rows themselves live in
the page cache, not in process memory). Reads look up the slot map first
(read-your-writes). ``flush()``:
  1. msync + fsync the journal data, write ``<path>.journal-index.npy`` (row id
     and version per slot) and fsync it;
  2. write ``<path>.journal-commit.json`` (count, index checksum, new
     committed_version, bank file_id) by write-tmp + fsync + rename + fsync of
     the directory. This rename is the commit point;
  3. apply the journal to the bank in row order (bounded blocks), write the
     versions and committed_version, fsync;
  4. delete the commit marker, then the journal.
On open, a journal with a valid commit marker is applied again (idempotent:
the same rows get the same values) and removed; a journal without one is
discarded with a warning, leaving the bank at its previous committed version.
So a reopened bank always holds exactly one committed iteration, never a mix.
New files are created under a temporary name and linked into place when
complete; an existing file is never truncated or overwritten, and it is
validated read-only (n_rows, n_views, dim, dtype, fingerprint) before anything
is written, so a mismatched run leaves it byte-identical. HDF5 files use the
default (earliest) format bounds: superblock v0 keeps no "open for write" flag,
which with libver >= v110 would make a killed writer's file unopenable without
``h5clear``. Storage is allocated at creation (sparse, never filled), so raw data
writes never change HDF5 metadata. ``durable=False`` skips the fsyncs: still
safe against a killed process (the page cache survives it), not against power
loss or a kernel crash. Only one process may use a bank file at a time (HDF5
file locking; flock for memmap) and only one object per process.

Throughput at ImageNet scale (``benchmarks/bank_bench.py --rows 1281167 --dim 2048 --dtype
fp16 --batch 512 --seconds 20``: N = 1,281,167, V = 1, d = 2048, fp16 = 5.2 GB, B = 512 random
rows from a per-epoch permutation; 2 shared CPU cores, 24 GiB RAM, ext4 on a virtio disk that
writes ~360-500 MB/s; bank in the page cache; torch single-threaded; durable=True). Rows/s per
call as median batch / mean over the phase, and in brackets per epoch, i.e. including the
commit (flush) at the end of each epoch, the EMA engine's schedule:

                   read           write                 read+write            cold read
    disk (HDF5)    205k / 166k    493k / 130k  (57k)    126k /  89k  (48k)     15k /  10k
    memmap         533k / 463k    432k / 121k  (51k)    212k / 124k  (50k)    499k / 212k

Creating either bank takes < 0.2 s (sparse files); the first fill of every row (write +
flush) 34 s (disk) and 41 s (memmap). durable=False gave no measurable gain (at this size the
kernel's dirty-page limits force the same writeback before the commit returns). A commit
writes each row twice (journal, then bank: 8 KB per row here) and a full-epoch commit takes
~13 s, so the per-epoch figures are bound by the disk's write bandwidth (~50k rows/s here)
for both backends; the per-call figures are what one training step pays. The memmap backend
is the faster one per step (reads are a numpy gather instead of one HDF5 pread per row).
"Cold" is after dropping the files from the guest page cache (posix_fadvise); mmap faults
read ahead, one pread per row does not.

Why a sequential journal rather than in-place writes: on this machine random 4 KB row writes
into a large cached file run at ~6k rows/s (np.memmap, 5.3 GB file): each one left ~120 KB of
dirty page cache (large folios), so writeback throttled the writer. Appending to a journal and
applying it in row order keeps every write sequential.

Tuning notes (N = 200k, d = 2048 fp16, B = 512 sorted random rows): HDF5 chunked layouts are
slow for random rows through h5py selections: 1.2k-5.6k rows/s read or write for chunks of 1
to 256 rows (the chunk cache does not help; per-chunk ``read_direct_chunk`` reaches 55-80k).
The contiguous layout with the data sieve buffer disabled reads 230-330k rows/s (with the
default 64 KiB sieve: 68k) and writes 40-50k rows/s, bound by one ``pwrite`` per row (~60k
rows/s on this VM). Hence the disk bank is contiguous by default (``chunk_rows=0``; > 0 gives
HDF5 chunks of that many rows) and long runs of rows are written as slices when the journal is
applied. On 2 shared cores, any 2-thread torch op stalled ~8 ms whenever another process held
a core, so the benchmark runs torch single-threaded (``--threads``).
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import shutil
import uuid
import warnings
import weakref
from abc import ABC, abstractmethod

import numpy as np
import torch

__all__ = ["BankError", "TargetBank", "DeviceBank", "DiskBank", "MemmapBank", "make_bank", "BACKENDS"]

FORMAT = "emsiam-target-bank"
FORMAT_VERSION = 1
BACKENDS = ("device", "disk", "memmap")
_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_NP_DTYPES = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16)}
_BACKEND_DTYPES = {"device": ("fp32", "fp16", "bf16"), "disk": ("fp32", "fp16"), "memmap": ("fp32", "fp16")}
_META_FIELDS = ("n_rows", "n_views", "dim", "dtype", "fingerprint")

# One bank object per file per process: a second one would share the journal.
_OPEN_FILES: "weakref.WeakValueDictionary[str, TargetBank]" = weakref.WeakValueDictionary()


class BankError(ValueError):
    """Invalid bank arguments, a bank file that does not match the run, or misuse."""


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
        if state.get("format_version") != FORMAT_VERSION:
            raise BankError(f"bank state has format_version {state.get('format_version')!r}, expected {FORMAT_VERSION}")
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

    def state_dict(self):
        self._check_open()
        return {
            "backend": self.backend,
            "format_version": FORMAT_VERSION,
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
    """Journal, read-your-writes, atomic commit and recovery, shared by the file backends.

    Subclasses provide the store: the bank file(s) proper, see the _store_* methods.
    """

    _apply_block_bytes = 64 << 20  # rows gathered from the journal per store write when applying
    _journal_initial_bytes = 64 << 20  # first journal allocation (sparse); grows by doubling up to N rows

    def __init__(self, path, n_rows, n_views, dim, *, dtype, device, fingerprint, durable, chunk_rows=0):
        _validate(self.backend, n_rows, n_views, dim, dtype, device, path, fingerprint, chunk_rows)
        self.path = os.path.abspath(os.fspath(path))
        self.n_rows, self.n_views, self.dim = int(n_rows), int(n_views), int(dim)
        self.dtype, self.fingerprint = dtype, fingerprint
        self.device = torch.device(device)
        self.durable = bool(durable)
        self.chunk_rows = int(chunk_rows)
        self._np_dtype = _NP_DTYPES[dtype]
        self._row_bytes = self.n_views * self.dim * self._np_dtype.itemsize
        self._jpath = self.path + ".journal"
        self._jindex = self.path + ".journal-index.npy"
        self._jcommit = self.path + ".journal-commit.json"
        self._closed = True
        self._broken = False
        self._reset_journal_state()
        self._slot = None  # (N,) int64 journal slot of each row, -1 if none; allocated on first write

        other = _OPEN_FILES.get(self.path)
        if other is not None and not getattr(other, "_closed", True):
            raise BankError(f"{self.path} is already open in this process ({other!r}); close it first")
        requested = {k: getattr(self, k) for k in _META_FIELDS}
        if self._store_exists():
            meta = self._store_meta()  # read-only
            diffs = [(k, meta[k], requested[k]) for k in _META_FIELDS if meta[k] != requested[k]]
            if diffs:
                what = "; ".join(f"{k}: file has {a!r}, this run asks for {b!r}" for k, a, b in diffs)
                raise BankError(
                    f"refusing to open bank {self.path}: it belongs to another run ({what}). "
                    f"It was left untouched. Delete it (and its {os.path.basename(self._jpath)}* files) "
                    f"or use another path."
                )
            self.created = False
        else:
            self._check_disk_space()
            meta = self._store_create({**requested, "file_id": uuid.uuid4().hex, "committed_version": -1})
            self.created = True
        self._file_id = meta["file_id"]
        self.committed_version = int(meta["committed_version"])
        self._store_open()
        self._closed = False
        _OPEN_FILES[self.path] = self
        try:
            self.recovered_version = self._recover()  # committed version reached by replaying a journal, or None
            self._versions = self._store_versions()  # (N,) int64, committed + pending
        except BaseException:
            self._release()
            raise

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
    def _store_versions(self) -> np.ndarray:
        """A writable copy of the committed versions (N,) int64."""

    @abstractmethod
    def _store_read(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), V, d) bank-dtype rows; rows sorted, unique."""

    @abstractmethod
    def _store_write(self, rows: np.ndarray, data: np.ndarray) -> None:
        """Write rows (sorted, unique) of data (len(rows), V, d) in the bank dtype."""

    @abstractmethod
    def _store_commit(self, versions: np.ndarray, committed_version: int) -> None:
        """Write all versions and committed_version; durable on return when self.durable."""

    @abstractmethod
    def _store_close(self) -> None: ...

    def _store_files(self) -> list[str]:
        return [self.path]

    # ---- checks
    def _check_disk_space(self) -> None:
        need = self.nbytes + 8 * self.n_rows
        free = shutil.disk_usage(os.path.dirname(self.path)).free
        if need > free:
            raise BankError(
                f"bank {self.path} needs {_gib(need)} but only {_gib(free)} is free on that disk; "
                f"use another path, dtype='fp16' or fewer rows"
            )
        if 2 * need > free:
            warnings.warn(
                f"bank {self.path}: {_gib(free)} free; its journal can grow to the size of the bank "
                f"({_gib(need)}) during an outer iteration that rewrites every row",
                stacklevel=3,
            )

    def _check_usable(self) -> None:
        if self._closed:
            raise BankError(f"bank {self.path} is closed")
        if self._broken:
            raise BankError(
                f"a flush() of bank {self.path} failed after its commit point; close the bank and open it "
                f"again: opening finishes the commit from the journal"
            )

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
        self._n = 0  # journaled rows in this iteration
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
        os.replace(tmp, self._jcommit)  # the commit point
        if self.durable:
            _fsync_dir(self._jcommit)

    def _journal_rows(self, rows: np.ndarray) -> np.ndarray:
        """Journal slots for rows (unique), allocating new ones; (B,) int64."""
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

    # ---- commit
    def flush(self):
        self._check_usable()
        n = self._n
        if n == 0:
            return
        if self.durable:
            self._jmm.flush()
            os.fsync(self._jfd)
        index = np.stack([self._jrows[:n], self._jvers[:n]], axis=1)  # (n, 2): row id, version
        with open(self._jindex, "wb") as f:
            np.save(f, index)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        committed = max(self.committed_version, self._pending_max)
        marker = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "file_id": self._file_id,
            "n_slots": n,
            "row_bytes": self._row_bytes,
            "committed_version": committed,
            "index_sha256": _sha256(self._jindex),
        }
        self._write_marker(marker)
        # Committed: from here on a crash is finished by the next open.
        self._broken = True
        self._apply(index[:, 0], index[:, 1], self._jmm, committed, self._versions)
        self.committed_version = committed
        self._close_journal()
        self._remove_journal()
        self._broken = False

    def _apply(self, rows, vers, jdata, committed: int, versions: np.ndarray) -> None:
        """Copy journal slots to the store in row order, then versions and committed_version."""
        order = np.argsort(rows, kind="stable")
        block = max(1, self._apply_block_bytes // self._row_bytes)
        for s in range(0, order.shape[0], block):
            o = order[s : s + block]
            self._store_write(rows[o], np.asarray(jdata[o]))
        versions[rows] = vers
        self._store_commit(versions, committed)

    def _recover(self):
        jfiles = [p for p in (self._jpath, self._jindex, self._jcommit) if os.path.exists(p)]
        if not jfiles:
            return None
        recovered = None
        if os.path.exists(self._jcommit):
            with open(self._jcommit) as f:
                marker = json.load(f)
            if marker.get("file_id") != self._file_id:
                warnings.warn(
                    f"bank {self.path}: removing a committed journal that belongs to another bank file "
                    f"(file_id {marker.get('file_id')}, this file {self._file_id})",
                    stacklevel=3,
                )
            else:
                n = int(marker["n_slots"])
                if (
                    marker.get("row_bytes") != self._row_bytes
                    or not os.path.exists(self._jindex)
                    or _sha256(self._jindex) != marker["index_sha256"]
                    or not os.path.exists(self._jpath)
                    or os.path.getsize(self._jpath) < n * self._row_bytes
                ):
                    raise BankError(
                        f"bank {self.path}: the journal of a committed iteration is damaged "
                        f"({self._jpath}*); the bank cannot be brought to a consistent state"
                    )
                index = np.load(self._jindex)
                jdata = np.memmap(self._jpath, dtype=self._np_dtype, mode="r", shape=(n, self.n_views, self.dim))
                self._apply(index[:, 0], index[:, 1], jdata, int(marker["committed_version"]), self._store_versions())
                del jdata
                self.committed_version = recovered = int(marker["committed_version"])
        else:
            warnings.warn(
                f"bank {self.path}: discarding an uncommitted outer iteration (a run stopped before flush()); "
                f"the bank stays at committed_version {self.committed_version}",
                stacklevel=3,
            )
        self._remove_journal()
        return recovered

    # ---- checkpoints
    def state_dict(self):
        self._check_usable()
        if self._n:
            raise BankError(
                f"bank {self.path} holds {self._n} unflushed rows; call flush() before state_dict() "
                f"(a checkpoint refers to a committed iteration)"
            )
        return {
            "backend": self.backend,
            "format_version": FORMAT_VERSION,
            "path": self.path,
            "file_id": self._file_id,
            **{k: getattr(self, k) for k in _META_FIELDS},
            "committed_version": self.committed_version,
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
        if self._n:  # uncommitted rows are not part of any checkpoint
            self._close_journal()
            self._remove_journal()
            self._versions = self._store_versions()
        if int(state.get("committed_version", -2)) != self.committed_version:
            raise BankError(
                f"bank file {self.path} is at committed_version {self.committed_version} but the checkpoint "
                f"expects {state.get('committed_version')}: the file has moved on (or back) since the checkpoint, "
                f"so its targets are not the checkpoint's. Resume from the checkpoint taken at version "
                f"{self.committed_version}, or delete the bank and refill it"
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
            if _OPEN_FILES.get(self.path) is self:
                del _OPEN_FILES[self.path]

    def close(self):
        if self._closed:
            return
        if self._n and not self._broken:
            warnings.warn(
                f"closing bank {self.path} with {self._n} unflushed rows: they are discarded "
                f"(call flush() to commit them)",
                stacklevel=2,
            )
        broken = self._broken
        self._release()
        if not broken:  # a broken flush keeps its committed journal for the next open
            self._close_journal()
            self._remove_journal()
        self._slot = self._versions = None


class DiskBank(_FileBank):
    """The bank as datasets of one HDF5 file (h5py); writes journaled, committed by flush()."""

    backend = "disk"

    def __init__(
        self, path, n_rows, n_views, dim, *, dtype="fp32", device="cpu", fingerprint="", chunk_rows=0, durable=True
    ):
        self._f = None
        super().__init__(path, n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint,
                         durable=durable, chunk_rows=chunk_rows)

    def _store_exists(self):
        return os.path.exists(self.path)

    def _store_meta(self):
        import h5py

        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise BankError(f"{self.path} exists and is not a readable HDF5 file ({e}); refusing to touch it. "
                            f"Delete it or use another path.") from None
        with f:
            a = f.attrs
            if a.get("format") != FORMAT or "eta" not in f or "version" not in f:
                raise BankError(f"{self.path} exists and is not an emsiam target bank; refusing to touch it. "
                                f"Delete it or use another path.")
            if int(a["format_version"]) != FORMAT_VERSION:
                raise BankError(f"{self.path} has bank format_version {int(a['format_version'])}, "
                                f"this code reads {FORMAT_VERSION}")
            meta = {k: (str(a[k]) if k in ("dtype", "fingerprint") else int(a[k])) for k in _META_FIELDS}
            meta["file_id"] = str(a["file_id"])
            meta["committed_version"] = int(a["committed_version"])
            eta, ver = f["eta"], f["version"]
            shape = (meta["n_rows"], meta["n_views"], meta["dim"])
            if eta.shape != shape or eta.dtype != _NP_DTYPES.get(meta["dtype"]) or ver.shape != shape[:1]:
                raise BankError(f"{self.path} is damaged: its datasets do not match its attributes")
            self.chunk_rows = 0 if eta.chunks is None else int(eta.chunks[0])  # the file's layout wins
        return meta

    def _store_create(self, meta):
        import h5py

        tmp = f"{self.path}.creating-{os.getpid()}"
        _remove(tmp)
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
                f.create_dataset("version", data=np.full(self.n_rows, -1, np.int64))
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                for k, v in meta.items():
                    f.attrs[k] = v
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
            raise BankError(f"cannot open bank {self.path} for writing ({e}); is another process using it?") from None
        self._f = h5py.File(fid)
        self._eta = self._f["eta"]
        self._ver = self._f["version"]

    def _store_versions(self):
        return self._ver[...]

    def _store_read(self, rows):
        if rows.size == 0:
            return np.empty((0, self.n_views, self.dim), self._np_dtype)
        return self._eta[rows]

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

    def _store_commit(self, versions, committed_version):
        self._ver[...] = versions
        self._f.attrs.modify("committed_version", committed_version)  # in place, same type and size
        self._f.flush()
        if self.durable:
            os.fsync(self._f.id.get_vfd_handle())

    def _store_close(self):
        if self._f is not None:
            self._f.close()
            self._f = None


class MemmapBank(_FileBank):
    """The bank as a raw .npy file used through np.memmap, plus a <path>.meta.npz sidecar.

    The sidecar holds the metadata (JSON) and the versions and is replaced atomically at
    each commit; a data file without its sidecar is an interrupted creation and is refused.
    """

    backend = "memmap"

    def __init__(self, path, n_rows, n_views, dim, *, dtype="fp32", device="cpu", fingerprint="", durable=True):
        self._mm = None
        self._lock_fd = None
        p = os.path.abspath(os.fspath(path)) if path is not None else None
        self._meta_path = None if p is None else p + ".meta.npz"
        super().__init__(path, n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint,
                         durable=durable)

    def _store_exists(self):
        return os.path.exists(self.path) or os.path.exists(self._meta_path)

    def _store_files(self):
        return [self.path, self._meta_path]

    def _load_sidecar(self):
        try:
            with np.load(self._meta_path, allow_pickle=False) as z:
                return json.loads(str(z["meta"][()])), np.array(z["version"])
        except (OSError, ValueError, KeyError) as e:
            raise BankError(f"{self._meta_path} is not a readable bank sidecar ({e}); refusing to touch the bank. "
                            f"Delete {self.path} and it, or use another path.") from None

    def _store_meta(self):
        if not os.path.exists(self._meta_path):
            raise BankError(f"{self.path} exists without its sidecar {os.path.basename(self._meta_path)}: not a bank, "
                            f"or its creation was interrupted; refusing to touch it. Delete it or use another path.")
        if not os.path.exists(self.path):
            raise BankError(f"{self._meta_path} exists but its data file {self.path} is missing; "
                            f"delete the sidecar or use another path.")
        meta, versions = self._load_sidecar()
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise BankError(f"{self.path} is not an emsiam target bank of format_version {FORMAT_VERSION}")
        with open(self.path, "rb") as f:
            try:
                major, _ = np.lib.format.read_magic(f)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if major == 1
                                         else np.lib.format.read_array_header_2_0(f))
            except ValueError as e:
                raise BankError(f"{self.path} is not a .npy file ({e}); refusing to touch it") from None
        expect = (meta["n_rows"], meta["n_views"], meta["dim"])
        if tuple(shape) != expect or fortran or dtype != _NP_DTYPES.get(meta["dtype"]) or versions.shape != expect[:1]:
            raise BankError(f"{self.path} is damaged: its header or versions do not match its sidecar")
        return meta

    def _write_sidecar(self, meta: dict, versions: np.ndarray, target: str) -> None:
        tmp = target + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), version=versions)
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
        # The sidecar last: its presence marks a complete bank.
        self._write_sidecar(meta, np.full(self.n_rows, -1, np.int64), self._meta_path)
        return meta

    def _store_open(self):
        import fcntl

        self._lock_fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise BankError(f"bank {self.path} is in use by another process") from None
        self._mm = np.load(self.path, mmap_mode="r+")
        self._meta = self._load_sidecar()[0]

    def _store_versions(self):
        return self._load_sidecar()[1]

    def _store_read(self, rows):
        return self._mm[rows]

    def _store_write(self, rows, data):
        self._mm[rows] = data

    def _store_commit(self, versions, committed_version):
        if self.durable:
            self._mm.flush()  # msync the rows before the sidecar names them committed
        self._meta["committed_version"] = int(committed_version)
        self._write_sidecar(self._meta, versions, self._meta_path)

    def _store_close(self):
        self._mm = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


# --------------------------------------------------------------------------- factory


def _validate(backend, n_rows, n_views, dim, dtype, device, path, fingerprint, chunk_rows) -> None:
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
    """
    _validate(backend, n_rows, n_views, dim, dtype, device, path, fingerprint, chunk_rows)
    if backend == "device":
        return DeviceBank(n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint)
    if backend == "disk":
        return DiskBank(path, n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint,
                        chunk_rows=chunk_rows, durable=durable)
    if chunk_rows:
        raise BankError("chunk_rows applies to the 'disk' (HDF5) backend only")
    return MemmapBank(path, n_rows, n_views, dim, dtype=dtype, device=device, fingerprint=fingerprint, durable=durable)
