"""make_bank: create a bank of the backend asked for, or reopen the file bank at a path."""

from __future__ import annotations

from .base import BankError, TargetBank
from .checks import _validate
from .device import DeviceBank
from .hdf5 import DiskBank
from .memmap import MemmapBank


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
