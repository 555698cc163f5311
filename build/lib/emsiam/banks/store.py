"""The store interface of the file banks: what a file format (hdf5.py, memmap.py) implements.

The store is the bank file(s) proper; everything else (journal, commits, recovery,
checksums, the lock) is shared, in filebank.py and the modules it builds on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class _Store(ABC):
    """The _store_* methods _FileBank calls; a subclass implements them for one file format."""

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
