"""MemmapBank: the bank as a raw .npy file used through np.memmap, plus a <path>.meta.npz sidecar
(metadata, versions and row checksums), replaced atomically at each commit. The fastest backend
for cold reads (mmap faults read ahead). Layout and throughput: docs/banks.md.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .base import _DAMAGED_ADVICE, _NP_DTYPES, FORMAT, FORMAT_VERSION, BankError, _old_format
from .checksums import _table_check
from .filebank import _FileBank
from .files import _fsync_dir, _fsync_path, _link_into_place, _remove


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
