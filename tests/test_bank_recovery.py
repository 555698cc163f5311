"""File banks under faults: the two-phase commit around checkpoints (kill -9 at every point of an
epoch's end, then resume), row checksums, the bank lock and the run identity (docs/banks.md)."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import torch

from emsiam.banks import BankError, make_bank
from emsiam.banks.checksums import _row_sums
from emsiam.banks.filebank import _OPEN_FILES
from tests.test_banks import N, crash_in_child, kill_self, open_bank, randn, raw_store, snapshot

V, D = 2, 8
FILE_BACKENDS = ["disk", "memmap"]
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def journal_files(tmp_path):
    return sorted(f for f in os.listdir(tmp_path) if "journal" in f)


def raw_open(bank):
    """The rows of an open fp32 bank's file (bypassing its journal and HDF5)."""
    if bank.backend == "disk":
        offset = bank._eta.id.get_offset()
    else:
        offset = data_offset("memmap", bank.path, 0)
    x = np.fromfile(bank.path, np.float32, count=bank.n_rows * bank.n_views * bank.dim, offset=offset)
    return torch.from_numpy(x.reshape(bank.n_rows, bank.n_views, bank.dim))


def committed_state(backend, tmp_path, **kw):
    with open_bank(backend, tmp_path, **kw) as bank:
        return bank.state_dict()


# ---------------------------------------------------------------- two-phase commit


@pytest.mark.parametrize("backend", ["device", *FILE_BACKENDS])
def test_prepare_then_commit(tmp_path, backend):
    x1, x2 = randn(N, V, D, seed=1), randn(N, V, D, seed=2)
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), x1, 1)
        bank.flush()
        bank.write(torch.arange(N), x2, 2)
        assert bank.prepare() == 2 and bank.prepare() == 2  # idempotent
        assert bank.state_dict()["committed_version"] == 2  # what the checkpoint names
        assert torch.equal(bank.read(torch.arange(N)), x2)  # reads see the prepared rows
        if backend != "device":
            assert bank.committed_version == 1 and torch.equal(raw_open(bank), x1)
            with pytest.raises(BankError, match="commit\\(\\) before writing"):
                bank.write(torch.tensor([0]), x1[:1], 3)
        bank.commit()
        bank.commit()  # nothing prepared: a no-op
        assert bank.committed_version == 2
        if backend != "device":
            assert torch.equal(raw_open(bank), x2) and journal_files(tmp_path) == []
        assert bank.prepare() == 2  # nothing written since: nothing to prepare


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_journal_spans_uncheckpointed_epochs(tmp_path, backend):
    """Several epochs between checkpoints: rows rewritten every epoch reuse their journal slot."""
    bank = open_bank(backend, tmp_path)
    bank._journal_initial_bytes = bank._row_bytes  # grow from one row
    x = randn(N, V, D, seed=1)
    for epoch in range(3):
        for s in range(0, N, 16):
            bank.ema_update(torch.arange(s, s + 16), x[s : s + 16], 0.5, epoch * 10 + s)
    assert os.path.getsize(bank._jpath) == N * bank._row_bytes  # never more than the bank
    assert bank.prepare() == 20 + N - 16
    bank.commit()
    torch.testing.assert_close(bank.read(torch.arange(N)), x * (1 - 0.5**3), rtol=0, atol=1e-6)
    bank.close()


@needs_fork
@pytest.mark.parametrize("backend", FILE_BACKENDS)
@pytest.mark.parametrize("checkpoint", ["written", "not written"])
def test_prepared_commit_follows_the_checkpoint(tmp_path, backend, checkpoint):
    """Killed after prepare(): the checkpoint decides. Written (it names version 2): roll forward.
    Not written (the last one names version 1): roll back, i.e. drop the journal."""
    x1, x2 = randn(N, V, D, seed=1), randn(N, V, D, seed=2)
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), x1, 1)
        bank.flush()
        state1 = bank.state_dict()

    def child():
        bank = open_bank(backend, tmp_path)
        bank.write(torch.arange(N), x2, 2)
        bank.prepare()
        kill_self()

    crash_in_child(child)
    state = {**state1, "committed_version": 2} if checkpoint == "written" else state1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a prepared journal is kept on open, silently
        bank = open_bank(backend, tmp_path)
    with bank:
        assert bank.committed_version == 1 and journal_files(tmp_path)
        assert torch.equal(bank.read(torch.arange(N)), x1)  # not applied before the checkpoint says so
        if checkpoint == "written":
            bank.load_state_dict(state)
        else:
            with pytest.warns(UserWarning, match="discarding the prepared commit of version 2"):
                bank.load_state_dict(state)
        want, v = (x2, 2) if checkpoint == "written" else (x1, 1)
        assert bank.committed_version == v and journal_files(tmp_path) == []
        assert torch.equal(bank.read(torch.arange(N)), want)
        assert torch.equal(bank.versions(torch.arange(N)), torch.full((N,), v))
    assert torch.equal(raw_store(backend, bank.path), want)
    with pytest.raises(BankError, match=f"committed_version {v} but the checkpoint expects {3 - v}"):
        with open_bank(backend, tmp_path) as bank:
            bank.load_state_dict({**state1, "committed_version": 3 - v})


