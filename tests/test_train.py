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
