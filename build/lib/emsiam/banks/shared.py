"""Banks shared by the ranks of a data-parallel run (no-ops in one process).

:class:`ReplicatedBank` keeps a full copy of a device bank on every rank and applies every
rank's gathered rows; :class:`RankZeroBank` lets rank 0 alone open a file bank, write every
rank's rows and serve reads by broadcast, so that no two processes touch the file.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .. import distributed
from .base import TargetBank


class _SharedBank(TargetBank):
    """Base of the bank wrappers: delegates everything it does not override."""

    def __init__(self, bank: TargetBank | None):
        self.inner = bank

    def __getattr__(self, name):
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    @property
    def backend(self) -> str:
        return self.inner.backend if self.inner is not None else ""

    @property
    def nbytes(self) -> int:
        return self.inner.nbytes if self.inner is not None else 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class ReplicatedBank(_SharedBank):
    """A full copy of the bank on every rank: writes and EMA updates gather every rank's
    ``(idx, η)`` and apply all of them, so the copies stay identical; reads are local."""

    def read(self, idx):
        return self.inner.read(idx)

    def write(self, idx, eta, version, sizes=None):
        self.inner.write(*distributed.all_gather_rows(torch.as_tensor(idx), eta, sizes=sizes), version=version)

    def ema_update(self, idx, value, m, version):
        self.inner.ema_update(*distributed.all_gather_rows(torch.as_tensor(idx), value), m=m, version=version)

    def versions(self, idx):
        return self.inner.versions(idx)

    def flush(self):
        self.inner.flush()

    def prepare(self):
        return self.inner.prepare()

    def commit(self):
        self.inner.commit()

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def close(self):
        self.inner.close()


class RankZeroBank(_SharedBank):
    """A file bank opened by rank 0 only (``inner`` is None elsewhere): rank 0 writes every rank's
    gathered rows, and serves reads (every rank asks for its rows; rank 0 broadcasts them all).
    No two processes ever touch the file. ``state_dict`` is rank 0's; the checkpoint is rank 0's."""

    def __init__(self, bank: TargetBank | None, n_views: int, dim: int, device: torch.device):
        super().__init__(bank)
        self.row_shape, self.device_ = (n_views, dim), device

    def _serve(self, idx, fn, row_shape, dtype):
        idx = torch.as_tensor(idx).to(self.device_)
        (all_idx,) = distributed.all_gather_rows(idx)  # every rank asks for as many rows (B / world)
        out = torch.empty((all_idx.shape[0], *row_shape), dtype=dtype, device=self.device_)
        if self.inner is not None:
            out.copy_(fn(all_idx).to(self.device_, dtype))
        dist.broadcast(out, src=0)
        start = distributed.rank() * idx.shape[0]
        return out[start : start + idx.shape[0]]

    def read(self, idx):
        return self._serve(idx, lambda i: self.inner.read(i), self.row_shape, torch.float32)

    def versions(self, idx):
        return self._serve(idx, lambda i: self.inner.versions(i), (), torch.int64)

    def write(self, idx, eta, version, sizes=None):
        rows = distributed.all_gather_rows(torch.as_tensor(idx).to(self.device_), eta.to(self.device_), sizes=sizes)
        if self.inner is not None:
            self.inner.write(*rows, version=version)

    def ema_update(self, idx, value, m, version):
        rows = distributed.all_gather_rows(torch.as_tensor(idx).to(self.device_), value.to(self.device_))
        if self.inner is not None:
            self.inner.ema_update(*rows, m=m, version=version)

    def flush(self):
        if self.inner is not None:
            self.inner.flush()

    def prepare(self):
        return self.inner.prepare() if self.inner is not None else None

    def commit(self):
        if self.inner is not None:
            self.inner.commit()

    def state_dict(self):
        return self.inner.state_dict() if self.inner is not None else {}

    def load_state_dict(self, state):
        if self.inner is not None:
            self.inner.load_state_dict(state)

    def close(self):
        if self.inner is not None:
            self.inner.close()


def share_bank(bank_factory, backend: str, n_views: int, dim: int, device: torch.device) -> TargetBank:
    """The variant's bank for this process: the plain bank in one process; with several ranks a
    :class:`ReplicatedBank` (device backend) or a :class:`RankZeroBank` (file backends)."""
    if not distributed.active():
        return bank_factory()
    if backend == "device":
        return ReplicatedBank(bank_factory())
    return RankZeroBank(bank_factory() if distributed.is_main() else None, n_views, dim, device)


def write_split(bank: TargetBank, idx: torch.Tensor, eta: torch.Tensor, version: int) -> None:
    """Write rows that every rank holds alike: each rank passes its :func:`emsiam.distributed.split_evenly` part
    (sizes known to all ranks, so nothing is exchanged but the rows); ``bank.write`` in one process."""
    if not distributed.active():
        bank.write(idx, eta, version=version)
        return
    part = distributed.split_evenly(idx.shape[0])
    bank.write(idx[part], eta[part], version=version, sizes=distributed.split_sizes(idx.shape[0]))
