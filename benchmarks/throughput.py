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
import shutil
import statistics
import tempfile
import time
from datetime import date

import torch
from bench_io import batch_stream, device_label, rate, write_json

from emsiam.alternation import m_step, simsiam_step
from emsiam.config import load_config
from emsiam.setup import setup
from emsiam.targets import autocast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved (e2e, model) block pairs")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/throughput-<preset>-<device>.json)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="emsiam-bench-")
    cfg = load_config(args.preset, ["progress=false", f"out_dir={tmp}", *args.overrides])
    s = setup(cfg)  # the training run's own data, model, optimizer and augmentation
    device, B = s.device, cfg.optim.batch_size
    amp = lambda: autocast(cfg, device)  # noqa: E731
    stream = batch_stream(s, B)
    idx, x = next(stream)
    premade = s.variant.views(x, idx, 0)
    step = 0

    def e2e_step() -> None:
        """What fit() does per step: gather the batch, augment two views, SGD step."""
        nonlocal step
        idx, x = next(stream)
        m_step(s, idx, x, step % len(s.lrs))
        step += 1

    def augment_step() -> None:
        nonlocal step
        idx, x = next(stream)
        s.variant.views(x, idx, step)
        step += 1

    e2e_block = lambda n: rate(e2e_step, n, B, device)  # noqa: E731
    model_block = lambda n: rate(lambda: simsiam_step(s.model, s.opt, *premade, amp()), n, B, device)  # noqa: E731
    augment_block = lambda n: rate(augment_step, n, B, device)  # noqa: E731

    t0 = time.perf_counter()
    e2e_block(args.warmup)  # with compile=true, the first steps pay the compilation
    warmup_s = time.perf_counter() - t0
    model_block(args.warmup)
    e2e, mdl, aug = [], [], []
    for _ in range(args.rounds):
        e2e.append(e2e_block(args.steps))
        mdl.append(model_block(args.steps))
        aug.append(augment_block(args.steps))
    result = {
        "preset": args.preset,
        "overrides": args.overrides,
        "device": device_label(device),
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
        "warmup_s": warmup_s,  # the first --warmup end-to-end steps (compilation included)
        "warmup_steps": args.warmup,
        "rounds": {"e2e": e2e, "model": mdl, "augment_only": aug},
        "command": "python benchmarks/throughput.py --preset " + args.preset + " " + " ".join(args.overrides),
    }
    shutil.rmtree(tmp, ignore_errors=True)
    out = write_json(result, args.out or f"benchmarks/results/throughput-{args.preset}-{device.type}.json")
    print(f"device: {result['device']}  batch {B}  backbone {cfg.model.backbone}")
    print(f"end to end      {result['e2e_pairs_per_s']:8.0f} pairs/s")
    print(f"model step only {result['model_pairs_per_s']:8.0f} pairs/s")
    print(f"augment only    {result['augment_only_pairs_per_s']:8.0f} pairs/s")
    print(f"ratio e2e/model {result['ratio_e2e_over_model']:8.3f}   (goal >= 0.85)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
