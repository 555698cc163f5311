"""Cost of each variant per inner SGD step, relative to a `simsiam` step, in one run.

    python benchmarks/variant_cost.py --preset cpu [--steps 20] [--rounds 3] [overrides ...]

Every variant runs the loop body of emsiam.alternation.fit (E-step of each
outer iteration, then its M-steps), so a k-step step is charged its share of
the E-step. Variants are interleaved in rounds so that machine noise hits all
of them alike; the median seconds per step of each are reported with the ratio
to simsiam. Targets (issue 3): kstep <= 1.40x, ema and the disk bank <= 1.10x.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import date

from bench_io import device_label, sync, write_json

from emsiam.alternation import m_step, outer_iterations
from emsiam.config import load_config
from emsiam.setup import setup
from emsiam.variants import steps_per_outer

VARIANTS = {
    "simsiam": [],
    "kstep k=1": ["method.variant=kstep", "method.k=1"],
    "kstep k=10": ["method.variant=kstep", "method.k=10"],
    "kstep k=10 disk fp16": ["method.variant=kstep", "method.k=10", "method.bank=disk", "method.bank_dtype=fp16"],
    "ema": ["method.variant=ema"],
    "ema disk fp16": ["method.variant=ema", "method.bank=disk", "method.bank_dtype=fp16"],
    "momentum": ["method.variant=momentum"],
}


class Runner:
    """Steps one variant through whole outer iterations, resuming where it stopped."""

    def __init__(self, s):
        self.s, self.step = s, 0
        self.k = steps_per_outer(s.cfg, len(s.batches))
        self.groups = iter(())

    def next_group(self):
        for group in self.groups:
            return group
        epoch = self.step // len(self.s.batches)
        self.groups = iter(outer_iterations(self.s.batches.indices(epoch), self.s.cfg.optim.batch_size, self.k))
        return next(self.groups)

    def run(self, n_groups: int) -> float:
        """Seconds per SGD step over n_groups outer iterations."""
        s, steps = self.s, 0
        sync(s.device)
        t0 = time.perf_counter()
        for _ in range(n_groups):
            group = self.next_group()
            s.variant.e_step(group, s.train.images, self.step)
            for idx in group:
                m_step(s, idx, s.train.images.index_select(0, idx), self.step % len(s.lrs))
                s.variant.update_targets(idx, self.step % len(s.lrs))
                self.step += 1
                steps += 1
        s.variant.end_epoch()  # commits the ema bank: charged every block, ~10x more often than in training
        sync(s.device)
        return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="approximate SGD steps per timed block")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="subset of variant labels")
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="emsiam-cost-")
    labels = [v for v in VARIANTS if args.only is None or v in args.only]
    runners = {}
    for i, label in enumerate(labels):
        cfg = load_config(args.preset, ["progress=false", f"out_dir={tmp}", f"name=r{i}", *args.overrides, *VARIANTS[label]])
        s = setup(cfg)
        s.variant.start(s.train.images, cfg.eval.batch_size)
        runners[label] = Runner(s)
    device = next(iter(runners.values())).s.device
    for r in runners.values():  # warm-up: one outer iteration each
        r.run(1)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(args.rounds):
        for label, r in runners.items():
            times[label].append(r.run(max(1, args.steps // r.k)))
    ref = statistics.median(times["simsiam"]) if "simsiam" in times else None
    rows = {
        label: {"s_per_step": statistics.median(t), "ratio_to_simsiam": statistics.median(t) / ref if ref else None,
                "k": runners[label].k, "rounds": t}
        for label, t in times.items()
    }
    cfg0 = next(iter(runners.values())).s.cfg
    result = {
        "preset": args.preset, "overrides": args.overrides, "date": date.today().isoformat(),
        "device": device_label(device),
        "batch_size": cfg0.optim.batch_size, "backbone": cfg0.model.backbone, "variants": rows,
        "command": "python benchmarks/variant_cost.py --preset " + args.preset + " " + " ".join(args.overrides),
    }
    shutil.rmtree(tmp, ignore_errors=True)
    out = write_json(result, args.out or f"benchmarks/results/variant-cost-{args.preset}-{device.type}.json")
    print(f"{'variant':24s} {'k':>5s} {'ms/step':>9s} {'x simsiam':>10s}")
    for label, r in rows.items():
        ratio = f"{r['ratio_to_simsiam']:.3f}" if r["ratio_to_simsiam"] else "-"
        print(f"{label:24s} {r['k']:5d} {1000 * r['s_per_step']:9.1f} {ratio:>10s}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
