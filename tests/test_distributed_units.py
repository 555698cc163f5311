"""Collectives of emsiam.distributed without a process group: the collectives are replaced by fakes
of a 2-rank world, so ordering and host syncs are checked in milliseconds."""

import pytest
import torch

from emsiam import distributed


@pytest.fixture
def two_ranks(monkeypatch):
    """Rank ``state['rank']`` of a fake 2-rank world; all_gather returns this rank's rows for every rank."""
    state = {"rank": 0, "calls": []}
    for module in (distributed, distributed.group):  # callers' names and the package's own
        monkeypatch.setattr(module, "active", lambda: True)
        monkeypatch.setattr(module, "world", lambda: 2)
        monkeypatch.setattr(module, "rank", lambda: state["rank"])
        monkeypatch.setattr(module, "is_main", lambda: state["rank"] == 0)

    def all_gather(bufs, t):
        state["calls"].append(("all_gather", tuple(t.shape)))
        for b in bufs:
            b.copy_(t)

    def broadcast(t, src):
        state["calls"].append(("broadcast", int(t.sum())))
        if state["rank"] != 0:
            t.fill_(state.get("rank0_ok", 1))

    monkeypatch.setattr(torch.distributed, "all_gather", all_gather)
    monkeypatch.setattr(torch.distributed, "broadcast", broadcast)
    monkeypatch.setattr(distributed.group, "_collective_device", lambda: torch.device("cpu"))
    return state


def _count_host_syncs(monkeypatch) -> dict:
    counts = {"n": 0}
    for name in ("item", "tolist", "__int__", "__index__", "__bool__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, **k):
            counts["n"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def test_all_gather_rows_with_known_unequal_sizes(two_ranks):
    (out,) = distributed.all_gather_rows(torch.arange(3), sizes=[3, 2])
    assert out.tolist() == [0, 1, 2, 0, 1]  # rank 1's 2 rows (here: a copy of rank 0's, the fake)
    assert distributed.split_sizes(5) == [2, 3] and sum(distributed.split_sizes(7)) == 7
    with pytest.raises(ValueError, match="holds 3 rows"):
        distributed.all_gather_rows(torch.arange(3), sizes=[2, 2])


def test_rank0_loads_first_then_the_others(two_ranks):
    """Rank 0 runs the loader before the broadcast that releases the others; the others run it after."""
    order = []
    assert distributed.main_first(lambda: order.append("load") or "data") == "data"
    assert order == ["load"] and two_ranks["calls"] == [("broadcast", 1)]  # rank 0: load, then release
    two_ranks["rank"], two_ranks["calls"] = 1, []
    calls = two_ranks["calls"]
    assert distributed.main_first(lambda: (order.append(("load", list(calls))), "data")[1]) == "data"
    assert order[-1] == ("load", [("broadcast", 0)])  # rank 1: waited for rank 0's broadcast first
    two_ranks["rank0_ok"] = 0  # rank 0 failed: the others raise instead of loading
    with pytest.raises(RuntimeError, match="rank 0 failed"):
        distributed.main_first(lambda: pytest.fail("rank 1 loaded although rank 0 failed"))
    two_ranks["rank"] = 0
    with pytest.raises(OSError):
        distributed.main_first(lambda: (_ for _ in ()).throw(OSError("bad archive")))
    assert two_ranks["calls"][-1] == ("broadcast", 0)  # rank 0 told the others before raising
