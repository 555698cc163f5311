import json
import os

import pandas as pd
import pytest

from emsiam.runs import read_status
from experiments import su_dynamics
from experiments.sweep import (STUDIES, Study, cpu_count, expand, load_study, run_studies, run_study, safe_label,
                               main as sweep_main)
from tests.conftest import TINY

OK_BAD = Study(
    name="mini",
    doc="test study",
    runs={
        "ok": ["method.variant=simsiam"],
        "bad data": ["data.source=imagefolder", "data.root=/nowhere/at/all"],  # valid config, fails at run time
        "bad key": ["method.not_a_key=1"],  # invalid config: fails before any compute
    },
)


def test_runner_isolates_failures_writes_table_and_skips_done_runs(tmp_path, capsys):
    out = tmp_path / "runs"
    res = run_study(OK_BAD, preset="demo", out=out, data=TINY, epochs=1, workers=2)
    ok, bad_data, bad_key = (out / "mini" / n for n in ("ok_s0", "bad_data_s0", "bad_key_s0"))

    st = read_status(ok)  # emsiam.runs finds the sweep's status
    assert st["status"] == "done" and st["error"] is None and st["wall_s"] > 0
    assert st["started"] and st["finished"] and "seed=0" in st["overrides"]
    assert (ok / "log.txt").exists() and (ok / "config.yaml").exists()

    st = read_status(bad_data)
    assert st["status"] == "failed" and st["returncode"] == 3 and "/nowhere/at/all" in st["error"]
    st = read_status(bad_key)
    assert st["status"] == "failed" and "unknown config key" in st["error"]
    assert res.count("done") == 1 and res.count("failed") == 2
    summary = capsys.readouterr().out
    assert "1 done, 2 failed, 0 skipped" in summary and "results.csv" in summary

    # Tidy table: one row per eval record of the finished run, one row per failed run.
    df = pd.read_csv(out / "mini" / "results.csv")
    for col in ("run", "study", "label", "status", "epoch", "step", "eval/knn_top1",
                "collapse/z_std_sqrt_d", "method.variant", "optim.epochs", "seed"):
        assert col in df.columns, col
    evals = [json.loads(line) for line in (ok / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if "eval/knn_top1" in r]
    rows = df[df.run == "mini/ok_s0"]
    assert len(rows) == len(evals) >= 2 and list(rows.epoch) == [r["epoch"] for r in evals]
    assert set(rows.status) == {"done"} and set(rows.label) == {"ok"} and set(rows.study) == {"mini"}
    assert set(df[df.status == "failed"].run) == {"mini/bad_data_s0", "mini/bad_key_s0"}
    assert (out / "mini" / "results.parquet").exists()

    # Second invocation: the finished run is skipped, failed runs are retried.
    called = []

    def fake(spec, threads):
        called.append(spec.name)
        return 1, "still broken"

    res2 = run_study(OK_BAD, preset="demo", out=out, data=TINY, epochs=1, executor=fake, quiet=True)
    assert sorted(called) == ["bad_data_s0"]  # bad key never reaches the executor
    assert res2.count("skipped") == 1 and read_status(ok)["status"] == "done"
    assert read_status(bad_data)["error"] == "still broken"


def test_plan_resume_skip_and_executor_crash(tmp_path):
    study = Study("p", "", {"a": [], "b": [], "c": []})
    kw = dict(preset="demo", out=tmp_path, data=TINY, epochs=3)
    a, b = tmp_path / "p" / "a_s0", tmp_path / "p" / "b_s0"
    (a / "checkpoints").mkdir(parents=True)
    (a / "checkpoints" / "last.pt").write_bytes(b"")
    (a / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": 8}) + "\n")
    b.mkdir(parents=True)
    (b / "metrics.jsonl").write_text(json.dumps({"epoch": 3, "step": 24}) + "\n")
    specs = {s.name: s for s in expand(study, **kw)}
    assert specs["a_s0"].action == "resume" and "resume=true" in specs["a_s0"].command()
    assert specs["b_s0"].action == "skip"
    assert specs["c_s0"].action == "run" and "resume=true" not in specs["c_s0"].command()
    assert "optim.epochs=3" in specs["c_s0"].overrides

    seen = {}

    def boom(spec, threads):
        seen[spec.name] = threads
        raise RuntimeError("executor exploded")

    res = run_study(study, executor=boom, workers=2, quiet=True, **kw)
    assert seen == {"a_s0": max(1, cpu_count() // 2), "c_s0": max(1, cpu_count() // 2)}
    assert read_status(a)["status"] == "failed" and "executor exploded" in read_status(a)["error"]
    assert read_status(a)["resumed"] is True and res.count("failed") == 2


def test_run_studies_shares_one_pool_and_writes_a_table_per_study(tmp_path):
    """Two studies of 1 and 3 runs with 2 workers: the pool never waits at the study boundary,
    so the second study's runs overlap the first's (at most 2 at a time), and each study
    gets its own table and result."""
    import threading
    import time

    lock, active, state = threading.Lock(), set(), {"peak": 0, "overlapped": []}

    def fake(spec, threads):
        with lock:
            active.add(spec.rel)
            state["peak"] = max(state["peak"], len(active))
            if spec.study == "three" and "one/a_s0" in active:
                state["overlapped"].append(spec.rel)
        time.sleep(0.3 if spec.study == "one" else 0.05)
        with lock:
            active.discard(spec.rel)
        return 1, f"fake failure of {spec.rel}"

    one, three = Study("one", "", {"a": []}), Study("three", "", {"x": [], "y": [], "z": []})
    res = run_studies([one, three], preset="demo", out=tmp_path, data=TINY, epochs=1, workers=2,
                      executor=fake, quiet=True)
    assert [r.count("failed") for r in res] == [1, 3] and state["peak"] == 2
    assert len(state["overlapped"]) >= 2  # "three" ran beside "one" (study by study: 0)
    for study, r in zip((one, three), res):
        assert set(r.records) == {s.rel for s in r.specs}
        assert (tmp_path / study.name / "results.csv").exists()
        assert set(pd.read_csv(tmp_path / study.name / "results.csv").study) == {study.name}


def test_labels_and_seeds(tmp_path):
    assert safe_label("ema m=0.8") == "ema_m0.8" and safe_label("k/10 x") == "k_10_x"
    with pytest.raises(ValueError):
        Study("x", "", {"a b": [], "a_b": []})
    specs = expand(Study("s", "", {"a": []}, epochs_factor={"a": 2}), preset="demo", seeds=3, out=tmp_path,
                   data=TINY, epochs=2)
    assert [s.name for s in specs] == ["a_s0", "a_s1", "a_s2"] and all(s.epochs == 4 for s in specs)


@pytest.mark.parametrize("name", STUDIES)
def test_study_dry_run(name, tmp_path, capsys):
    study = load_study(name)
    mod = __import__(f"experiments.{name}", fromlist=["main", "PAPER"])
    assert isinstance(mod.PAPER, dict) and study.doc.strip()
    argv = ["--dry-run", "--preset", "cpu", "--seeds", "2", "--out", str(tmp_path), "--epochs", "2",
            "--data", "data.source=imagefolder", "data.root=/data/x", "--workers", "2", "--set", "eval.knn_k=10"]
    assert mod.main(argv) == 0
    assert sweep_main([name, *argv]) == 0  # python -m experiments.sweep STUDY ...
    printed = capsys.readouterr().out
    assert printed.count(f"study {name}:") == 2
    for label in study.runs:
        assert f"{safe_label(label)}_s1" in printed
    assert "invalid" not in printed and not any(tmp_path.iterdir())  # nothing written
    if name == "symmetry":
        specs = {s.name: s for s in expand(study, preset="cpu", out=tmp_path, epochs=2)}
        assert specs["asymmetric_2x_s0"].epochs == specs["asymmetric_s0"].epochs == 2
        assert "method.pairs=2" in specs["asymmetric_2x_s0"].overrides


def test_su_dynamics_accepts_shared_flags(tmp_path, capsys):
    su_dynamics.main(["--dry-run", "--preset", "cpu", "--seeds", "2", "--data", "data.root=x", "--out", str(tmp_path)])
    assert "su_dynamics" in capsys.readouterr().out and not any(tmp_path.iterdir())


def test_status_is_made_to_agree_with_the_run_files(tmp_path):
    """status.json is rebuilt from the files: 'running' without a live lock holder is
    'interrupted' (and resumed), a live holder is left alone, 'done' needs the last epoch."""
    from emsiam.runs import acquire_lock, release_lock
    from experiments.sweep import write_status

    study = Study("st", "", {"dead": [], "live": [], "short": [], "full": []})
    kw = dict(preset="demo", out=tmp_path, data=TINY, epochs=2)
    d = {n: tmp_path / "st" / f"{n}_s0" for n in study.runs}
    for name, status in [("dead", "running"), ("live", "running"), ("short", "done"), ("full", "failed")]:
        write_status(d[name], {"status": status, "error": None})
        (d[name] / "config.yaml").write_text("seed: 0\n")
    (d["dead"] / "checkpoints").mkdir()
    (d["dead"] / "checkpoints" / "last.pt").write_bytes(b"")
    (d["short"] / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": 8}) + "\n")
    (d["full"] / "metrics.jsonl").write_text(json.dumps({"epoch": 2, "step": 16}) + "\n")
    acquire_lock(d["live"])
    try:
        specs = {s.label: s for s in expand(study, **kw)}
        assert specs["dead"].action == "resume" and "no live process" in specs["dead"].reason
        assert specs["live"].action == "busy" and f"pid {os.getpid()}" in specs["live"].reason
        assert specs["short"].action == "resume"  # "done" but the metrics stop at epoch 1
        assert specs["full"].action == "skip"
        called = []
        res = run_study(study, executor=lambda spec, threads: (called.append(spec.label), (1, "x"))[1],
                        quiet=True, **kw)
        assert sorted(called) == ["dead", "short"] and res.count("busy") == 1
        assert read_status(d["live"])["status"] == "running"  # a live run is not touched
        assert read_status(d["full"])["status"] == "done"
    finally:
        release_lock(d["live"])
    from experiments.sweep import reconcile

    write_status(d["dead"], {"status": "running", "error": None})
    reconcile(expand(study, **kw)[0])
    assert read_status(d["dead"])["status"] == "interrupted"


def test_table_has_one_row_per_run_and_epoch(tmp_path):
    """An epoch logged twice (a resumed run, or two writers before the lock) gives one row: the last."""
    from analysis.results import collect

    run = tmp_path / "s" / "a_s0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("optim:\n  epochs: 2\n")
    recs = [{"epoch": 0, "step": 0, "eval/knn_top1": 1.0}, {"epoch": 1, "step": 8, "eval/knn_top1": 2.0},
            {"epoch": 1, "step": 8, "eval/knn_top1": 3.0}, {"epoch": 2, "step": 16, "eval/knn_top1": 4.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"epoch": 3, "ste')
    df = collect(tmp_path)
    assert list(df.epoch) == [0, 1, 2] and list(df["eval/knn_top1"]) == [1.0, 3.0, 4.0]


def test_run_started_elsewhere_after_planning_is_left_alone(tmp_path):
    """A queued run whose directory another process locked since planning is not started."""
    from emsiam.runs import acquire_lock, release_lock
    from experiments.sweep import execute

    spec = expand(Study("b", "", {"a": []}), preset="demo", out=tmp_path, data=TINY, epochs=1)[0]
    assert spec.action == "run"
    acquire_lock(spec.run_dir)
    try:
        rec = execute(spec, executor=lambda s, t: pytest.fail("started a locked run"))
    finally:
        release_lock(spec.run_dir)
    assert rec["status"] == "busy" and f"pid {os.getpid()}" in rec["error"]
    assert not (spec.run_dir / "status.json").exists()


# ---- GPUs per run and submitit launchers ------------------------------------------------------


def test_gpu_groups_round_robin_and_torchrun_inside_a_run(tmp_path, monkeypatch):
    """--gpus-per-run N: each running run gets its own N GPUs through CUDA_VISIBLE_DEVICES (round-robin
    over the runner's visible GPUs), and torchrun with N processes when N > 1."""
    import threading
    import time

    from experiments import sweep

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6,7")
    pool = sweep.GpuPool(2)
    assert pool.groups == [["3", "5"], ["6", "7"]]
    with pytest.raises(SystemExit, match="only 4 GPU"):
        sweep.GpuPool(5)
    seen, lock, active = [], threading.Lock(), []

    def fake_subprocess(spec, threads, gpus=None):
        with lock:
            active.append(tuple(gpus))
            assert len(set(active)) == len(active), active  # two running runs never share a GPU
            seen.append((spec.name, tuple(gpus), spec.command(len(gpus))))
        time.sleep(0.1)
        with lock:
            active.remove(tuple(gpus))
        return 1, "fake"

    monkeypatch.setattr(sweep.executors, "subprocess_executor", fake_subprocess)
    study = Study("g", "", {"a": [], "b": [], "c": []})
    run_study(study, preset="demo", out=tmp_path, data=TINY, epochs=1, workers=3, quiet=True,
              executor=sweep.gpu_executor(pool))
    assert {g for _, g, _ in seen} == {("3", "5"), ("6", "7")} and len(seen) == 3
    cmd = seen[0][2]
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] and "train" in cmd
    assert expand(study, preset="demo", out=tmp_path, data=TINY, epochs=1)[0].command()[1:3] == ["-m", "emsiam"]


def test_submitit_missing_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    from experiments import sweep

    real = builtins.__import__

    def no_submitit(name, *a, **k):
        if name == "submitit":
            raise ImportError("No module named 'submitit'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    with pytest.raises(SystemExit, match="pip install submitit"):
        sweep.submitit_executor(sweep.JobOptions("slurm"), tmp_path)


def test_train_job_checkpoint_requeues_itself_with_resume(tmp_path):
    """submitit's hook: on timeout or preemption the job returns itself with resume=true; the
    requeued job resumes from the run's files (a checkpoint -> resume=true)."""
    submitit = pytest.importorskip("submitit")
    from experiments.sweep import TrainJob

    spec = expand(Study("j", "", {"a": []}), preset="demo", out=tmp_path, data=TINY, epochs=1)[0]
    again = TrainJob(spec, threads=1).checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    job = again.function
    assert isinstance(job, TrainJob) and job.resume and job.spec is spec and not again.args


def test_kstep_sweep_with_the_submitit_local_launcher(tmp_path, capsys):
    """``python -m experiments.kstep_sweep --launcher submitit-local``: each run is a submitit job on this
    machine; statuses, skip on the second invocation and the table are as with the local launcher."""
    pytest.importorskip("submitit")
    import subprocess
    import sys

    from experiments import kstep_sweep

    out = tmp_path / "runs"
    args = ["--launcher", "submitit-local", "--preset", "demo", "--epochs", "1", "--out", str(out),
            "--only", "k10", "--data", *TINY, "--set", "eval.linear=false", "--time", "10"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "experiments.kstep_sweep", *args], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    st = read_status(out / "kstep_sweep" / "k10_s0")
    assert st["status"] == "done", st
    assert "submitted job" in (out / "kstep_sweep" / "k10_s0" / "log.txt").read_text()
    assert set(pd.read_csv(out / "kstep_sweep" / "results.csv").label) == {"k10"}
    assert any((out / "kstep_sweep" / ".submitit").iterdir())
    # the second invocation only plans (nothing to submit): the same main(), in this process
    assert kstep_sweep.main(args) == 0
    assert "0 to run, 1 already done" in capsys.readouterr().out


def test_a_key_the_variant_does_not_read_is_refused_at_planning(tmp_path):
    study = Study(name="mini", doc="", runs={"k on simsiam": ["method.variant=simsiam", "method.k=10"],
                                            "k on kstep": ["method.variant=kstep", "method.k=10"]})
    bad, good = expand(study, preset="demo", out=tmp_path, data=TINY, epochs=1)
    assert bad.action == "invalid" and "method.k=10" in bad.reason and "method.variant=simsiam" in bad.reason
    assert good.action != "invalid"
    assert not any(tmp_path.iterdir())  # nothing written before a run starts


def test_runs_start_label_by_label_or_seed_by_seed(tmp_path, capsys):
    study = Study("o", "", {"a": [], "b": []})
    kw = dict(preset="demo", data=TINY, epochs=1, seeds=2, workers=1, quiet=True)
    for order, expected in (("label", ["a_s0", "a_s1", "b_s0", "b_s1"]), ("seed", ["a_s0", "b_s0", "a_s1", "b_s1"])):
        started = []
        run_study(study, out=tmp_path / order, order=order,
                  executor=lambda s, t: (started.append(s.name), (1, "x"))[1], **kw)
        assert started == expected, order
    with pytest.raises(ValueError, match="order"):
        run_study(study, out=tmp_path / "bad", order="random", **kw)
    assert sweep_main(["kstep_sweep", "--dry-run", "--seeds", "2", "--order", "seed", "--out", str(tmp_path)]) == 0
    names = [x.split()[0] for x in capsys.readouterr().out.splitlines() if x.startswith("  ") and "_s" in x.split()[0]]
    assert names[:2] == ["simsiam_s0", "k1_s0"] and names[-1].endswith("_s1"), names
