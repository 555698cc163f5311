"""Faults a run can meet (issue 14): a second writer, a stale lock, a run killed before its
first checkpoint, corrupt checkpoints, a read-only or full disk, bad inputs at the CLI, and
the sweep runner interrupted or killed. Each test names the fault it backs in the README's
"What happens when things go wrong" table."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from emsiam.banks import BankError
from emsiam.cli import main
from emsiam.config import load_config
from emsiam.data import DataError
from emsiam.runs import (LOCK, CheckpointError, Run, RunError, RunLocked, load_checkpoint, lock_holder, read_metrics,
                         read_status, release_lock, rng_state, set_rng_state)
from emsiam.train import train
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
FAST = ["optim.epochs=1", "eval.linear=false"]


def _strip(records):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _wait_for(cond, timeout=60.0, what="condition"):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _lock_pid(run_dir: Path):
    try:
        return json.loads((run_dir / LOCK).read_text()).get("pid")
    except (OSError, ValueError):
        return None


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie left to an init that does not reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


# --------------------------------------------------------------------------
# the run-directory lock


#: Another process holding a run directory's lock as Run.open does (flock + its record), without
#: importing torch (the slow test below uses two real training processes).
HOLDER = textwrap.dedent("""
    import fcntl, json, os, socket, sys, time
    os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}).encode())
    print("locked", flush=True)
    time.sleep(120)
""")


def test_second_writer_is_refused_and_stale_lock_is_taken_over(tiny_overrides, capsys, monkeypatch):
    """Two writers: a live holder's pid is named and nothing is written; after it is killed
    (kill -9 drops its flock), the stale lock is recognised and taken over."""
    cfg = load_config(None, tiny_overrides + FAST + ["name=twin"])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(cfg.run_dir / LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"pid {holder.pid} on host"):
            train(cfg)
        assert main(["train", *tiny_overrides, *FAST, "name=twin"]) == 9
        assert f"pid {holder.pid}" in _one_line_error(capsys)
        assert sorted(p.name for p in cfg.run_dir.iterdir()) == [LOCK]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    seen = []
    save = Run.save

    def save_and_look(self, state):  # the lock is ours while the run writes
        seen.append(json.loads((self.dir / LOCK).read_text())["pid"])
        save(self, state)

    monkeypatch.setattr(Run, "save", save_and_look)
    with pytest.warns(UserWarning, match=f"taking over the lock left by pid {holder.pid}"):
        records = train(cfg)
    assert [r["epoch"] for r in records] == [0, 1] and seen == [os.getpid()]
    assert (cfg.run_dir / LOCK).read_text() == ""  # released at the end: no stale record left


# --------------------------------------------------------------------------
# a run killed before its first checkpoint


def test_resume_before_first_checkpoint_restarts_from_scratch(tiny_overrides, monkeypatch, capsys):
    base = tiny_overrides + FAST

    class Killed(Exception):
        pass

    def die(self, state):
        raise Killed

    with monkeypatch.context() as m:  # the first attempt dies at its first checkpoint
        m.setattr(Run, "save", die)
        with pytest.raises(Killed):
            train(load_config(None, base + ["name=early"]))
    run_dir = load_config(None, base + ["name=early"]).run_dir
    assert not (run_dir / "checkpoints/last.pt").exists() and len(read_metrics(run_dir)) == 2  # epochs 0, 1

    with pytest.raises(RunError, match="resume=true to restart it from scratch"):
        train(load_config(None, base + ["name=early"]))
    assert main(["train", *base, "name=early"]) == 4
    assert "from scratch" in _one_line_error(capsys)
    with pytest.raises(RunError, match=r"optim.lr_per_256: 0.05 -> 0.1"):  # the saved config is compared
        train(load_config(None, base + ["name=early", "optim.lr_per_256=0.1", "resume=true"]))

    with pytest.warns(UserWarning, match=r"from scratch with the saved config \(seed 0\)"):
        resumed = train(load_config(None, base + ["name=early", "resume=true"]))
    fresh = train(load_config(None, base + ["name=fresh"]))
    assert _strip(resumed) == _strip(fresh)  # same config, same seed: the uninterrupted run
    assert len(list(run_dir.glob("metrics.jsonl.stale-*"))) == 1  # the dead attempt's metrics, set aside


def test_truncate_metrics_drops_torn_lines_and_duplicate_epochs(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["name=torn"])
    run = Run(cfg)
    run.dir.mkdir(parents=True)
    posthoc = {"tag": "posthoc", "epoch": 1, "step": 8, "posthoc/knn_top1": 5.0}  # an eval of that checkpoint
    lines = [{"epoch": 0, "step": 0, "a": 1}, {"epoch": 1, "step": 8, "a": 2}, posthoc,
             {"epoch": 1, "step": 8, "a": 3}, {"epoch": 2, "step": 16}]
    run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"epoch": 3, "st')
    with pytest.warns(UserWarning, match="unreadable line"):
        run.truncate_metrics(8)
    assert read_metrics(run.dir) == [{"epoch": 0, "step": 0, "a": 1}, {"epoch": 1, "step": 8, "a": 3}, posthoc]


# --------------------------------------------------------------------------
# checkpoints


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished 1-epoch tiny run (its directory is copied before being damaged)."""
    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(None, TINY + FAST + [f"out_dir={out}", "name=base"])
    train(cfg)
    return cfg.run_dir


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_corrupt_checkpoint_is_named(trained_run, tmp_path, damage, capsys):
    run_dir = tmp_path / "runs" / "base"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns(LOCK))
    ckpt = run_dir / "checkpoints" / "last.pt"
    data = ckpt.read_bytes()
    if damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    else:  # the archive's directory is intact, the pickled data is not
        i = data.index(b"data.pkl") + 200
        ckpt.write_bytes(data[:i] + os.urandom(300) + data[i + 300:])
    with pytest.raises(CheckpointError, match=str(ckpt)):
        load_checkpoint(ckpt)
    args = ["train", *TINY, *FAST, f"out_dir={tmp_path / 'runs'}", "name=base", "resume=true"]
    assert main(args) == 5
    line = _one_line_error(capsys)
    assert str(ckpt) in line and "cannot be read" in line


