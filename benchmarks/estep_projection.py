"""ImageNet-scale cost of the E-step (kstep k=epoch) and of the EMA bank, from measured per-row costs.

    python benchmarks/estep_projection.py --bank benchmarks/results/bank-imagenet-disk.json \\
        [--backbone resnet50 --resolution 224 --batch 16 --steps 3] [--img-per-s 2000 8000 ...]

Measured in this process, on this machine, on pre-made tensors (ImageNet recipe model:
ResNet-50, 3-layer 2048-d projector, predictor):
- ``t_pair``: seconds per image of one SimSiam SGD step (two views, forward and backward);
- ``t_fwd``: seconds per image of one train-mode, no-grad forward of one view through the
  encoder (the E-step's unit of work, design/alternation.md step 3).
Read from the bank benchmark's JSON (``benchmarks/bank_bench.py``, 1,281,167 x 2048 fp16):
the disk bank's rows/s for reads, for writes including their commit, and for the EMA
step (read + write of the same rows, commits included).

Per epoch over N = 1,281,167 images, with B and the views as in the engine:
- simsiam: ``N·t_pair``;
- kstep, k = epoch, replay: the E-step computes two targets per image (``2N·t_fwd``) and
  writes 2N rows (one commit); the M-step reads them back (2N rows); its SGD steps cost
  what SimSiam's do;
- ema, ``ema_view=other``: N rows read and written in place (commit per epoch), no extra
  forward; ``ema_view=extra`` adds ``N·t_fwd`` for the third view.

The E-step's forward is compute: its ratio to a step, ``2·t_fwd/t_pair``, is measured here
and carried to other machines as is (an assumption: forward/backward cost ratios are
similar across devices). The bank's I/O is not compute: its seconds per epoch are fixed
by the disk, so its share of an epoch grows with the training speed. ``--img-per-s``
gives training speeds (SimSiam images/s) at which to state that share; they are inputs,
not measurements. Writes JSON (default benchmarks/results/estep-projection-<device>.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from bench_io import device_label, sync, write_json

from emsiam.alternation import simsiam_step
from emsiam.config import load_config
from emsiam.setup import setup
from emsiam.targets import autocast

IMAGENET_N = 1_281_167


def bank_rates(path: str | Path) -> dict[str, float]:
    """rows/s of the disk bank from a bank_bench JSON: read, write (+commit), read+write (+commit)."""
    res = json.loads(Path(path).read_text())
    phases = {p["phase"]: p for p in res["phases"]}
    with_flush = lambda p: p["rows_per_s_with_flush"] or p["rows_per_s_mean"]  # noqa: E731
    return {
        "read": phases["read"]["rows_per_s_mean"],
        "write": with_flush(phases["write"]),
        "read_write": with_flush(phases["read+write"]),
        "shape": [res["args"]["rows"], res["args"]["dim"], res["args"]["dtype"]],
        "backend": res["args"]["backend"],
    }


def project(t_pair: float, t_fwd: float, rates: dict[str, float], n: int = IMAGENET_N) -> dict[str, dict]:
    """Seconds per epoch of each part, and each variant's epoch as a multiple of SimSiam's."""
    simsiam = n * t_pair
    kstep_fwd, kstep_io = 2 * n * t_fwd, 2 * n / rates["write"] + 2 * n / rates["read"]
    ema_io, extra_fwd = n / rates["read_write"], n * t_fwd
    parts = {
        "simsiam": {"compute_s": simsiam, "estep_fwd_s": 0.0, "bank_io_s": 0.0},
        "kstep_epoch": {"compute_s": simsiam, "estep_fwd_s": kstep_fwd, "bank_io_s": kstep_io},
        "ema_other": {"compute_s": simsiam, "estep_fwd_s": 0.0, "bank_io_s": ema_io},
        "ema_extra": {"compute_s": simsiam, "estep_fwd_s": extra_fwd, "bank_io_s": ema_io},
    }
    for p in parts.values():
        p["epoch_s"] = p["compute_s"] + p["estep_fwd_s"] + p["bank_io_s"]
        p["vs_simsiam"] = p["epoch_s"] / simsiam
    return parts


def measure(args: argparse.Namespace) -> tuple[float, float, torch.device]:
    tmp = tempfile.mkdtemp(prefix="emsiam-proj-")
    try:
        cfg = load_config(args.preset, [
            "progress=false", f"out_dir={tmp}", "data.source=synthetic", f"data.n_train={args.batch}",
            "data.n_test=8", f"optim.batch_size={args.batch}", f"model.backbone={args.backbone}",
            "model.proj_layers=3", "model.proj_hidden=2048", "model.dim=2048", "data.recipe=imagenet",
            f"data.resolution={args.resolution}", f"data.image_size={args.resolution}", *args.overrides])
        s = setup(cfg)
        device, B = s.device, args.batch
        x1 = torch.randn(B, 3, args.resolution, args.resolution, device=device).contiguous(memory_format=s.memory_format)
        x2 = torch.randn_like(x1)
        amp = lambda: autocast(cfg, device)  # noqa: E731

        def step() -> None:
            simsiam_step(s.model, s.opt, x1, x2, amp())

        @torch.no_grad()
        def fwd() -> None:
            with amp():
                s.model.encoder(x1)

        pair, one = [], []
        for fn in (step, fwd):  # warm-up (allocator, cudnn autotune)
            fn()
        for _ in range(args.steps):  # interleaved, so machine noise hits both
            for fn, out in ((step, pair), (fwd, one)):
                sync(device)
                t = time.perf_counter()
                fn()
                sync(device)
                out.append((time.perf_counter() - t) / B)
        return statistics.median(pair), statistics.median(one), device
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", default="benchmarks/results/bank-imagenet-disk.json",
                    help="bank_bench.py JSON with the disk bank's per-row costs")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16, help="images per timed step")
    ap.add_argument("--steps", type=int, default=3, help="timed (step, forward) pairs")
    ap.add_argument("--img-per-s", type=float, nargs="*", default=[2000.0, 8000.0],
                    help="SimSiam training speeds (images/s) at which to restate the projection (inputs)")
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. amp=bf16 device=cuda")
    args = ap.parse_args()
    if not Path(args.bank).is_file():
        raise SystemExit(f"--bank {args.bank}: no such file; run benchmarks/bank_bench.py first (see its --help)")
    rates = bank_rates(args.bank)  # before any compute: a bad file fails fast

    t_pair, t_fwd, device = measure(args)
    here = project(t_pair, t_fwd, rates)
    at_speed = {f"{v:g}": project(1.0 / v, t_fwd / t_pair / v, rates) for v in args.img_per_s}
    result = {
        "date": str(date.today()), "device": device_label(device), "backbone": args.backbone,
        "resolution": args.resolution, "batch": args.batch, "bank": args.bank, "bank_rates": rates,
        "t_pair_s": t_pair, "t_fwd_s": t_fwd, "estep_fwd_over_step": 2 * t_fwd / t_pair,
        "measured_here": here, "at_img_per_s": at_speed,
    }
    dev = "gpu" if device.type == "cuda" else "cpu"
    path = write_json(result, args.out or f"benchmarks/results/estep-projection-{dev}.json")

    print(f"{device_label(device)}, {args.backbone} at {args.resolution}px, B={args.batch}: "
          f"SimSiam step {t_pair * 1e3:.1f} ms/image, E-step forward {t_fwd * 1e3:.1f} ms/image/view "
          f"(2 views = {2 * t_fwd / t_pair:.2f} of a step)")
    print(f"disk bank ({rates['shape'][0]:,} x {rates['shape'][1]} {rates['shape'][2]}): read {rates['read']:,.0f}, "
          f"write+commit {rates['write']:,.0f}, read+write+commit {rates['read_write']:,.0f} rows/s")
    rows = [("measured here", here)] + [(f"at {k} img/s (input)", v) for k, v in at_speed.items()]
    print(f"\n{'ImageNet epoch':24s} {'simsiam':>10s} {'k=epoch':>16s} {'ema (other)':>16s} {'ema (extra)':>16s}")
    for label, p in rows:
        cell = lambda name: f"{p[name]['epoch_s']:9.0f} s {p[name]['vs_simsiam']:4.2f}x"  # noqa: E731
        print(f"{label:24s} {p['simsiam']['epoch_s']:8.0f} s {cell('kstep_epoch')} {cell('ema_other')} "
              f"{cell('ema_extra')}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
