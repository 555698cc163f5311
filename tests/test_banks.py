import hashlib
import os
import signal
import warnings

import h5py
import numpy as np
import pytest
import torch

from emsiam.banks import BankError, make_bank
from emsiam.banks.base import FORMAT_VERSION
from emsiam.banks.checksums import _row_sums

N, V, D = 64, 2, 8
FILE_BACKENDS = ["disk", "memmap"]


def open_bank(backend, tmp_path, *, dtype="fp32", name="bank", n_rows=N, n_views=V, dim=D, **kw):
    if backend == "device":
        return make_bank("device", n_rows, n_views, dim, dtype=dtype, **kw)
    if backend == "disk-chunked":
        backend, kw = "disk", {"chunk_rows": 4, **kw}
    return make_bank(backend, n_rows, n_views, dim, dtype=dtype, path=str(tmp_path / f"{name}.{backend}"), **kw)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def snapshot(directory):
    """Name -> (sha256, size, mtime_ns) of every file under directory."""
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[p] = (hashlib.sha256(fh.read()).hexdigest(), os.path.getsize(p), os.stat(p).st_mtime_ns)
    return out


def raw_store(backend, path):
    """The bank file's own rows, bypassing the bank (and its journal)."""
    if backend == "disk":
        with h5py.File(path, "r") as f:
            return torch.from_numpy(f["eta"][...]).float()
    return torch.from_numpy(np.load(path)).float()


# ---------------------------------------------------------------- agreement and formulas


def script(bank):
    """A fixed sequence of writes, EMA updates, flushes and reads; returns everything read."""
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    x = randn(N, V, D, seed=2)
    out = []
    bank.write(perm[:40], x[:40], 0)
    out.append(bank.read(torch.arange(N)))  # own writes before flush; never-written rows are 0
    bank.flush()
    bank.ema_update(perm[20:60], randn(40, V, D, seed=3), 0.8, 1)  # half committed, half never written
    out.append(bank.read(perm.flip(0)[:50]))  # any order, mixes journal and committed rows
    bank.write(perm[50:64], randn(14, V, D, seed=4).double(), 1)  # float64 input
    bank.ema_update(perm[25:35], randn(10, V, D, seed=5).bfloat16(), 0.5, 2)  # rows already updated this iteration
    bank.ema_update(perm[:10], randn(10, V, D, seed=6), 0.5, 2)
    out.append(bank.read(torch.cat([perm[:5], perm[:5]])))  # duplicates are fine in reads
    out.append(bank.versions(perm))
    bank.flush()
    out.append(bank.read(torch.arange(N)))
    out.append(bank.versions(torch.arange(N)))
    assert bank.committed_version == 2
    return out


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_backends_agree(tmp_path, dtype):
    results = {}
    for backend in ["device", "disk", "disk-chunked", "memmap"]:
        with open_bank(backend, tmp_path, dtype=dtype, name=backend) as bank:
            results[backend] = [t.cpu() for t in script(bank)]
    ref = results.pop("device")
    for backend, reads in results.items():
        for a, b in zip(ref, reads):  # same dtype: the same bits
            assert torch.equal(a, b), backend
    if dtype == "fp16":  # and fp16 stays within fp16 rounding of an fp32 bank
        with open_bank("device", tmp_path) as bank32:
            for a, b in zip(script(bank32), ref):
                torch.testing.assert_close(b, a, rtol=2e-3, atol=2e-3)


def test_bf16_device_bank_tracks_fp32():
    with make_bank("device", N, V, D, dtype="bf16") as b16, make_bank("device", N, V, D) as b32:
        for a, b in zip(script(b32), script(b16)):
            torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("backend", ["device", "disk", "memmap"])
