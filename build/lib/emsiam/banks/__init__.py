"""Target banks: the cached targets η_x of the alternation, indexed by image id.

A bank is an (N, V, d) array of targets plus an int64 version per row (the outer
iteration or step that last wrote it; -1 = never written). ``make_bank`` picks a
backend: ``device`` (one tensor), ``disk`` (one HDF5 file) or ``memmap`` (a raw
``.npy`` file plus a sidecar). The file banks journal every write and commit
atomically, keep a checksum per row, lock the file for one process and belong to
one run. Semantics, crash protocol, file formats and throughput: docs/banks.md.
"""

from .base import BACKENDS, BankError, TargetBank
from .device import DeviceBank
from .factory import make_bank
from .hdf5 import DiskBank
from .memmap import MemmapBank
from .shared import RankZeroBank, ReplicatedBank, share_bank, write_split

__all__ = ["BankError", "TargetBank", "DeviceBank", "DiskBank", "MemmapBank", "make_bank", "BACKENDS",
           "ReplicatedBank", "RankZeroBank", "share_bank", "write_split"]