def test_rng_state_is_loaded_on_the_cpu_whatever_map_location(tmp_path):
    """Issue 15 item 1: with a non-CPU map_location, the RNG states still restore."""
    path = tmp_path / "c.pt"
    torch.manual_seed(123)
    torch.save({"model": {"w": torch.randn(3)}, "rng": rng_state()}, path)
    expected = torch.rand(4)
    ckpt = load_checkpoint(path, map_location="meta")
    assert ckpt["model"]["w"].device.type == "meta"  # everything else goes where asked
    assert ckpt["rng"]["torch"].device.type == "cpu" and ckpt["rng"]["torch"].dtype == torch.uint8
    set_rng_state(ckpt["rng"])
    assert torch.equal(torch.rand(4), expected)


# --------------------------------------------------------------------------
# disks


def _no_data_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("data was loaded before the check")

    monkeypatch.setattr("emsiam.setup.load_data", refuse)


def _drop_root_file_powers() -> None:
    """In a child run as root, before exec: drop the capabilities that bypass file permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) so that a 0555 directory binds."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(99)


def test_read_only_out_dir_is_refused_before_loading_data(tmp_path, monkeypatch, capsys):
    """Read-only out_dir: one line, exit 6, before any data is loaded. As root (permissions do not
    bind) the CLI runs in a child without the capabilities that override them."""
    _no_data_load(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if not os.access(ro, os.W_OK):
            assert main(["train", *TINY, f"out_dir={ro}", "name=x"]) == 6
            line = _one_line_error(capsys)
        else:
            if os.geteuid() != 0 or sys.platform != "linux":
                pytest.skip("chmod does not stop this user from writing")
            r = subprocess.run([sys.executable, "-m", "emsiam", "train", *TINY, f"out_dir={ro}", "name=x"],
                               capture_output=True, text=True, env=_env(), preexec_fn=_drop_root_file_powers,
                               timeout=120)
            assert r.returncode == 6, r.stderr
            err = r.stderr.strip().splitlines()
            assert len(err) == 1, err
            line = err[0]
        assert str(ro) in line and "Permission denied" in line and "writable" in line
        assert not any(ro.iterdir())
    finally:
        ro.chmod(0o755)


def _limit_file_size(limit: int):
    def setup():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by SIGXFSZ
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return setup


def test_disk_full_child_gets_one_line_and_no_partial_checkpoint(tmp_path):
    """Disk full via RLIMIT_FSIZE: config and metrics fit, the checkpoint does not."""
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "emsiam", "train", *TINY, *FAST, f"out_dir={out}", "name=full"],
                       capture_output=True, text=True, cwd=tmp_path, env=_env(),
                       preexec_fn=_limit_file_size(24_000), timeout=300)
    assert r.returncode == 6, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "last.pt" in err[0] and "File too large" in err[0] and "resume=true" in err[0], err
    ckpts = out / "full" / "checkpoints"
    assert list(ckpts.iterdir()) == []  # the temporary file was removed, nothing half-written
    assert [r["epoch"] for r in read_metrics(out / "full")] == [0, 1]


# --------------------------------------------------------------------------
# bad inputs at the CLI: one line, a distinct exit status


def _yaml(tmp_path, text):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    return str(f)


@pytest.mark.parametrize("args,code,needle", [
    (lambda t: ["--config", _yaml(t, "optim:\n  epochs: [1\n")], 2, "line 3"),
    (lambda t: ["--config", str(t)], 2, "is a directory"),
    (lambda t: ["optim.momentum=1.5"], 2, "optim.momentum must be in [0, 1)"),
    (lambda t: ["optim.weight_decay=-1"], 2, "optim.weight_decay must be >= 0"),
    (lambda t: ["name=.."], 2, "inside out_dir"),
    (lambda t: ["name=/etc"], 2, "inside out_dir"),
    (lambda t: ["name="], 2, "name"),
    (lambda t: ["device=tpu"], 2, "device='tpu' is not supported"),
    (lambda t: ["optim.lr_per_256=fast"], 2, "expected a number"),
    (lambda t: [*TINY, "data.n_train=32", f"out_dir={t}"], 2, "optim.batch_size=64 exceeds the training set (32"),
    (lambda t: ["optim.batch_size=20000", f"out_dir={t}"], 2, "10000 images"),
])
def test_cli_config_errors(tmp_path, monkeypatch, capsys, args, code, needle):
    _no_data_load(monkeypatch)
    assert main(["train", *args(tmp_path)]) == code
    assert needle in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_cli_batch_larger_than_npz_dataset_from_its_header(tmp_path, monkeypatch, capsys):
    """The npz source's size comes from the images array header, before any data is loaded."""
    import numpy as np

    _no_data_load(monkeypatch)
    for split, n in (("train", 20), ("test", 8)):
        np.savez_compressed(tmp_path / f"{split}.npz", images=np.zeros((n, 8, 8, 3), np.uint8),
                            labels=np.zeros(n, np.int64))
    assert main(["train", "data.source=npz", f"data.root={tmp_path}", "optim.batch_size=64",
                 f"out_dir={tmp_path}"]) == 2
    assert "(20 images of data.source=npz)" in _one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_cuda_without_cuda(tmp_path, monkeypatch, capsys):
    _no_data_load(monkeypatch)
    assert main(["train", *TINY, "device=cuda", f"out_dir={tmp_path}"]) == 8
    assert "device=cuda: CUDA is not available" in _one_line_error(capsys)


