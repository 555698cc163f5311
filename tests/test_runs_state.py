"""Run.save_state / Run.restore_state: one call over the stateful objects, today's file format."""

import random

import pytest
import torch

from emsiam.config import load_config
from emsiam.runs import CheckpointError, Run, load_checkpoint, read_metrics


@pytest.fixture
def run(tiny_overrides):
    r = Run(load_config(None, tiny_overrides + ["name=state"]))
    r.initialise()
    yield r
    r.close()


def _model_and_opt():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _step(model, opt)  # momentum buffers exist: the optimizer has state to save
    return model, opt


def _step(model, opt):
    opt.zero_grad()
    model(torch.randn(5, 4)).pow(2).sum().backward()
    opt.step()


def test_save_state_writes_todays_format(run):
    model, opt = _model_and_opt()
    run.save_state(epoch=3, step=24, model=model, optimizer=opt)
    ckpt = load_checkpoint(run.ckpt_path)
    assert list(ckpt) == ["model", "optimizer", "epoch", "step", "rng", "config"]
    assert ckpt["epoch"] == 3 and ckpt["step"] == 24
    assert all(torch.equal(ckpt["model"][k], v) for k, v in model.state_dict().items())
    assert ckpt["optimizer"]["state"].keys() == opt.state_dict()["state"].keys()


def test_restore_state_round_trip(run):
    model, opt = _model_and_opt()
    for step in (8, 16):
        run.log({"epoch": step // 8, "step": step})
    run.save_state(epoch=2, step=16, model=model, optimizer=opt)
    want_model = {k: v.clone() for k, v in model.state_dict().items()}
    want_buf = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    want_draws = (torch.rand(3), random.random())
    run.log({"epoch": 3, "step": 24})  # a record the checkpoint never saw

    _step(model, opt)  # move everything away from the checkpoint
    torch.rand(7), random.random()
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in want_model.items())

    epoch, step = run.restore_state("cpu", model=model, optimizer=opt)
    assert (epoch, step) == (2, 16)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in want_model.items())
    assert all(torch.equal(opt.state[p]["momentum_buffer"], b) for p, b in zip(model.parameters(), want_buf))
    assert torch.equal(torch.rand(3), want_draws[0]) and random.random() == want_draws[1]
    assert [r["step"] for r in read_metrics(run.dir)] == [8, 16]


def test_restore_state_names_a_missing_key_and_the_file(run):
    model, opt = _model_and_opt()
    run.save_state(epoch=1, step=8, model=model)
    with pytest.raises(CheckpointError, match=r"last\.pt has no 'optimizer' entry"):
        run.restore_state("cpu", model=model, optimizer=opt)