@pytest.mark.parametrize("m", [0.0, 0.5, 0.8])
def test_ema_update_formula(tmp_path, backend, m):
    idx = torch.tensor([7, 3, 50, 11])
    eta0, v1, v2 = randn(N, V, D, seed=0), randn(4, V, D, seed=1), randn(4, V, D, seed=2)
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), eta0, 0)
        bank.flush()
        bank.ema_update(idx, v1, m, 3)
        eta1 = m * eta0[idx] + (1 - m) * v1
        torch.testing.assert_close(bank.read(idx), eta1, rtol=1e-6, atol=1e-6)
        bank.ema_update(idx, v2, m, 4)  # before flush: reads its own update
        eta2 = m * eta1 + (1 - m) * v2
        torch.testing.assert_close(bank.read(idx), eta2, rtol=1e-6, atol=1e-6)
        bank.flush()
        torch.testing.assert_close(bank.read(idx), eta2, rtol=1e-6, atol=1e-6)
        expect_v = torch.zeros(N, dtype=torch.int64)
        expect_v[idx] = 4
        assert torch.equal(bank.versions(torch.arange(N)).cpu(), expect_v)
        others = torch.tensor([0, 1, 63])
        assert torch.equal(bank.read(others), eta0[others])  # untouched rows unchanged
        assert bank.committed_version == 4


@pytest.mark.parametrize("backend", ["device", "disk", "memmap"])
def test_versions(tmp_path, backend):
    with open_bank(backend, tmp_path) as bank:
        assert torch.equal(bank.versions(torch.arange(N)).cpu(), torch.full((N,), -1))
        assert bank.committed_version == -1
        bank.write(torch.tensor([4, 2]), randn(2, V, D), 5)
        bank.ema_update(torch.tensor([9]), randn(1, V, D), 0.5, 6)
        v = bank.versions(torch.tensor([2, 4, 9, 0])).cpu()
        assert v.dtype == torch.int64 and v.tolist() == [5, 5, 6, -1]
        assert bank.committed_version == -1  # nothing committed yet
        bank.flush()
        assert bank.committed_version == 6
    if backend != "device":
        with open_bank(backend, tmp_path) as bank:
            assert bank.versions(torch.tensor([2, 4, 9, 0])).tolist() == [5, 5, 6, -1]
            assert bank.committed_version == 6


@pytest.mark.parametrize("backend", ["device", "disk", "memmap"])
def test_bad_calls(tmp_path, backend):
    with open_bank(backend, tmp_path) as bank:
        with pytest.raises(BankError, match="out of range"):
            bank.read(torch.tensor([0, N]))
        with pytest.raises(BankError, match="out of range"):
            bank.write(torch.tensor([-1]), randn(1, V, D), 0)
        with pytest.raises(BankError, match="shape"):
            bank.write(torch.tensor([0, 1]), randn(2, D), 0)
        with pytest.raises(BankError, match="integer"):
            bank.read(torch.tensor([0.0]))
        with pytest.raises(BankError, match="version"):
            bank.write(torch.tensor([0]), randn(1, V, D), -1)
        with pytest.raises(BankError, match=r"\[0, 1\]"):
            bank.ema_update(torch.tensor([0]), randn(1, V, D), 1.5, 0)
        if backend != "device":
            with pytest.raises(BankError, match="duplicate"):
                bank.write(torch.tensor([3, 3]), randn(2, V, D), 0)
        assert torch.equal(bank.versions(torch.arange(N)), torch.full((N,), -1))  # nothing was written


# ---------------------------------------------------------------- checkpoints