def test_cli_resume_with_missing_or_broken_saved_config(tmp_path, monkeypatch, capsys):
    _no_data_load(monkeypatch)
    run_dir = tmp_path / "r"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    args = ["train", *TINY, f"out_dir={tmp_path}", "name=r", "resume=true"]
    assert main(args) == 4
    assert f"{run_dir / 'config.yaml'} is missing" in _one_line_error(capsys)
    (run_dir / "config.yaml").write_text("optim: {epochs: 2\n")
    assert main(args) == 4
    assert "config.yaml is not valid YAML (line 2" in _one_line_error(capsys)


@pytest.mark.parametrize("exc,code", [
    (BankError("bank file /x/bank.h5 does not match the run"), 7),
    (DataError("no images"), 3),
    (RunError("run directory in use"), 4),
    (OSError(28, "No space left on device", "/x/metrics.jsonl"), 6),
    (OSError(30, "Read-only file system", "/x"), 6),
    (KeyboardInterrupt(), 130),
])
def test_cli_maps_errors_to_exit_codes(monkeypatch, capsys, exc, code):
    def boom(cfg):
        raise exc

    monkeypatch.setattr("emsiam.train.train", boom)
    assert main(["train"]) == code
    line = _one_line_error(capsys)
    assert line.startswith("emsiam: ") and (str(exc.args[-1]) in line if exc.args else "interrupted" in line)


