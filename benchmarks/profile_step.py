"""Profile the training loop body with torch.profiler: where the time goes, and host syncs.

    python benchmarks/profile_step.py --preset cpu [--variant simsiam|kstep|ema] [--steps 10] \\
        [--trace trace.json] [overrides ...]

Runs the loop body of emsiam.alternation.fit (the E-step of each outer iteration, then
its M-steps; the same Runner as benchmarks/variant_cost.py) for a few warm-up steps, then
``--steps`` steps under ``torch.profiler``. Reports the ops with the most self time, and
per step the ops that force the host to wait for the device on a GPU:
``aten::_local_scalar_dense`` (``.item()``, ``float(t)``, ``if t:``), ``aten::nonzero``
and ``aten::masked_select`` (data-dependent shapes), and on CUDA the runtime's
synchronize calls. On a CPU these ops cost nothing, but their count is a property of the
code path, which is the same on both devices. ``--trace`` writes a Chrome trace
(chrome://tracing, Perfetto). Writes JSON (default
benchmarks/results/profile-<variant>-<device>.json).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections import Counter
from datetime import date

from bench_io import device_label, write_json
from torch.profiler import ProfilerActivity, profile
from variant_cost import Runner

from emsiam.config import load_config
from emsiam.setup import setup

#: Ops after which the host must wait for the device (CUDA runtime names included).
SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select",
            "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")

VARIANTS = {
    "simsiam": [],
    "kstep": ["method.variant=kstep", "method.k=10"],
    "ema": ["method.variant=ema"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="simsiam")
    ap.add_argument("--steps", type=int, default=10, help="profiled SGD steps (whole outer iterations)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--top", type=int, default=12, help="ops listed by self time")
    ap.add_argument("--trace", default=None, help="also write a Chrome trace here")
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="emsiam-prof-")
    try:
        cfg = load_config(args.preset, ["progress=false", f"out_dir={tmp}", *VARIANTS[args.variant],
                                        *args.overrides])
        s = setup(cfg)
        runner = Runner(s)
        groups = lambda n: max(1, -(-n // runner.k))  # noqa: E731 - outer iterations covering n steps
        runner.run(groups(args.warmup))
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if s.device.type == "cuda" else [])
        before = runner.step
        with profile(activities=activities) as prof:
            runner.run(groups(args.steps))
        steps = runner.step - before
        if args.trace:
            prof.export_chrome_trace(args.trace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    events = prof.key_averages()
    counts = Counter({e.key: e.count for e in events if e.key in SYNC_OPS})
    time_attr = "self_device_time_total" if s.device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, time_attr) for e in events) or 1.0
    top = sorted(events, key=lambda e: getattr(e, time_attr), reverse=True)[: args.top]
    result = {
        "date": str(date.today()), "device": device_label(s.device), "preset": args.preset,
        "variant": args.variant, "overrides": args.overrides, "steps": steps,
        "sync_ops_per_step": {k: v / steps for k, v in sorted(counts.items())},
        "top_ops": [{"op": e.key, "calls_per_step": e.count / steps,
                     "self_ms_per_step": getattr(e, time_attr) / 1e3 / steps,
                     "share": getattr(e, time_attr) / total} for e in top],
    }
    path = write_json(result, args.out or f"benchmarks/results/profile-{args.variant}-"
                      f"{'gpu' if s.device.type == 'cuda' else 'cpu'}.json")

    print(f"{device_label(s.device)}, preset {args.preset}, {args.variant}: {steps} profiled steps")
    print(f"\n{'op (self time)':40s} {'ms/step':>9s} {'share':>7s} {'calls/step':>11s}")
    for r in result["top_ops"]:
        print(f"{r['op'][:40]:40s} {r['self_ms_per_step']:9.2f} {r['share']:7.1%} {r['calls_per_step']:11.1f}")
    print("\nhost-sync ops per step: " + (", ".join(f"{k} {v:g}" for k, v in result["sync_ops_per_step"].items())
                                        or "none"))
    print(f"wrote {path}" + (f" and {args.trace}" if args.trace else ""))


if __name__ == "__main__":
    main()
