"""The bank wrappers of data-parallel runs (emsiam.banks.shared) in a fake 2-rank world
(the ``two_ranks`` fixture of tests/test_distributed_units.py)."""

import torch

from emsiam.banks import ReplicatedBank
from tests.test_distributed_units import _count_host_syncs, two_ranks  # noqa: F401 (fixture)


def test_replicated_bank_writes_without_a_host_sync(two_ranks, monkeypatch):
    """Sizes are B / world, known to every rank: no size exchange, no .item()/int() per write or
    EMA update in the gather (the inner bank is a recorder: a CPU device bank checks its index bounds)."""
    got = []

    class Recorder:
        def write(self, idx, eta, version):
            got.append(("write", idx.shape[0], eta.shape[0]))

        def ema_update(self, idx, value, m, version):
            got.append(("ema", idx.shape[0], value.shape[0]))

    bank = ReplicatedBank(Recorder())
    idx, eta = torch.tensor([1, 5, 7]), torch.randn(3, 1, 4)
    counts = _count_host_syncs(monkeypatch)
    for step in range(5):
        bank.write(idx, eta, version=step)
        bank.ema_update(idx, eta, m=0.5, version=step)
    n = counts["n"]
    monkeypatch.undo()
    assert n == 0
    assert got == [("write", 6, 6), ("ema", 6, 6)] * 5  # both ranks' rows applied
    assert {c for c in two_ranks["calls"]} == {("all_gather", (3,)), ("all_gather", (3, 1, 4))}
