import json

import pytest
import torch
import yaml

from emsiam.config import load_config
from emsiam.runs import RunError, code_versions, load_checkpoint, read_metrics
from emsiam.train import train

TIMING_KEYS = ("time/",)


def _strip(records):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_KEYS)} for r in records]


def test_run_directory_contents(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["name=a"])
    records = train(cfg)
    d = cfg.run_dir
    assert yaml.safe_load((d / "config.yaml").read_text())["optim"]["epochs"] == 2
    assert (d / "git.txt").read_text().strip()
    assert [r["epoch"] for r in records] == [0, 1, 2]
    ckpt = load_checkpoint(d / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "rng", "epoch", "step", "config"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * (512 // 64)
    assert "eval/knn_top1" in records[-1] and "collapse/z_std_sqrt_d" in records[-1]


def test_resume_reproduces_uninterrupted_run(tiny_overrides):
    full_cfg = load_config(None, tiny_overrides + ["name=full", "optim.epochs=3"])
    full = train(full_cfg)
    # Interrupted: the same 3-epoch schedule, stopped after epoch 2 ...
    part_cfg = load_config(None, tiny_overrides + ["name=part", "optim.epochs=3"])
    _train_until(part_cfg, stop_after_epoch=2)
    # ... then resumed.
    resumed = train(load_config(None, tiny_overrides + ["name=part", "optim.epochs=3", "resume=true"]))
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


def test_resume_with_other_config_is_refused(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["name=r", "optim.epochs=1"])
    train(cfg)
    before = (cfg.run_dir / "metrics.jsonl").read_text()
    with pytest.raises(RunError, match=r"optim.lr_per_256: 0.05 -> 0.2"):
        train(load_config(None, tiny_overrides + ["name=r", "optim.epochs=1", "optim.lr_per_256=0.2", "resume=true"]))
    assert (cfg.run_dir / "metrics.jsonl").read_text() == before


def test_existing_run_is_not_overwritten(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["name=x", "optim.epochs=1"])
    train(cfg)
    before = (cfg.run_dir / "checkpoints/last.pt").read_bytes()
    with pytest.raises(RunError, match="resume=true"):
        train(cfg)
    assert (cfg.run_dir / "checkpoints/last.pt").read_bytes() == before


def test_resume_without_checkpoint(tiny_overrides):
    with pytest.raises(RunError, match="no checkpoint"):
        train(load_config(None, tiny_overrides + ["name=none", "resume=true"]))


def test_metrics_are_json_lines(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["name=m", "optim.epochs=1"])
    train(cfg)
    lines = (cfg.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [0, 1]
    assert read_metrics(cfg.run_dir)[1]["train/loss"] < 0


def test_resume_without_a_name_says_to_pass_it(tmp_path):
    from emsiam.cli import main

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", "resume=true", f"out_dir={tmp_path}"]) == 4
    assert "pass the run's name=" in err.getvalue()
