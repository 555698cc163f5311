"""Training throughput: end to end vs the model's own compute, side by side.

    python benchmarks/throughput.py --preset cpu [--steps 20] [--rounds 3] [overrides ...]

Measures, in one process and interleaved in rounds (so machine noise hits both):
- ``e2e``: the full training step of the loop in emsiam.train: gather a batch of
  uint8 images from the device-resident set, augment two views, forward,
  backward and SGD step;
- ``model``: the same SimSiam step on pre-made (already augmented) tensors.
Reports image pairs/s of each, and their ratio (goal >= 0.85: the data path
costs at most 15% of the step). Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from emsiam.augment import augment, view_seeds
from emsiam.config import load_config
from emsiam.train import augment_spec, autocast, build_optimizer, load_data, resolve_device, simsiam_step
from emsiam.models import build_model
from emsiam.data import Batches


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved (e2e, model) block pairs")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/throughput-<preset>-<device>.json)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    cfg = load_config(args.preset, ["progress=false", *args.overrides])
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    train, _ = load_data(cfg.data, device)
    spec = augment_spec(cfg.data)
    model = build_model(cfg.model).to(device)
    opt = build_optimizer(model, cfg.optim)
    fmt = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    batches = Batches(train, cfg.optim.batch_size, shuffle=True, seed=cfg.seed)
    B = cfg.optim.batch_size
    amp = lambda: autocast(cfg, device)  # noqa: E731

    def views(idx, x, step):
        x1 = augment(x, view_seeds(cfg.seed, step, idx, 0), spec).contiguous(memory_format=fmt)
        x2 = augment(x, view_seeds(cfg.seed, step, idx, 1), spec).contiguous(memory_format=fmt)
        return x1, x2

    stream = (b for e in range(10**6) for b in batches.epoch(e))
    idx, x, _ = next(stream)
    premade = views(idx, x, 0)

    def e2e_block(n: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        for step in range(n):
            idx, x, _ = next(stream)
            x1, x2 = views(idx, x, step)
            simsiam_step(model, opt, x1, x2, amp())
        _sync(device)
        return n * B / (time.perf_counter() - t0)

    def model_block(n: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            simsiam_step(model, opt, *premade, amp())
        _sync(device)
        return n * B / (time.perf_counter() - t0)

    def augment_block(n: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        for step in range(n):
            idx, x, _ = next(stream)
            views(idx, x, step)
        _sync(device)
        return n * B / (time.perf_counter() - t0)

    e2e_block(args.warmup)
    model_block(args.warmup)
    e2e, mdl, aug = [], [], []
    for _ in range(args.rounds):
        e2e.append(e2e_block(args.steps))
        mdl.append(model_block(args.steps))
        aug.append(augment_block(args.steps))
    result = {
        "preset": args.preset,
        "overrides": args.overrides,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "date": date.today().isoformat(),
        "batch_size": B,
        "backbone": cfg.model.backbone,
        "channels_last": cfg.model.channels_last,
        "amp": cfg.amp,
        "e2e_pairs_per_s": statistics.median(e2e),
        "model_pairs_per_s": statistics.median(mdl),
        "augment_only_pairs_per_s": statistics.median(aug),
        "ratio_e2e_over_model": statistics.median(e2e) / statistics.median(mdl),
        "rounds": {"e2e": e2e, "model": mdl, "augment_only": aug},
        "command": "python benchmarks/throughput.py --preset " + args.preset + " " + " ".join(args.overrides),
    }
    out = Path(args.out or f"benchmarks/results/throughput-{args.preset}-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"device: {result['device']}  batch {B}  backbone {cfg.model.backbone}")
    print(f"end to end      {result['e2e_pairs_per_s']:8.0f} pairs/s")
    print(f"model step only {result['model_pairs_per_s']:8.0f} pairs/s")
    print(f"augment only    {result['augment_only_pairs_per_s']:8.0f} pairs/s")
    print(f"ratio e2e/model {result['ratio_e2e_over_model']:8.3f}   (goal >= 0.85)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