def test_cli_traceback_only_with_debug(monkeypatch, capsys):
    def boom(cfg):
        raise BankError("bank broken")

    monkeypatch.setattr("emsiam.train.train", boom)
    assert main(["train", "--debug"]) == 7
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("EMSIAM_DEBUG", "1")
    assert main(["train"]) == 7
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setattr("emsiam.train.train", lambda cfg: 1 / 0)  # a bug keeps its traceback
    with pytest.raises(ZeroDivisionError):
        main(["train"])


# --------------------------------------------------------------------------
# the sweep runner


RUNNER = textwrap.dedent("""
    import sys
    from experiments.sweep import Study, study_main
    from tests.conftest import TINY
    study = Study("faults", "", {"long": [], "next": []})
    sys.exit(study_main(study, ["--preset", "demo", "--out", sys.argv[1], "--epochs", sys.argv[2],
                                "--data", *TINY, "--set", "eval.linear=false", "eval.eval_every=1000"]))
""")


def _start_runner(tmp_path, epochs):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    out = tmp_path / "sweep"
    runner = subprocess.Popen([sys.executable, str(script), str(out), str(epochs)], cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = out / "faults" / "long_s0"
    _wait_for(lambda: _lock_pid(run_dir) not in (None, runner.pid) or runner.poll() is not None, 120,
              "the child to take its lock")
    assert runner.poll() is None, runner.stdout.read()
    return runner, out, run_dir, _lock_pid(run_dir)


def test_sweep_sigint_stops_everything_and_writes_the_table(tmp_path):
    runner, out, run_dir, child = _start_runner(tmp_path, epochs=500)
    runner.send_signal(signal.SIGINT)
    log, _ = runner.communicate(timeout=120)
    assert runner.returncode == 130, log
    assert _gone(child)
    st = read_status(run_dir)
    assert st["status"] == "interrupted" and st["returncode"] == 130, st
    assert not (out / "faults" / "next_s0").exists()  # no further run started
    df = pd.read_csv(out / "faults" / "results.csv")
    assert set(df.run) == {"faults/long_s0"} and set(df.status) == {"interrupted"}
    assert "interrupted" in log


def test_sweep_runner_killed_leaves_no_orphan(tmp_path):
    from experiments.sweep import Study, expand, reconcile

    runner, out, run_dir, child = _start_runner(tmp_path, epochs=500)
    runner.kill()
    runner.wait()
    _wait_for(lambda: _gone(child), 30, f"the orphaned child {child} to die")
    assert read_status(run_dir)["status"] == "running"  # what the killed runner left
    spec = expand(Study("faults", "", {"long": []}), preset="demo", out=out, data=TINY, epochs=500,
                  extra=["eval.linear=false", "eval.eval_every=1000"])[0]
    assert spec.action in ("run", "resume") and "no live process" in spec.reason
    reconcile(spec)
    assert read_status(run_dir)["status"] == "interrupted"


@pytest.mark.faults
def test_sweep_rerun_after_kill_has_no_duplicate_rows(tmp_path, capsys):
    """kill -9 of the runner after a checkpoint, then the same command again: the run resumes
    and the table has one row per (run, epoch)."""
    from experiments.sweep import Study, study_main

    epochs = 6  # the kill comes after epoch 2: four epochs of margin before the run would end
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.replace('"eval.eval_every=1000"', '"eval.eval_every=1"'))
    out = tmp_path / "sweep"
    run_dir = out / "faults" / "long_s0"
    runner = subprocess.Popen([sys.executable, str(script), str(out), str(epochs)], cwd=ROOT, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: len(read_metrics(run_dir)) >= 3, 240, "two epochs")
    _wait_for(lambda: _lock_pid(run_dir) not in (None, runner.pid), 30, "the child's lock record")
    child = _lock_pid(run_dir)
    runner.kill()
    runner.wait()
    # the rerun must find the run free: its child dead and the kernel's lock on run.lock gone with it
    _wait_for(lambda: _gone(child) and lock_holder(run_dir) is None, 30, f"the child {child} to die and free its lock")
    assert len(read_metrics(run_dir)) < epochs + 1  # killed before the end: the rerun has to resume
    # the same command again (RUNNER's study and arguments), here in this process; --only long: the
    # run after it, which the kill kept from starting, has nothing to show here
    study = Study("faults", "", {"long": [], "next": []})
    rc = study_main(study, ["--preset", "demo", "--out", str(out), "--epochs", str(epochs), "--data", *TINY,
                            "--set", "eval.linear=false", "eval.eval_every=1", "--only", "long"])
    assert rc == 0, capsys.readouterr()
    df = pd.read_csv(out / "faults" / "results.csv")
    long = df[df.run == "faults/long_s0"]
    assert not long.duplicated(["run", "epoch"]).any() and list(long.epoch) == list(range(epochs + 1))
    assert read_status(run_dir)["status"] == "done" and read_status(run_dir)["resumed"] is True


