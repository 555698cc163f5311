"""Cost of a DirectPred step (freq = 1, d = 512) against a SimSiam step, side by side in one process.

    OMP_NUM_THREADS=1 python benchmarks/directpred_cost.py --preset cpu [--steps 1] [--rounds 16]

Each configuration is a full training step of emsiam.alternation.m_step (views, forward,
backward, SGD, then the step hook: F̂ update and, for DirectPred, eigh + W_p reset), on the
``cpu`` preset model (convnet, d = 512, B = 256). Configurations run in interleaved rounds, the
order reversed every other round (ABBA, so that drifting load cancels), so that load from other
processes hits all of them alike; reported are the median seconds per step and the median over
rounds of the per-round ratio to SimSiam. On a shared CPU these move by ±10% between runs; the
pieces timed alone give the less noisy prediction 1 + (closed form)/(SimSiam step). Also timed alone: the closed forms
at d = 512 (fp32 eigh; DirectCopy's power iteration), the F̂ bookkeeping every predictor kind
now pays (record z zᵀ twice, fold into the EMA), and one forward+backward of 2B rows through the
d×d linear predictor against the learned d→d/4→d MLP (the linear one has twice the weights). Issue 12 target: DirectPred freq = 1 <= 1.05x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import date, datetime

import torch
from bench_io import device_label, sync, write_json

from emsiam.alternation import m_step
from emsiam.config import load_config
from emsiam.predictors import directcopy_weight, directpred_weight
from emsiam.setup import setup

CONFIGS = {
    "simsiam (learned predictor)": [],
    "simsiam, F̂ tracking off": [],  # the step before this issue: no z zᵀ, no EMA
    "directpred freq=1": ["method.predictor=directpred"],
    "directpred freq=10": ["method.predictor=directpred", "method.directpred_freq=10"],
    "directcopy freq=1": ["method.predictor=directcopy"],
}
REF = "simsiam (learned predictor)"


class Stepper:
    """Training steps of one Setup, batch after batch, as fit() takes them (k = 1)."""

    def __init__(self, s):
        self.s, self.step = s, 0

    def run(self, n: int) -> float:
        s = self.s
        sync(s.device)
        t0 = time.perf_counter()
        for _ in range(n):
            epoch, j = divmod(self.step, len(s.batches))
            idx = s.batches.indices(epoch)[j * s.cfg.optim.batch_size:(j + 1) * s.cfg.optim.batch_size]
            m_step(s, idx, s.train.images.index_select(0, idx), self.step % len(s.lrs))
            self.step += 1
        sync(s.device)
        return (time.perf_counter() - t0) / n


def _median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=1, help="SGD steps per configuration per round")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="emsiam-dpcost-")
    steppers = {}
    for i, (label, over) in enumerate(CONFIGS.items()):
        cfg = load_config(args.preset, ["progress=false", f"out_dir={tmp}", f"name=r{i}", *args.overrides, *over])
        s = setup(cfg)
        if "tracking off" in label:
            s.model.correlation.record = lambda z: None  # update() then finds nothing to fold
        steppers[label] = Stepper(s)
    s0 = steppers[REF].s
    d, device = s0.cfg.model.dim, s0.device
    for st in steppers.values():  # warm-up (F̂ initialised, allocator warm)
        st.run(1)
    times: dict[str, list[float]] = {label: [] for label in steppers}
    order = list(steppers)
    for r in range(args.rounds):
        for label in (order if r % 2 == 0 else order[::-1]):
            times[label].append(steppers[label].run(args.steps))
    ref = statistics.median(times[REF])
    rows = {}
    for label, t in times.items():
        per_round = [a / b for a, b in zip(t, times[REF])]
        rows[label] = {"s_per_step": statistics.median(t), "ratio_of_medians": statistics.median(t) / ref,
                       "median_round_ratio": statistics.median(per_round), "rounds_s": t}

    # the pieces alone, at the preset's d
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2 * s0.cfg.optim.batch_size, d, generator=g)
    corr = f.T @ f / f.shape[0]
    v = torch.full((d,), d ** -0.5)
    model = steppers[REF].s.model

    def bookkeeping():
        model.correlation.record(f[: f.shape[0] // 2])
        model.correlation.record(f[f.shape[0] // 2:])
        model.correlation.update()

    def fwd_bwd(h):
        def go():
            z = f.clone().requires_grad_(True)
            h(z).sum().backward()
        return go

    linear = steppers["directpred freq=1"].s.model.predictor
    pieces = {
        "predictor_fwd_bwd_learned_s": _median_time(fwd_bwd(model.predictor), 15),
        "predictor_fwd_bwd_linear_dxd_s": _median_time(fwd_bwd(linear), 15),
        "eigh_closed_form_s": _median_time(lambda: directpred_weight(corr, 0.1), 15),
        "directcopy_closed_form_s": _median_time(lambda: directcopy_weight(corr, 0.1, v), 15),
        "F_hat_bookkeeping_s": _median_time(bookkeeping, 15),
    }
    load_after = os.getloadavg()
    arch = pieces["predictor_fwd_bwd_linear_dxd_s"] - pieces["predictor_fwd_bwd_learned_s"]  # one forward+backward of 2B rows
    pieces["predicted_ratio_directpred_freq1"] = 1 + (arch + pieces["eigh_closed_form_s"]) / ref
    pieces["predicted_ratio_directpred_freq10"] = 1 + (arch + pieces["eigh_closed_form_s"] / 10) / ref
    pieces["predicted_ratio_directcopy_freq1"] = 1 + (arch + pieces["directcopy_closed_form_s"]) / ref
    pieces["F_hat_share_of_simsiam_step"] = pieces["F_hat_bookkeeping_s"] / ref
    result = {
        "preset": args.preset, "overrides": args.overrides, "date": date.today().isoformat(),
        "time": datetime.now().isoformat(timespec="seconds"), "device": device_label(device),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "batch_size": s0.cfg.optim.batch_size, "dim": d, "backbone": s0.cfg.model.backbone,
        "steps_per_round": args.steps, "rounds": args.rounds, "configs": rows, "pieces": pieces,
        "command": "OMP_NUM_THREADS=1 python benchmarks/directpred_cost.py --preset " + args.preset + " "
                   + " ".join(args.overrides),
    }
    out = write_json(result, args.out or f"benchmarks/results/directpred-cost-{args.preset}-{device.type}.json")
    print(f"load average {load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads; B = {s0.cfg.optim.batch_size}, d = {d}")
    print(f"{'configuration':30s} {'ms/step':>9s} {'x ref (medians)':>16s} {'median round ratio':>19s}")
    for label, r in rows.items():
        print(f"{label:30s} {1000 * r['s_per_step']:9.1f} {r['ratio_of_medians']:16.3f} {r['median_round_ratio']:19.3f}")
    for k, val in pieces.items():
        print(f"{k:34s} {1000 * val:9.2f} ms" if k.endswith("_s") else f"{k:34s} {val:9.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