@needs_fork
@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_kill_during_commit_is_finished_on_open(tmp_path, backend):
    """commit() marks the journal committed before touching the bank file: a kill mid-apply is
    finished by the next open, whatever loads it."""
    x1, x2 = randn(N, V, D, seed=1), randn(N, V, D, seed=2)
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), x1, 1)
        bank.flush()

    def child():
        bank = open_bank(backend, tmp_path)
        bank._apply_block_bytes = 8 * bank._row_bytes
        bank.write(torch.arange(N), x2, 2)
        bank.prepare()
        store_write, calls = bank._store_write, []

        def half(rows, data):
            calls.append(1)
            if len(calls) > 3:
                kill_self()
            store_write(rows, data)

        bank._store_write = half
        bank.commit()

    crash_in_child(child)
    raw = raw_store(backend, str(tmp_path / f"bank.{backend}"))
    assert torch.equal(raw[:24], x2[:24]) and torch.equal(raw[24:], x1[24:])  # really half applied
    with open_bank(backend, tmp_path) as bank:
        assert bank.recovered_version == bank.committed_version == 2
        assert torch.equal(bank.read(torch.arange(N)), x2)


@needs_fork
@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_new_run_drops_an_unclaimed_prepared_commit(tmp_path, backend):
    """A run killed between prepare() and its first checkpoint, started again from scratch."""
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), randn(N, V, D, seed=1), 1)
        bank.flush()

    def child():
        bank = open_bank(backend, tmp_path)
        bank.write(torch.arange(N), randn(N, V, D, seed=2), 2)
        bank.prepare()
        kill_self()

    crash_in_child(child)
    x3 = randn(N, V, D, seed=3)
    with open_bank(backend, tmp_path) as bank:
        with pytest.warns(UserWarning, match="discarding the prepared commit"):
            bank.write(torch.arange(N), x3, 0)
        bank.flush()
    with open_bank(backend, tmp_path) as bank:
        assert torch.equal(bank.read(torch.arange(N)), x3) and bank.committed_version == 1


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_close_keeps_a_prepared_commit(tmp_path, backend):
    x2 = randn(N, V, D, seed=2)
    bank = open_bank(backend, tmp_path)
    bank.write(torch.arange(N), x2, 2)
    bank.prepare()
    state = bank.state_dict()
    with pytest.warns(UserWarning, match="prepared commit"):
        bank.close()
    with open_bank(backend, tmp_path) as bank:
        bank.load_state_dict(state)
        assert bank.committed_version == 2 and torch.equal(bank.read(torch.arange(N)), x2)


# ---------------------------------------------------------------- checksums


def data_offset(backend, path, row):
    """Byte offset of a row in the bank file's data region."""
    if backend == "disk":
        with h5py.File(path, "r") as f:
            return f["eta"].id.get_offset() + row * f["eta"][0].nbytes
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        return f.tell() + row * int(np.prod(shape[1:])) * dtype.itemsize


