"""Argument checks shared by the backends: ids, values, versions, momentum, devices, and the
whole make_bank call (_validate), all before anything is allocated or created."""

from __future__ import annotations

import operator
import os

import numpy as np
import torch

from .base import _BACKEND_DTYPES, _TORCH_DTYPES, BACKENDS, BankError, _gib


def _int_at_least(name: str, value, lowest: int, what: str) -> int:
    """``value`` as a plain int >= ``lowest`` (bools refused), or a BankError saying ``what`` it must be."""
    if isinstance(value, bool):
        raise BankError(f"{name} must be {what}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise BankError(f"{name} must be {what}, got {value!r}") from None
    if v < lowest:
        raise BankError(f"{name} must be {what}, got {v}")
    return v


def _positive_int(name: str, value) -> int:
    return _int_at_least(name, value, 1, "a positive int")


def _check_version(version) -> int:
    return _int_at_least("version", version, 0, "an int >= 0 (-1 marks never-written rows)")


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
