import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from emsiam.config import load_config
from emsiam.runs import LOCK, RunError, code_versions, load_checkpoint, read_metrics
from emsiam.train import train
from tests.conftest import TINY

TIMING_KEYS = ("time/",)


def _strip(records):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_KEYS)} for r in records]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-epoch TINY run and its records: the uninterrupted reference of the resume test.
    Tests only read it, or copy its directory first (``_copy``). (Under pytest-xdist each worker
    that runs one of these tests trains it once: a second or two.)"""
    cfg = load_config(None, TINY + [f"out_dir={tmp_path_factory.mktemp('runs')}", "name=full"])
    return cfg, train(cfg)


def _copy(finished_run, tiny_overrides) -> Path:
    """The finished run's directory copied to where ``tiny_overrides + ["name=full"]`` points."""
    cfg, _ = finished_run
    dest = Path(load_config(None, tiny_overrides + ["name=full"]).run_dir)
    shutil.copytree(cfg.run_dir, dest, ignore=shutil.ignore_patterns(LOCK))
    return dest


def test_run_directory_contents(finished_run):
    cfg, records = finished_run
    d = cfg.run_dir
    assert yaml.safe_load((d / "config.yaml").read_text())["optim"]["epochs"] == 2
    assert (d / "git.txt").read_text().strip()
    assert [r["epoch"] for r in records] == [0, 1, 2]
    ckpt = load_checkpoint(d / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "rng", "epoch", "step", "config"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * (512 // 64)
    assert "eval/knn_top1" in records[-1] and "collapse/z_std_sqrt_d" in records[-1]


def test_resume_reproduces_uninterrupted_run(finished_run, tiny_overrides):
    full_cfg, full = finished_run
    # Interrupted: the same 2-epoch schedule, stopped after epoch 1 ...
    part_cfg = load_config(None, tiny_overrides + ["name=part"])
    _train_until(part_cfg, stop_after_epoch=1)
    # ... then resumed: epoch 2 runs from the checkpoint, in a fresh model, optimizer and RNG state.
    resumed = train(load_config(None, tiny_overrides + ["name=part", "resume=true"]))
    assert [r["epoch"] for r in resumed] == [0, 1, 2]
    assert _strip(resumed) == _strip(full)
    # git.txt keeps the code version of every segment: one line for the start, one per resume.
    lines = (part_cfg.run_dir / "git.txt").read_text().splitlines()
    assert [ln.split()[2] for ln in lines] == ["start", "resume"]
    assert code_versions(part_cfg.run_dir) == [lines[0].split()[0]]
    a = load_checkpoint(part_cfg.run_dir / "checkpoints/last.pt")["model"]
    b = load_checkpoint(full_cfg.run_dir / "checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _train_until(cfg, stop_after_epoch):
    """Run ``train`` but kill it (by exception) right after a checkpoint."""
    import emsiam.runs as runs

    orig = runs.Run.save

    class Stop(Exception):
        pass

    def save_then_stop(self, state):
        orig(self, state)
        if state["epoch"] == stop_after_epoch:
            raise Stop

    runs.Run.save = save_then_stop
    try:
        with pytest.raises(Stop):
            train(cfg)
    finally:
        runs.Run.save = orig


def test_resume_with_other_config_is_refused(finished_run, tiny_overrides):
    d = _copy(finished_run, tiny_overrides)
    before = (d / "metrics.jsonl").read_text()
    with pytest.raises(RunError, match=r"optim.lr_per_256: 0.05 -> 0.2"):
        train(load_config(None, tiny_overrides + ["name=full", "optim.lr_per_256=0.2", "resume=true"]))
    assert (d / "metrics.jsonl").read_text() == before


def test_existing_run_is_not_overwritten(finished_run, tiny_overrides):
    d = _copy(finished_run, tiny_overrides)
    before = (d / "checkpoints/last.pt").read_bytes()
    with pytest.raises(RunError, match="resume=true"):
        train(load_config(None, tiny_overrides + ["name=full"]))
    assert (d / "checkpoints/last.pt").read_bytes() == before


def test_resume_without_checkpoint(tiny_overrides):
    with pytest.raises(RunError, match="no checkpoint"):
        train(load_config(None, tiny_overrides + ["name=none", "resume=true"]))


def test_metrics_are_json_lines(finished_run):
    cfg, _ = finished_run
    lines = (cfg.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [0, 1, 2]
    assert read_metrics(cfg.run_dir)[1]["train/loss"] < 0


def test_resume_without_a_name_says_to_pass_it(tmp_path):
    from emsiam.cli import main

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", "resume=true", f"out_dir={tmp_path}"]) == 4
    assert "pass the run's name=" in err.getvalue()


def test_resume_accepts_another_spelling_of_the_same_absolute_path(finished_run, tiny_overrides, tmp_path,
                                                                  monkeypatch):
    from emsiam.runs.rundir import same_paths

    data = tmp_path / "shared" / "data.npz"
    data.parent.mkdir()
    monkeypatch.chdir(tmp_path / "shared")
    saved = {"data": {"root": str(data)}}
    assert same_paths(saved, {"data": {"root": "../shared/data.npz"}}) == {"data.root"}
    assert same_paths(saved, {"data": {"root": "other.npz"}}) == set()  # another file
    assert same_paths({"data": {"root": "data.npz"}}, {"data": {"root": str(data)}}) == set()  # saved relative
    # A whole resume: the saved config names the root absolutely, the resume spells it relatively.
    d = _copy(finished_run, tiny_overrides)
    cfg_file = d / "config.yaml"
    saved_cfg = yaml.safe_load(cfg_file.read_text())
    saved_cfg["data"]["root"] = str(data)
    cfg_file.write_text(yaml.safe_dump(saved_cfg))
    records = train(load_config(None, tiny_overrides + ["name=full", "data.root=../shared/data.npz", "resume=true"]))
    assert [r["epoch"] for r in records] == [0, 1, 2]
    with pytest.raises(RunError, match=r"data.root: .* -> 'elsewhere.npz'"):
        train(load_config(None, tiny_overrides + ["name=full", "data.root=elsewhere.npz", "resume=true"]))