@pytest.mark.faults
def test_two_train_processes_into_one_directory(tmp_path):
    """Two real `python -m emsiam train` into one run directory: the second exits 9 naming
    the first's pid, and the run holds only the first's records."""
    args = [sys.executable, "-m", "emsiam", "train", *TINY, "optim.epochs=30", f"out_dir={tmp_path}", "name=twin"]
    a = subprocess.Popen(args + ["seed=0"], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _lock_pid(tmp_path / "twin") == a.pid, 120, "the first run's lock")
        b = subprocess.run(args + ["seed=1"], env=_env(), capture_output=True, text=True, timeout=120)
        assert b.returncode == 9 and f"pid {a.pid}" in b.stderr, b.stderr
    finally:
        a.kill()
        a.wait()
    cfg = (tmp_path / "twin" / "config.yaml").read_text()
    assert "seed: 0" in cfg


def test_disk_full_while_writing_a_bank_file(tmp_path):
    """Disk full while the EMA disk bank (HDF5) is created: one line naming the bank file, exit 6
    (disk) or 7 (bank), no traceback; nothing of a checkpoint is left."""
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "emsiam", "train", *TINY, *FAST, "method.variant=ema",
                        "method.bank=disk", f"out_dir={out}", "name=bankfull"],
                       capture_output=True, text=True, cwd=tmp_path, env=_env(),
                       preexec_fn=_limit_file_size(24_000), timeout=300)
    err = r.stderr.strip().splitlines()
    assert r.returncode in (6, 7), r.stderr
    assert len(err) == 1 and "bank" in err[0] and "Traceback" not in r.stderr, err
    assert not (out / "bankfull" / "checkpoints" / "last.pt").exists()