def scribble(backend, path, row, nbytes=6):
    with open(path, "r+b") as f:
        f.seek(data_offset(backend, path, row) + 4)
        f.write(os.urandom(nbytes))


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_random_bytes_are_detected_on_open(tmp_path, backend):
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), randn(N, V, D), 1)
        bank.flush()
        path = bank.path
    scribble(backend, path, 37)
    with pytest.raises(BankError, match=rf"{path} is damaged: 1 row\(s\) do not match their checksums \(rows 37\)"):
        open_bank(backend, tmp_path)
    scribble(backend, path, 3)
    with pytest.raises(BankError, match=r"2 row\(s\).*rows 3, 37"):
        open_bank(backend, tmp_path)


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_random_bytes_are_detected_on_read(tmp_path, backend):
    x = randn(N, V, D)
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), x, 1)
        bank.flush()
    offset = data_offset(backend, bank.path, 5)
    with open_bank(backend, tmp_path) as bank:
        with open(bank.path, "r+b") as f:  # while the bank is open
            f.seek(offset + 4)
            f.write(os.urandom(6))
        assert torch.equal(bank.read(torch.tensor([4, 6])), x[[4, 6]])
        with pytest.raises(BankError, match=rf"{bank.path} is damaged.*rows 5\)"):
            bank.read(torch.tensor([4, 5, 6]))
        with pytest.raises(BankError, match="damaged"):
            bank.ema_update(torch.tensor([5]), x[:1], 0.5, 2)  # EMA reads first


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_damaged_versions_are_detected(tmp_path, backend):
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), randn(N, V, D), 1)
        bank.flush()
        path = bank.path
    if backend == "disk":
        with h5py.File(path, "r+") as f:
            f["version"][7] = 99
    else:
        meta_path = path + ".meta.npz"
        with np.load(meta_path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["version"][7] = 99
        with open(meta_path, "wb") as f:
            np.savez(f, **arrays)
    with pytest.raises(BankError, match="versions or row checksums"):
        open_bank(backend, tmp_path)


@needs_fork
@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_damaged_journal_is_not_applied(tmp_path, backend):
    with open_bank(backend, tmp_path) as bank:
        bank.write(torch.arange(N), randn(N, V, D, seed=1), 1)
        bank.flush()
        jpath = bank._jpath

    def child():
        bank = open_bank(backend, tmp_path)
        bank.write(torch.arange(N), randn(N, V, D, seed=2), 2)
        bank._store_write = kill_self  # committed, not applied
        bank.flush()

    crash_in_child(child)
    with open(jpath, "r+b") as f:
        f.seek(100)
        f.write(os.urandom(8))
    with pytest.raises(BankError, match="journal of commit 2.*does not match its checksums"):
        open_bank(backend, tmp_path)


def test_row_sums():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3, 7)).astype(np.float16)  # 42-byte rows: 2-byte words
    s = _row_sums(x)
    assert s.dtype == np.uint64 and len(set(s.tolist())) == 50
    assert (_row_sums(np.zeros((4, 3, 7), np.float16)) == 0).all()
    y = x.copy()
    y[10, 1, 2] = -y[10, 1, 2]  # one sign bit
    z = x.copy()
    z[20, 0, [0, 1]] = z[20, 0, [1, 0]]  # two words swapped
    for changed, row in ((y, 10), (z, 20)):
        assert np.flatnonzero(_row_sums(changed) != s).tolist() == [row]


# ---------------------------------------------------------------- one process, one run


def _hold(backend, tmp_path, ready_w):
    """Forked child: open the bank (a live run), say so, wait to be killed."""
    _OPEN_FILES.clear()  # the parent's objects are not this process's
    bank = open_bank(backend, tmp_path, run_id="run-a")
    os.write(ready_w, b"x")
    signal.pause()
    bank.close()


@needs_fork
@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_live_bank_is_in_use(tmp_path, backend):
    committed_state(backend, tmp_path, run_id="run-a")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            _hold(backend, tmp_path, w)
        finally:
            os._exit(3)
    try:
        assert os.read(r, 1) == b"x"
        before = snapshot(tmp_path)
        with pytest.raises(BankError, match=rf"in use by another process \(pid {pid} on host .*run run-a") as err:
            open_bank(backend, tmp_path, run_id="run-a")
        assert "delete" not in str(err.value).lower()
        assert snapshot(tmp_path) == before
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with open_bank(backend, tmp_path, run_id="run-a") as bank:  # the lock died with its holder
        assert bank.committed_version == -1


@pytest.mark.skipif(os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE", reason="HDF5 locking off")
def test_hdf5_locked_by_another_program_is_in_use(tmp_path):
    """No bank lock held, but another program has the HDF5 file open (HDF5's lock, errno 11)."""
    path = str(tmp_path / "bank.disk")
    committed_state("disk", tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, h5py; f = h5py.File(sys.argv[1], 'r+'); print('ready', flush=True); "
         "time.sleep(60)", path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(BankError, match="in use by another process") as err:
            open_bank("disk", tmp_path)
        assert "delete" not in str(err.value).lower() and "not a readable" not in str(err.value)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_other_runs_bank_is_refused(tmp_path, backend):
    with open_bank(backend, tmp_path, fingerprint="cfg", run_id="/runs/a") as bank:
        bank.write(torch.arange(N), randn(N, V, D), 1)
        bank.flush()
    before = snapshot(tmp_path)
    with pytest.raises(BankError, match="belongs to run '/runs/a', and this is run '/runs/b'.*left untouched"):
        open_bank(backend, tmp_path, fingerprint="cfg", run_id="/runs/b")
    assert snapshot(tmp_path) == before
    with open_bank(backend, tmp_path, fingerprint="cfg", run_id="/runs/a") as bank:  # its own run resumes
        assert bank.committed_version == 1


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_old_format_is_refused(tmp_path, backend):
    with open_bank(backend, tmp_path) as bank:
        path = bank.path
    if backend == "disk":
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = 1
    else:
        with np.load(path + ".meta.npz") as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["meta"][()]))
        arrays["meta"] = np.array(json.dumps({**meta, "format_version": 1}))
        with open(path + ".meta.npz", "wb") as f:
            np.savez(f, **arrays)
    with pytest.raises(BankError, match="format_version 1; this code reads format_version 2"):
        open_bank(backend, tmp_path)