def test_device_state_dict_round_trip(tmp_path):
    bank = make_bank("device", N, V, D, dtype="fp16", fingerprint="run-a")
    bank.write(torch.arange(0, N, 3), randn(22, V, D), 7)
    bank.flush()
    torch.save({"bank": bank.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["bank"]
    new = make_bank("device", N, V, D, dtype="fp16", fingerprint="run-a")
    new.load_state_dict(state)
    assert torch.equal(new.read(torch.arange(N)), bank.read(torch.arange(N)))
    assert torch.equal(new.versions(torch.arange(N)), bank.versions(torch.arange(N)))
    assert new.committed_version == 7
    for other in (
        make_bank("device", N, V, D + 1, dtype="fp16", fingerprint="run-a"),
        make_bank("device", N, V, D, dtype="fp32", fingerprint="run-a"),
        make_bank("device", N, V, D, dtype="fp16", fingerprint="run-b"),
    ):
        with pytest.raises(BankError, match="does not match"):
            other.load_state_dict(state)


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_file_state_dict(tmp_path, backend):
    x = randn(N, V, D)
    with open_bank(backend, tmp_path, fingerprint="run-a") as bank:
        bank.write(torch.arange(N), x, 3)
        bank.flush()
        bank.write(torch.tensor([0]), x[:1], 4)
        with pytest.raises(BankError, match="flush"):
            bank.state_dict()  # unflushed rows are in no checkpoint
        bank.flush()
        torch.save({"bank": bank.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["bank"]
    assert not any(isinstance(v, torch.Tensor) for v in state.values())  # the data stays in the file
    assert state["committed_version"] == 4 and state["path"].endswith(backend)

    with open_bank(backend, tmp_path, fingerprint="run-a") as bank:
        bank.write(torch.tensor([1, 2]), randn(2, V, D, seed=9), 5)  # uncommitted: dropped by the load
        bank.load_state_dict(state)
        assert torch.equal(bank.read(torch.arange(N)), x)
        assert bank.versions(torch.tensor([0, 1])).tolist() == [4, 3]
        bank.write(torch.tensor([1]), x[1:2], 6)
        bank.flush()  # the file moves on past the checkpoint
        with pytest.raises(BankError, match="committed_version 6 but the checkpoint expects 4"):
            bank.load_state_dict(state)
    with open_bank(backend, tmp_path, fingerprint="run-a", name="other") as other:
        with pytest.raises(BankError, match="not the bank of this checkpoint"):
            other.load_state_dict(state)  # same config, different file
    with make_bank("device", N, V, D, fingerprint="run-a") as dev:
        with pytest.raises(BankError, match="bank state is from a"):
            dev.load_state_dict(state)


# ---------------------------------------------------------------- crash safety


def crash_in_child(child):
    """Run child() in a forked process that must die by SIGKILL inside it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            child()
        except BaseException:
            os._exit(3)
        os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child exited with {status}"


def kill_self(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("backend", FILE_BACKENDS)
@pytest.mark.parametrize("point", ["mid-iteration", "before-commit", "mid-apply", "before-cleanup"])
def test_crash_recovery(tmp_path, backend, point):
    x1, x2 = randn(N, V, D, seed=1), randn(N, V, D, seed=2)
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), x1, 1)
        bank.flush()
        path = bank.path

    def child():
        bank = open_bank(backend, tmp_path)
        bank._apply_block_bytes = 8 * bank._row_bytes  # apply in blocks of 8 rows
        for s in range(0, N, 16):
            bank.write(torch.arange(s, s + 16), x2[s : s + 16], 2)
            if point == "mid-iteration" and s == 32:
                kill_self()
        if point == "before-commit":  # journal written and synced, marker not yet
            bank._write_marker = kill_self
        if point == "mid-apply":  # marker written, bank file half updated
            store_write, calls = bank._store_write, []

            def half(rows, data):
                calls.append(1)
                if len(calls) > 3:
                    kill_self()
                store_write(rows, data)

            bank._store_write = half
        if point == "before-cleanup":  # applied and committed, journal not yet removed
            bank._remove_journal = kill_self
        bank.flush()

    crash_in_child(child)
    new = point in ("mid-apply", "before-cleanup")
    if point == "mid-apply":  # the crash really left a half-applied bank file behind
        raw = raw_store(backend, path)
        assert torch.equal(raw[:24], x2[:24]) and torch.equal(raw[24:], x1[24:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bank = open_bank(backend, tmp_path)
    assert any("discarding an uncommitted" in str(w.message) for w in caught) == (not new)
    with bank:
        assert bank.committed_version == (2 if new else 1)
        assert bank.recovered_version == (2 if new else None)
        assert torch.equal(bank.read(torch.arange(N)), x2 if new else x1)
        assert torch.equal(bank.versions(torch.arange(N)), torch.full((N,), 2 if new else 1))
    assert not [f for f in os.listdir(tmp_path) if "journal" in f]
    assert torch.equal(raw_store(backend, path), x2 if new else x1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to recover
        open_bank(backend, tmp_path).close()


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_failed_apply_is_finished_on_reopen(tmp_path, backend, monkeypatch):
    x1, x2 = randn(N, V, D, seed=1), randn(N, V, D, seed=2)
    bank = open_bank(backend, tmp_path)
    bank.write(torch.arange(N), x1, 1)
    bank.flush()
    bank.write(torch.arange(N), x2, 2)
    bank._apply_block_bytes = 8 * bank._row_bytes
    store_write, calls = bank._store_write, []

    def fail_midway(rows, data):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        store_write(rows, data)

    monkeypatch.setattr(bank, "_store_write", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        bank.flush()
    with pytest.raises(BankError, match="reopen|open it"):
        bank.read(torch.tensor([0]))
    bank.close()  # keeps the committed journal
    with open_bank(backend, tmp_path) as bank:
        assert bank.committed_version == 2
        assert torch.equal(bank.read(torch.arange(N)), x2)


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_close_without_flush_discards(tmp_path, backend):
    x1 = randn(N, V, D, seed=1)
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), x1, 1)
        bank.flush()
        bank.write(torch.arange(10), randn(10, V, D, seed=2), 2)
        with pytest.warns(UserWarning, match="unflushed"):
            bank.close()
    with open_bank(backend, tmp_path) as bank:
        assert bank.committed_version == 1
        assert torch.equal(bank.read(torch.arange(N)), x1)


# ---------------------------------------------------------------- refusing other runs' files


@pytest.mark.parametrize("backend", FILE_BACKENDS)
@pytest.mark.parametrize(
    "field, change, shown",
    [
        ("dim", {"dim": D + 1}, (str(D), str(D + 1))),
        ("dtype", {"dtype": "fp16"}, ("'fp32'", "'fp16'")),
        ("fingerprint", {"fingerprint": "run-b"}, ("'run-a'", "'run-b'")),
        ("n_views", {"n_views": 1}, (str(V), "1")),
        ("n_rows", {"n_rows": N + 1}, (str(N), str(N + 1))),
    ],
)
def test_mismatched_run_is_refused(tmp_path, backend, field, change, shown):
    with open_bank(backend, tmp_path, fingerprint="run-a") as bank:
        bank.write(torch.arange(N), randn(N, V, D), 1)
        bank.flush()
    before = snapshot(tmp_path)
    kw = {"fingerprint": "run-a", **change}
    with pytest.raises(BankError) as err:
        open_bank(backend, tmp_path, **kw)
    msg = str(err.value)
    assert f"{field}: file has {shown[0]}, this run asks for {shown[1]}" in msg
    assert "Delete" in msg and "another path" in msg
    assert snapshot(tmp_path) == before
    with open_bank(backend, tmp_path, fingerprint="run-a") as bank:  # the right run still opens it
        assert bank.committed_version == 1


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_foreign_file_is_refused(tmp_path, backend):
    path = tmp_path / f"bank.{backend}"
    path.write_bytes(b"not a bank at all")
    before = snapshot(tmp_path)
    with pytest.raises(BankError, match="refusing to touch"):
        open_bank(backend, tmp_path)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_one_object_per_file(tmp_path, backend):
    with open_bank(backend, tmp_path):
        with pytest.raises(BankError, match="already open"):
            open_bank(backend, tmp_path)


def test_file_formats(tmp_path):
    with open_bank("disk", tmp_path, dtype="fp16", fingerprint="cfg") as bank:
        bank.write(torch.tensor([1]), torch.ones(1, V, D), 0)
        bank.flush()
    with h5py.File(tmp_path / "bank.disk", "r") as f:
        assert f["eta"].shape == (N, V, D) and f["eta"].dtype == np.float16 and f["eta"].chunks is None
        assert f["version"].shape == (N,) and f["version"][1] == 0 and f["version"][0] == -1
        a = f.attrs
        assert (a["n_rows"], a["n_views"], a["dim"], a["dtype"], a["fingerprint"]) == (N, V, D, "fp16", "cfg")
        assert a["committed_version"] == 0 and a["format_version"] == FORMAT_VERSION == 2
        assert a["run_id"] == "" and f["sum"].dtype == np.uint64 and f["sum"][0] == 0 and f["sum"][1] != 0
    with open_bank("memmap", tmp_path, dtype="fp16") as bank:
        bank.write(torch.tensor([1]), torch.ones(1, V, D), 0)
        bank.flush()
    arr = np.load(tmp_path / "bank.memmap")
    assert arr.shape == (N, V, D) and arr.dtype == np.float16 and (arr[1] == 1).all() and (arr[0] == 0).all()
    with np.load(tmp_path / "bank.memmap.meta.npz") as z:
        assert z["sum"].tolist() == _row_sums(arr).tolist() and z["version"][1] == 0


# ---------------------------------------------------------------- argument validation


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("cloud", N, V, D), {}, "unknown bank backend"),
        (("disk", N, V, D), {}, "needs a path"),
        (("memmap", N, V, D), {}, "needs a path"),
        (("disk", N, V, D), {"dtype": "bf16", "path": "{tmp}/b.h5"}, "bfloat16"),
        (("memmap", N, V, D), {"dtype": "bf16", "path": "{tmp}/b.npy"}, "bfloat16"),
        (("device", N, V, D), {"dtype": "fp64"}, "dtype 'fp64'"),
        (("device", 0, V, D), {}, "n_rows"),
        (("device", N, 1.5, D), {}, "n_views"),
        (("device", N, V, True), {}, "dim"),
        (("device", N, V, D), {"device": "banana"}, "invalid device"),
        (("device", N, V, D), {"path": "{tmp}/b.h5"}, "path is only used"),
        (("disk", N, V, D), {"path": "{tmp}/missing/b.h5"}, "does not exist"),
        (("disk", N, V, D), {"path": "{tmp}/b.h5", "chunk_rows": -1}, "chunk_rows"),
        (("memmap", N, V, D), {"path": "{tmp}/b.npy", "chunk_rows": 8}, "chunk_rows"),
        (("device", N, V, D), {"fingerprint": 3}, "fingerprint"),
        (("device", 10**9, 2, 2048), {}, "backend='disk'"),
        (("disk", 10**12, 2, 2048), {"path": "{tmp}/b.h5", "dtype": "fp16"}, "free on that disk"),
    ],
)
def test_bad_args_fail_before_allocating(tmp_path, monkeypatch, args, kwargs, match):
    def no_alloc(*a, **k):
        raise AssertionError("allocated before validating")

    for name in ("zeros", "full", "empty"):
        monkeypatch.setattr(torch, name, no_alloc)
    kwargs = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(BankError, match=match):
        make_bank(*args, **kwargs)
    assert os.listdir(tmp_path) == []  # no file was created


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda():
    with pytest.raises(BankError, match="CUDA is not available"):
        make_bank("device", N, V, D, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["device", "disk"])
def test_cuda_bank(tmp_path, backend):
    with open_bank(backend, tmp_path, device="cuda") as bank, open_bank("device", tmp_path) as ref:
        for a, b in zip(script(ref), script(bank)):
            assert b.device.type == "cuda"
            assert torch.equal(a, b.cpu())
