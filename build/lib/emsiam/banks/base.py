"""The bank API every backend implements (TargetBank), its error, and the file-format constants.

Read, write and EMA-update rows by image id; commit in one or two phases around a
checkpoint; save and restore through state_dict. Semantics: docs/banks.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

FORMAT = "emsiam-target-bank"
FORMAT_VERSION = 2  # bank files: 2 added per-row checksums and the owning run's id
STATE_VERSION = 1  # state_dict() layout
BACKENDS = ("device", "disk", "memmap")
_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_NP_DTYPES = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16)}
_BACKEND_DTYPES = {"device": ("fp32", "fp16", "bf16"), "disk": ("fp32", "fp16"), "memmap": ("fp32", "fp16")}
_META_FIELDS = ("n_rows", "n_views", "dim", "dtype", "fingerprint")


class BankError(ValueError):
    """Invalid bank arguments, a bank file that does not match the run, or misuse."""


_DAMAGED_ADVICE = ("The run cannot resume from this bank: start it again with a fresh bank (a new name=..., "
                   "or move the bank files away first).")


def _old_format(path: str, version) -> BankError:
    return BankError(f"{path} is a bank of format_version {version}; this code reads format_version "
                     f"{FORMAT_VERSION} (with row checksums) only. Start the run again with a fresh bank "
                     f"(move the file away or use another path)")


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


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
