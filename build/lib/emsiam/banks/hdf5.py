"""DiskBank: the bank as datasets of one HDF5 file (h5py), for banks larger than RAM.

A contiguous dataset with the sieve buffer off (fastest for random rows), storage allocated
at creation and never filled, superblock v0 so a killed writer leaves an openable file.
Layout and throughput: docs/banks.md.
"""

from __future__ import annotations

import os

import numpy as np

from .base import _META_FIELDS, _NP_DTYPES, FORMAT, FORMAT_VERSION, BankError, _old_format
from .checksums import _table_check
from .filebank import _FileBank
from .files import _fsync_dir, _fsync_path, _link_into_place, _remove
from .lock import _in_use


def _hdf5_locked(e: OSError) -> bool:
    """h5py's error for a file that HDF5's own lock (errno 11) keeps from us."""
    msg = str(e).lower()
    return "errno = 11" in msg or "unable to lock file" in msg


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
