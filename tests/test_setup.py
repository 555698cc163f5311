"""Building a run from its config (emsiam.setup): checks first, then device, data, model, variant,
optimizer and schedule; the base lr written once."""

import pytest
import torch

from emsiam.config import ConfigError, load_config
from emsiam.setup import base_lr, build_optimizer, lr_schedule, setup

SMALL = ["data.n_train=128", "data.n_test=32", "model.convnet_widths=[8]", "model.proj_hidden=16", "model.dim=16",
         "optim.batch_size=32", "optim.epochs=2", "progress=false", "eval.linear=false"]


def test_base_lr_is_the_linear_scaling_rule():
    cfg = load_config(None, ["optim.lr_per_256=0.1", "optim.batch_size=512", "optim.epochs=4"])
    assert base_lr(cfg.optim) == 0.1 * 512 / 256
    assert lr_schedule(cfg.optim, 10).max() == pytest.approx(base_lr(cfg.optim))  # no warm-up: starts at base


def test_setup_builds_every_part(tmp_path):
    s = setup(load_config(None, SMALL + [f"out_dir={tmp_path}", "name=r", "method.variant=kstep", "method.k=2"]))
    assert s.device == torch.device("cpu") and len(s.train) == 128 and len(s.test) == 32
    assert s.variant.model is s.model and s.variant.bank is not None and s.variant.bank.n_rows == 128
    assert len(s.batches) == 4 and len(s.lrs) == 8 and s.base_lr == base_lr(s.cfg.optim)
    assert [g["lr"] for g in s.opt.param_groups] == [s.base_lr] * 2
    assert s.cfg.run_dir == tmp_path / "r"  # Run.open checked it; fit writes config.yaml
    s.variant.bank.close()
    opt = build_optimizer(s.model, s.cfg.optim)
    assert opt.defaults["lr"] == s.base_lr


def test_setup_without_a_bank(tmp_path):
    s = setup(load_config(None, SMALL + [f"out_dir={tmp_path}", "name=r"]))
    assert s.variant.bank is None and s.variant.expectation_bank() is None


def test_setup_refuses_ignored_keys_before_the_run_directory_exists(tmp_path):
    with pytest.raises(ConfigError, match="method.k=10 is not read by method.variant=simsiam"):
        setup(load_config(None, SMALL + [f"out_dir={tmp_path}", "name=r", "method.k=10"]))
    assert not (tmp_path / "r").exists()
