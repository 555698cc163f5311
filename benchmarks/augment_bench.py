"""Throughput of the SimSiam augmentation data path (views/s), CPU by default.

Compares, on uint8 (B,3,S,S) input:
  ours            emsiam.augment.augment, cifar recipe (fixed jitter order, exact HSV hue)
  ours_random     same, jitter_order="random" (per-sample op order, as torchvision)
  ours_yiq        same as ours but a YIQ-rotation hue (approximate; for the choice)
  kornia          kornia.augmentation pipeline, same recipe, batched
  tv_per_image    torchvision.transforms.v2 on each uint8 image in a Python
                  loop + stack (what a DataLoader worker does)
plus a breakdown of ours into stages. Variants are interleaved within every
repeat and the median per-repeat time is reported, so that background load
hits all variants alike; ratios are more trustworthy than absolute numbers.

  python benchmarks/augment_bench.py --batch 256 --repeats 10 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import emsiam.augment as A  # noqa: E402
from emsiam.augment import color, crop, pipeline, tensors  # noqa: E402


def build(batch: int, size: int, device: str):
    spec = A.cifar_recipe(size)
    g = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g).to(device)
    seeds = A.view_seeds(0, 0, torch.arange(batch, device=device), 0)
    variants = {}

    variants["ours"] = lambda: A.augment(x8, seeds, spec)

    spec_r = replace(spec, jitter_order="random")
    variants["ours_random"] = lambda: A.augment(x8, seeds, spec_r)
    variants["ours_yiq"] = lambda: A.augment(x8, seeds, spec, _hue_method="yiq")

    # stage breakdown of "ours"
    p = A.sample_params(seeds, spec)
    xf = pipeline._to_float(x8)
    xc = crop._resized_crop_flip(xf, p, size)
    variants["ours:params"] = lambda: A.sample_params(seeds, spec)
    variants["ours:to_float+crop_flip"] = lambda: crop._resized_crop_flip(pipeline._to_float(x8), p, size)
    # (the jitter stages work in place, so they time a clone of the input too)
    variants["ours:jitter_fixed"] = lambda: color._color_jitter_(xc.clone(), p, order="fixed")
    variants["ours:jitter_random"] = lambda: color._color_jitter_(xc.clone(), p, order="random")
    hue = tensors._bcast(p["hue"], xc.dtype)
    variants["ours:hue_hsv"] = lambda: color._hue(xc, hue)
    variants["ours:hue_yiq"] = lambda: color._hue_yiq(xc, hue)

    try:
        import kornia.augmentation as K

        kaug = K.AugmentationSequential(
            K.RandomResizedCrop((size, size), scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)),
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.Normalize(mean=torch.tensor(spec.mean), std=torch.tensor(spec.std)),
        ).to(device)
        variants["kornia"] = lambda: kaug(x8.float().div_(255))
    except ImportError:  # pragma: no cover
        pass

    if device == "cpu":
        import torchvision.transforms.v2 as T

        tv = T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(spec.mean, spec.std),
            ]
        )
        imgs = list(x8.unbind(0))
        variants["tv_per_image"] = lambda: torch.stack([tv(im) for im in imgs])
    return variants


def hue_accuracy(n: int = 64):
    """Max/mean |ours - torchvision adjust_hue| for the exact and YIQ hue."""
    import torchvision.transforms.v2.functional as TF

    g = torch.Generator().manual_seed(1)
    base = torch.rand(n, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(base, size=(32, 32), mode="bilinear", align_corners=False)
    shift = torch.linspace(-0.1, 0.1, n)
    ref = torch.stack([TF.adjust_hue(x[i], shift[i].item()) for i in range(n)])
    out = {}
    for name, fn in color._HUE_IMPL.items():
        d = (fn(x, shift.view(-1, 1, 1, 1)) - ref).abs()
        out[name] = dict(max_abs_err=d.max().item(), mean_abs_err=d.mean().item())
    return out


def run(variants, repeats: int, device: str):
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for f in variants.values():  # warm-up
        f()
        f()
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, f in variants.items():
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[k].append(time.perf_counter() - t0)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave default)")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    variants = build(args.batch, args.size, args.device)
    times = run(variants, args.repeats, args.device)

    rows = []
    base = statistics.median(times["ours"])
    print(f"B={args.batch} S={args.size} device={args.device} threads={torch.get_num_threads()} "
          f"repeats={args.repeats} torch={torch.__version__}")
    print(f"{'variant':26s} {'median ms':>10s} {'min ms':>9s} {'views/s':>10s} {'x ours time':>12s}")
    for k, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            dict(
                variant=k,
                median_ms=med * 1e3,
                min_ms=min(ts) * 1e3,
                views_per_s=args.batch / med,
                time_rel_ours=med / base,
                times_ms=[t * 1e3 for t in ts],
            )
        )
        print(f"{k:26s} {med*1e3:10.3f} {min(ts)*1e3:9.3f} {args.batch/med:10.0f} {med/base:12.2f}")

    acc = hue_accuracy()
    print("hue vs torchvision adjust_hue (|h| <= 0.1): "
          + ", ".join(f"{k}: max {v['max_abs_err']:.2g} mean {v['mean_abs_err']:.2g}" for k, v in acc.items()))

    if args.json:
        out = dict(
            batch=args.batch,
            size=args.size,
            device=args.device,
            threads=torch.get_num_threads(),
            repeats=args.repeats,
            torch=torch.__version__,
            python=platform.python_version(),
            machine=platform.machine(),
            choice=dict(hue="hsv (exact)", jitter_order="fixed (default)"),
            results=rows,
            hue_accuracy_vs_torchvision=acc,
        )
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
