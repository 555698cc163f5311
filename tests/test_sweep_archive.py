import json

from emsiam.runs import read_status
from experiments.sweep import Study, archive_run, main as sweep_main, restore, run_study
from experiments.sweep import archive as archive_mod
from tests.conftest import TINY

STUDY = Study("arch", "", {"a": [], "b": []})


def fake_run(spec, threads):
    """What a finished run leaves: its record, and the bulky resume state the archive drops."""
    d = spec.run_dir
    (d / "checkpoints").mkdir(parents=True, exist_ok=True)
    (d / "checkpoints" / "last.pt").write_bytes(b"x" * 100)
    (d / "spectra").mkdir(exist_ok=True)
    (d / "spectra" / "epoch1.json").write_text("{}")
    (d / "config.yaml").write_text(f"seed: {spec.seed}\n")
    (d / "git.txt").write_text("abc123 start\n")
    (d / "bank.npy").write_bytes(b"b" * 100)
    (d / "bank.h5.journal-index.npy").write_bytes(b"j")
    (d / "run.lock").write_text("{}")
    (d / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": 8, "eval/knn_top1": 50.0}) + "\n")
    if spec.label == "b":
        (d / "huge.json").write_bytes(b"0" * (archive_mod.MAX_FILE_BYTES + 1))
    return 0, ""


def test_finished_runs_are_archived_small_and_restored_as_done(tmp_path, capsys):
    out, arch = tmp_path / "runs", tmp_path / "results"
    kw = dict(preset="demo", data=TINY, epochs=1, archive=arch)
    res = run_study(STUDY, out=out, executor=fake_run, **kw)
    assert res.count("done") == 2
    a = arch / "arch" / "a_s0"
    kept = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert kept == ["config.yaml", "git.txt", "metrics.jsonl", "spectra/epoch1.json", "status.json"]
    assert read_status(a)["status"] == "done"
    assert not (arch / "arch" / "b_s0" / "huge.json").exists()
    assert "leaves out large files: huge.json" in capsys.readouterr().out
    assert not list((arch / "arch").glob(".*"))  # no partial copies left beside the runs

    # A new machine: runs/ is gone, the archive was checked in. Nothing runs again.
    fresh = tmp_path / "fresh"
    called = []
    res2 = run_study(STUDY, out=fresh, executor=lambda s, t: (called.append(s.name), (1, "ran"))[1], **kw)
    assert called == [] and res2.count("skipped") == 2
    assert (fresh / "arch" / "a_s0" / "metrics.jsonl").read_text() == (a / "metrics.jsonl").read_text()
    assert set(res2.table["label"]) == {"a", "b"}  # the table is built from the restored runs
    assert "restored 2 finished runs" in capsys.readouterr().out


def test_restore_never_writes_over_a_run_directory(tmp_path):
    arch, out = tmp_path / "results" / "s", tmp_path / "runs" / "s"
    (arch / "x_s0").mkdir(parents=True)
    (arch / "x_s0" / "metrics.jsonl").write_text("archived\n")
    (arch / "y_s0").mkdir()
    (out / "x_s0").mkdir(parents=True)
    (out / "x_s0" / "metrics.jsonl").write_text("in progress\n")
    assert restore(arch, out, say=lambda *a: None) == ["y_s0"]
    assert (out / "x_s0" / "metrics.jsonl").read_text() == "in progress\n"
    assert restore(tmp_path / "nowhere", out) == []


def test_archiving_again_replaces_the_whole_copy(tmp_path):
    run, dest = tmp_path / "run", tmp_path / "arch" / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("1\n")
    (run / "old.txt").write_text("gone later")
    archive_run(run, dest)
    (run / "old.txt").unlink()
    (run / "metrics.jsonl").write_text("1\n2\n")
    assert archive_run(run, dest) == []
    assert sorted(p.name for p in dest.iterdir()) == ["metrics.jsonl"]
    assert (dest / "metrics.jsonl").read_text() == "1\n2\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["run"]


def test_runs_finished_without_the_archive_are_archived_by_the_next_invocation(tmp_path):
    out, arch = tmp_path / "runs", tmp_path / "results"
    run_study(STUDY, out=out, preset="demo", data=TINY, epochs=1, executor=fake_run, quiet=True)
    assert not arch.exists()
    res = run_study(STUDY, out=out, preset="demo", data=TINY, epochs=1, archive=arch, quiet=True,
                    executor=lambda s, t: (1, "must not run"))
    assert res.count("skipped") == 2
    assert sorted(p.name for p in (arch / "arch").iterdir()) == ["a_s0", "b_s0"]


def test_dry_run_names_the_runs_it_would_restore(tmp_path, capsys):
    arch = tmp_path / "results"
    (arch / "kstep_sweep" / "simsiam_s0").mkdir(parents=True)
    assert sweep_main(["kstep_sweep", "--dry-run", "--out", str(tmp_path / "runs"), "--archive", str(arch)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("simsiam_s0"))
    assert "skip" in line and "would be restored" in line
    assert not (tmp_path / "runs").exists()
