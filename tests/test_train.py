import math

from emsiam.config import load_config
from emsiam.train import train


def test_bf16_autocast_channels_last_path_trains_on_cpu(tiny_overrides):
    """The GPU fast-path switches (bf16 autocast, channels_last) run on CPU too."""
    recs = train(load_config("demo", tiny_overrides + ["amp=bf16", "model.channels_last=true",
                                                       "optim.epochs=1", "eval.linear=false", "name=bf16"]))
    losses = [r["train/loss"] for r in recs if "train/loss" in r]
    assert losses and all(math.isfinite(x) and -1.0 <= x <= 1.0 for x in losses)
    assert math.isfinite(recs[-1]["eval/knn_top1"])


def test_compile_switch_matches_eager_and_keeps_checkpoint_keys(tiny_overrides, tmp_path, monkeypatch):
    """``compile=true`` (torch.compile of the training forward, in place) trains the same
    model as eager mode: same losses to float tolerance, same state_dict keys, so
    checkpoints load either way. CPU inductor needs a C++ compiler (present in CI)."""
    import torch
    import torch._inductor.config

    # the generated kernels are compiled one after the other in this process: a pool of compile
    # workers (each a new Python importing torch) costs more than it saves on a few cores
    monkeypatch.setattr(torch._inductor.config, "compile_threads", 1)

    base = tiny_overrides + ["optim.epochs=1", "eval.linear=false", "method.variant=kstep", "method.k=2"]
    from torch._dynamo.utils import counters

    counters.clear()
    eager = train(load_config("demo", base + ["name=eager"]))
    assert not counters["stats"]["unique_graphs"]
    comp = train(load_config("demo", base + ["name=compiled", "compile=true"]))
    # one graph: only the training forward model(x1, x2) is compiled; the E-step's no-grad encoder
    # calls and evaluation stay eager, so nothing recompiles for no-grad or eval mode
    assert counters["stats"]["unique_graphs"] == 1
    loss = lambda recs: [r["train/loss"] for r in recs if "train/loss" in r]  # noqa: E731
    assert loss(comp) and all(abs(a - b) < 1e-3 for a, b in zip(loss(eager), loss(comp), strict=True))
    ck = lambda name: torch.load(tmp_path / "runs" / name / "checkpoints" / "last.pt", weights_only=True)  # noqa: E731
    assert ck("eager")["model"].keys() == ck("compiled")["model"].keys()