# ---------------------------------------------------------------- kill -9 at the end of an epoch, then resume

SMALL = [
    "data.source=synthetic", "data.n_train=128", "data.n_test=32", "data.image_size=16", "data.resolution=16",
    "model.convnet_widths=[8,16]", "model.proj_hidden=32", "model.dim=32", "optim.batch_size=32",
    "eval.linear=false", "eval.knn_k=10", "method.probe_images=16", "method.probe_views=2", "progress=false",
    "method.variant=ema",
]
# Where the child dies, in the order of an epoch's end: the loop's end_epoch (the old code committed
# the bank there), evaluation (reading the bank), evaluation logged, bank prepared, checkpoint half
# written, checkpoint written, bank commit half applied.
POINTS = ["end-epoch", "eval", "after-eval", "prepare", "ckpt-write", "after-ckpt", "commit"]


def _kill():
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str, epoch: int) -> None:
    """Patch this (child) process so that it dies at `point` of the end of epoch `epoch` (1-based)."""
    from emsiam import alternation, variants
    from emsiam.banks import DiskBank, MemmapBank
    from emsiam.banks.filebank import _FileBank

    seen = {"epoch": 0, "writes": 0}

    def at(p):
        return point == p and seen["epoch"] == epoch

    end_epoch = variants.EMA.end_epoch

    def wrapped_end_epoch(self):
        seen["epoch"] += 1
        end_epoch(self)
        if at("end-epoch"):
            _kill()

    variants.EMA.end_epoch = wrapped_end_epoch
    gap = alternation.expectation_gap

    def wrapped_gap(*a, **k):
        if at("eval"):
            _kill()
        return gap(*a, **k)

    alternation.expectation_gap = wrapped_gap
    run_eval = alternation.run_eval

    def wrapped_run_eval(*a, **k):
        out = run_eval(*a, **k)
        if at("after-eval"):
            _kill()
        return out

    alternation.run_eval = wrapped_run_eval
    if hasattr(_FileBank, "prepare"):
        prepare = _FileBank.prepare

        def wrapped_prepare(self):
            out = prepare(self)
            if at("prepare"):
                _kill()
            return out

        _FileBank.prepare = wrapped_prepare
    replace = os.replace

    def wrapped_replace(src, dst, **k):
        last = str(dst).endswith("last.pt")
        if last and at("ckpt-write"):
            os.truncate(src, os.path.getsize(src) // 2)
            _kill()
        replace(src, dst, **k)
        if last and at("after-ckpt"):
            _kill()

    os.replace = wrapped_replace
    _FileBank._apply_block_bytes = 16 * 32 * 4  # 16 rows per block: a commit takes 8 writes
    for cls in (DiskBank, MemmapBank):
        def wrapped_write(self, rows, data, _orig=cls._store_write):
            if at("commit"):
                seen["writes"] += 1
                if seen["writes"] == 3:
                    _kill()
            _orig(self, rows, data)

        cls._store_write = wrapped_write


def _train_and_die(overrides, point, epoch):  # runs in a child process
    from emsiam.config import load_config
    from emsiam.train import train

    _arm(point, epoch)
    train(load_config(None, overrides))
    os._exit(4)  # reached the end: the kill point was never hit


def _strip(records):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


_REFERENCE = {}


def _reference(tmp_path_factory, backend, extra):
    """The uninterrupted run, once per configuration."""
    from emsiam.config import load_config
    from emsiam.train import train

    key = (backend, tuple(extra))
    if key not in _REFERENCE:
        out = tmp_path_factory.mktemp("reference")
        cfg = load_config(None, SMALL + extra + [f"method.bank={backend}", f"out_dir={out}", "name=ref"])
        records = train(cfg)
        _REFERENCE[key] = (_strip(records), cfg.run_dir)
    return _REFERENCE[key]


@pytest.fixture(scope="module")
def forkserver():
    """Children forked from a server that has imported torch and emsiam but computed nothing.
    torch._dynamo too: torch.optim imports it when the first optimizer is built (~1.3 s, which
    each child would otherwise pay again)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch._dynamo", "emsiam.train", "emsiam.alternation", __name__])
    return ctx


def _kill_and_resume(forkserver, tmp_path, tmp_path_factory, backend, point, epoch, extra):
    from emsiam.config import load_config
    from emsiam.runs import load_checkpoint
    from emsiam.train import train

    overrides = SMALL + extra + [f"method.bank={backend}", f"out_dir={tmp_path}", "name=run"]
    child = forkserver.Process(target=_train_and_die, args=(overrides, point, epoch))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL, f"the child was not killed at {point} (exit code {child.exitcode})"
    resumed = train(load_config(None, overrides + ["resume=true"]))
    ref, ref_dir = _reference(tmp_path_factory, backend, extra)
    assert _strip(resumed) == ref  # losses, kNN, probes: exactly
    run_dir = tmp_path / "run"
    a, b = load_checkpoint(run_dir / "checkpoints/last.pt"), load_checkpoint(ref_dir / "checkpoints/last.pt")
    va, vb = dict(a["variant"]), dict(b["variant"])
    assert va.pop("bank")["committed_version"] == vb.pop("bank")["committed_version"]
    assert _same(a["model"], b["model"]) and _same(va, vb)
    bank = "bank.h5" if backend == "disk" else "bank.npy"
    assert torch.equal(raw_store(backend, run_dir / bank), raw_store(backend, ref_dir / bank))
    assert not [f for f in os.listdir(run_dir) if "journal" in f]


@pytest.mark.parametrize("backend, point", [("disk", "eval"), ("memmap", "ckpt-write")])
def test_kill_at_epoch_end_then_resume(forkserver, tmp_path, tmp_path_factory, backend, point):
    """Killed at the end of the last epoch, resumed from the previous checkpoint: the same run."""
    _kill_and_resume(forkserver, tmp_path, tmp_path_factory, backend, point, 2, ["optim.epochs=2"])


@pytest.mark.faults
@pytest.mark.parametrize("backend", FILE_BACKENDS)
@pytest.mark.parametrize("point", POINTS)
def test_kill_at_every_point_of_epoch_end_then_resume(forkserver, tmp_path, tmp_path_factory, backend, point):
    _kill_and_resume(forkserver, tmp_path, tmp_path_factory, backend, point, 2, ["optim.epochs=2"])


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_kill_after_uncheckpointed_epoch_then_resume(forkserver, tmp_path, tmp_path_factory, backend):
    """ckpt_every=2: epoch 3 ends without a checkpoint (its updates stay in the journal); killed
    during its evaluation, the run resumes from epoch 2."""
    _kill_and_resume(forkserver, tmp_path, tmp_path_factory, backend, "eval", 3, ["optim.epochs=4", "ckpt_every=2"])


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_corrupt_bank_stops_resume(tmp_path, backend):
    """Random bytes in a run's bank: resume stops with a BankError naming the file, not NaN training."""
    from emsiam.config import load_config
    from emsiam.train import train

    overrides = SMALL + ["optim.epochs=1", f"method.bank={backend}", f"out_dir={tmp_path}", "name=run"]
    train(load_config(None, overrides))
    path = tmp_path / "run" / ("bank.h5" if backend == "disk" else "bank.npy")
    with open(path, "r+b") as f:
        f.seek(data_offset(backend, str(path), 100))
        f.write(os.urandom(64))
    with pytest.raises(BankError, match=f"{path} is damaged"):
        train(load_config(None, overrides + ["resume=true"]))  # refused when the bank is opened


def test_new_run_on_another_runs_bank_is_refused(tmp_path):
    """Same settings (name included), another out_dir, one explicit bank_path: the second run is refused."""
    from emsiam.config import load_config
    from emsiam.train import train

    shared = tmp_path / "shared.h5"
    common = SMALL + ["optim.epochs=1", "method.bank=disk", f"method.bank_path={shared}", "name=twin"]
    train(load_config(None, common + [f"out_dir={tmp_path / 'a'}"]))
    before = shared.read_bytes()
    with pytest.raises(BankError, match="belongs to run"):
        train(load_config(None, common + [f"out_dir={tmp_path / 'b'}"]))
    assert shared.read_bytes() == before
    train(load_config(None, common + [f"out_dir={tmp_path / 'a'}", "resume=true"]))  # its own run resumes
