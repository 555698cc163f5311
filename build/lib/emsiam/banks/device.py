"""DeviceBank: the bank as one (N, V, d) tensor on CPU or CUDA, for banks that fit in memory.

index_select / index_copy_, no Python loops and no host sync; a commit only advances
committed_version, and the checkpoint holds the data itself.
"""

from __future__ import annotations

import torch

from .base import _META_FIELDS, _TORCH_DTYPES, STATE_VERSION, BankError, TargetBank
from .checks import _as_index, _check_bounds_cpu, _check_m, _check_values, _check_version, _ema, _validate


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
