"""Optional TensorBoard / W&B sinks, fed by Run.log; a missing package is refused before compute."""

import importlib.util
import sys
import types

import pytest

from emsiam.cli import main
from emsiam.config import ConfigError, load_config
from emsiam.loggers import check_available, scalars
from emsiam.runs import Run, read_metrics

from .conftest import TINY


class FakeWriter:
    instances: list = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.flushed = log_dir, [], 0
        FakeWriter.instances.append(self)

    def add_scalar(self, key, value, step):
        self.scalars.append((key, value, step))

    def flush(self):
        self.flushed += 1


def test_run_log_feeds_tensorboard(tmp_path, monkeypatch):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    FakeWriter.instances.clear()
    run = Run(load_config(None, ["log.tensorboard=true", "name=tb", f"out_dir={tmp_path}"]))
    run.dir.mkdir(parents=True)
    run.log({"epoch": 1, "step": 10, "train/loss": -0.5, "eval/knn_top1": 40.0, "tag": "x", "flag": True})
    run.log({"epoch": 2, "step": 20, "train/loss": -0.6})
    (w,) = FakeWriter.instances  # opened once, on the run
    assert w.log_dir == str(tmp_path / "tb" / "tensorboard")
    assert w.scalars == [("train/loss", -0.5, 10), ("eval/knn_top1", 40.0, 10), ("train/loss", -0.6, 20)]
    assert w.flushed == 2 and len(read_metrics(run.dir)) == 2  # metrics.jsonl as always


def test_run_log_feeds_wandb(tmp_path, monkeypatch):
    logged, inits = [], []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: inits.append(kw) or types.SimpleNamespace(log=lambda d, step: logged.append((d, step)))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = Run(load_config(None, ["log.wandb=true", "log.wandb_project=p", "name=wb", f"out_dir={tmp_path}"]))
    run.dir.mkdir(parents=True)
    run.log({"epoch": 1, "step": 5, "train/loss": -0.5})
    assert inits[0]["project"] == "p" and inits[0]["name"] == "wb" and inits[0]["config"]["log"]["wandb"]
    assert logged == [({"train/loss": -0.5}, 5)]


def test_real_tensorboard_event_file(tmp_path):
    pytest.importorskip("tensorboard")
    run = Run(load_config(None, ["log.tensorboard=true", "name=tb", f"out_dir={tmp_path}"]))
    run.dir.mkdir(parents=True)
    run.log({"epoch": 1, "step": 10, "train/loss": -0.5})
    assert list((run.dir / "tensorboard").glob("events.out.tfevents.*"))


def test_missing_package_refused_before_compute(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "wandb") else real(name, *a))
    with pytest.raises(ConfigError, match=r"emsiam\[wandb\]"):
        check_available(load_config(None, ["log.wandb=true"]))
    assert main(["train", *TINY, "log.tensorboard=true", "name=t", f"out_dir={tmp_path}"]) == 2
    assert "pip install 'emsiam[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_scalars_keep_finite_numbers_only():
    assert scalars({"epoch": 1, "step": 2, "a": 1, "b": float("nan"), "c": "s", "d": False, "e": 0.5}) == \
        {"a": 1.0, "e": 0.5}
