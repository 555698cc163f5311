"""emsiam vs lightly: the same SimSiam training step, two data paths, side by side.

    python benchmarks/vs_lightly.py [--preset cpu] [--data ../shared/data/cifar10-jpeg.tar.gz]
        [--steps 30] [--rounds 3] [--batch 256] [--workers 2] [--n-train N] [--epochs-acc N] [overrides ...]

Both sides train the *same network* (emsiam's ``build_model`` for the preset:
for ``cpu`` the convnet 32-64-128-256, 2-layer projector 512-512, predictor
512-128-512), from the same initial weights, with the same optimizer
(emsiam's ``build_optimizer``: SGD, lr = lr_per_256·B/256, momentum, weight
decay, fixed predictor lr) and the same per-step lr schedule, on the same
images at the same global batch. Only the data path and the loss module differ:

- ``emsiam``: the training set as one uint8 tensor (``emsiam.data.load_split``
  of the ImageFolder archive), batches gathered by index and augmented as a
  batch on the training device (the ``m_step`` of ``emsiam.alternation``);
- ``lightly``: the same decoded uint8 images served as PIL images by a torch
  ``Dataset``, lightly's ``SimSiamTransform`` (input_size=32, CIFAR settings:
  no blur as in lightly's CIFAR-10 benchmark, CIFAR-10 mean/std so that both
  models are evaluated alike), a ``torch.utils.data.DataLoader`` with worker
  processes, and lightly's ``NegativeCosineSimilarity`` (symmetrised, z
  detached), as in lightly's SimSiam example. lightly's SimSiam heads are *not*
  used: its projection head has 3 layers while the preset has 2, and the
  comparison is of the data path, so the model compute must be identical.

Throughput (image pairs/s) is measured in interleaved rounds (emsiam,
lightly, emsiam, lightly, ...) after a warm-up; each timed block is preceded
by a few untimed lead-in steps so that the batches lightly's workers
prefetched while the other side was being timed are not counted as free.
``--epochs-acc N`` also trains both from the same initial weights for N
epochs on the same subset and reports kNN top-1 (emsiam.evaluate, backbone
features, the same test set) so that speed is not bought with accuracy.
Writes JSON to benchmarks/results/vs-lightly-<device>.json.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from bench_io import batch_stream, rate, sync, write_json

DEFAULT_DATA = "../shared/data/cifar10-jpeg.tar.gz"


def _machine(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class PILImages(torch.utils.data.Dataset):
    """uint8 (N, 3, H, W) images served as PIL images through ``transform``; returns (views, label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # NHWC uint8, shared with workers
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 ImageFolder archive (default %(default)s)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per block")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved (emsiam, lightly) block pairs")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per side before the first round")
    ap.add_argument("--lead-in", type=int, default=None,
                    help="untimed steps before every timed block (default: workers*prefetch_factor, at least 1)")
    ap.add_argument("--batch", type=int, default=None, help="global batch (default: the preset's)")
    ap.add_argument("--workers", type=int, default=2, help="lightly DataLoader workers")
    ap.add_argument("--prefetch-factor", type=int, default=2, help="lightly DataLoader prefetch_factor")
    ap.add_argument("--n-train", type=int, default=None, help="class-stratified train subset (default: all 50k)")
    ap.add_argument("--n-test", type=int, default=None, help="test subset for --epochs-acc (default: all 10k)")
    ap.add_argument("--epochs-acc", type=int, default=0, help="also train both N epochs and compare kNN top-1")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/vs-lightly-<device>.json)")
    ap.add_argument("overrides", nargs="*", help="emsiam config overrides (key=value), e.g. device=cpu amp=bf16")
    args = ap.parse_args()

    try:
        import lightly
        from lightly.loss import NegativeCosineSimilarity
        from lightly.transforms import SimSiamTransform
    except ImportError as e:
        sys.exit(f"vs_lightly: lightly is not installed ({e}); install it with `pip install -e .[bench]` "
                 "or `pip install lightly`. Skipping.")
    if not Path(args.data).exists():
        sys.exit(f"vs_lightly: data not found at {args.data!r}; pass the CIFAR-10 ImageFolder archive "
                 f"(.tar.gz of train/<class>/*, test/<class>/*) with --data PATH. Skipping.")

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.exit("vs_lightly runs in one process; unset WORLD_SIZE (no torchrun)")

    from emsiam.alternation import m_step
    from emsiam.config import load_config
    from emsiam.evaluate import extract, knn_top1
    from emsiam.setup import build_optimizer, lr_schedule, set_lr, setup
    from emsiam.targets import autocast

    tmp = tempfile.mkdtemp(prefix="emsiam-vs-lightly-")
    ov = [f"out_dir={tmp}", "progress=false", "data.source=imagefolder", f"data.root={args.data}",
          f"optim.epochs={max(args.epochs_acc, 1)}"]
    ov += [f"optim.batch_size={args.batch}"] if args.batch else []
    ov += [f"data.n_train={args.n_train}"] if args.n_train else []
    ov += [f"data.n_test={args.n_test}"] if args.n_test else []
    cfg = load_config(args.preset, [*ov, *args.overrides])
    if cfg.method.variant != "simsiam" or cfg.data.recipe != "cifar":
        sys.exit("vs_lightly compares standard SimSiam with the CIFAR recipe "
                 "(method.variant=simsiam, data.recipe=cifar)")

    s = setup(cfg)  # loads train/test via emsiam.data.load_split('imagefolder', ...), builds model + optimizer
    device, B, fmt = s.device, cfg.optim.batch_size, s.memory_format
    amp = lambda: autocast(cfg, device)  # noqa: E731
    init_state = copy.deepcopy(s.model.state_dict())
    spec = s.spec

    # ---- lightly side: same network (a copy with the same initial weights), same optimizer/schedule
    model_l = copy.deepcopy(s.model)
    opt_l = build_optimizer(model_l, cfg.optim)
    crit = NegativeCosineSimilarity()
    transform = SimSiamTransform(
        input_size=cfg.data.resolution, gaussian_blur=0.0,
        normalize={"mean": list(spec.mean), "std": list(spec.std)},
    )
    cpu_train = s.train.to("cpu")
    ds = PILImages(cpu_train.images, cpu_train.labels, transform)

    def loader(seed: int) -> torch.utils.data.DataLoader:
        kw = dict(persistent_workers=True, prefetch_factor=args.prefetch_factor) if args.workers > 0 else {}
        return torch.utils.data.DataLoader(
            ds, batch_size=B, shuffle=True, drop_last=True, num_workers=args.workers,
            pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed), **kw,
        )

    def lightly_step(model, opt, views, step: int, lrs) -> torch.Tensor:
        x0, x1 = (v.to(device, non_blocking=True).contiguous(memory_format=fmt) for v in views)
        set_lr(opt, float(lrs[step % len(lrs)]), s.base_lr)
        with amp():
            p0, p1, z0, z1 = model(x0, x1)
            loss = 0.5 * (crit(p0.float(), z1.float().detach()) + crit(p1.float(), z0.float().detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    # ---- throughput, interleaved
    stream = batch_stream(s, B)
    dl = loader(cfg.seed)
    lstream = (views for e in range(10**6) for views, _ in dl)
    step = {"emsiam": 0, "lightly": 0}
    lead = args.lead_in if args.lead_in is not None else max(1, args.workers * args.prefetch_factor)

    def our_step() -> None:
        idx, x = next(stream)
        m_step(s, idx, x, step["emsiam"] % len(s.lrs))
        step["emsiam"] += 1

    def their_step() -> None:
        lightly_step(model_l, opt_l, next(lstream), step["lightly"], s.lrs)
        step["lightly"] += 1

    ours = lambda n: rate(our_step, n, B, device)  # noqa: E731
    theirs = lambda n: rate(their_step, n, B, device)  # noqa: E731

    print(f"device: {device}  preset {args.preset}  batch {B}  train images {len(s.train)}  "
          f"lightly {lightly.__version__} workers {args.workers}", flush=True)
    s.model.train()
    model_l.train()
    ours(args.warmup)
    theirs(args.warmup)
    rounds: dict[str, list[float]] = {"emsiam": [], "lightly": []}
    for r in range(args.rounds):
        ours(lead)
        rounds["emsiam"].append(ours(args.steps))
        theirs(lead)
        rounds["lightly"].append(theirs(args.steps))
        print(f"round {r + 1}/{args.rounds}: emsiam {rounds['emsiam'][-1]:8.1f}  "
              f"lightly {rounds['lightly'][-1]:8.1f} pairs/s", flush=True)
    del lstream, dl
    med = {k: statistics.median(v) for k, v in rounds.items()}

    # ---- optional accuracy check: same init, same subset, same schedule, N epochs each
    acc = None
    if args.epochs_acc > 0:
        n_cls = len(s.train.classes)

        def shift(model) -> float:
            """Relative l2 distance of the parameters from the shared initial weights (sanity check)."""
            params = dict(model.named_parameters())  # parameters only: BN running stats would dominate
            num = sum((p.detach().float() - init_state[k].float()).pow(2).sum() for k, p in params.items())
            den = sum(init_state[k].float().pow(2).sum() for k in params)
            return float((num / den).sqrt())

        def knn(model) -> float:
            ftr, fte = extract(model, s.train, spec, cfg.eval.batch_size), extract(model, s.test, spec, cfg.eval.batch_size)
            return knn_top1(ftr.h, s.train.labels, fte.h, s.test.labels, n_cls, cfg.eval.knn_k, cfg.eval.knn_t)

        lrs = lr_schedule(cfg.optim, len(s.batches))
        s.model.load_state_dict(init_state)
        acc = {"epochs": args.epochs_acc, "steps": len(lrs), "n_train": len(s.train), "n_test": len(s.test),
               "knn_k": cfg.eval.knn_k, "knn_t": cfg.eval.knn_t, "knn_top1_init": knn(s.model)}
        print(f"accuracy check: {args.epochs_acc} epochs x {len(s.batches)} steps; kNN top-1 at init "
              f"{acc['knn_top1_init']:.2f}", flush=True)
        # emsiam
        torch.manual_seed(cfg.seed)
        s.opt = build_optimizer(s.model, cfg.optim)
        s.lrs = lrs
        s.model.train()
        t0, st = time.perf_counter(), 0
        for e in range(args.epochs_acc):
            for idx, x, _ in s.batches.epoch(e):
                m_step(s, idx, x, st)
                st += 1
        sync(device)
        acc["emsiam_train_s"] = time.perf_counter() - t0
        acc["emsiam_knn_top1"] = knn(s.model)
        acc["emsiam_param_shift"] = shift(s.model)
        # lightly
        torch.manual_seed(cfg.seed)
        model_l.load_state_dict(init_state)
        opt_l = build_optimizer(model_l, cfg.optim)
        model_l.train()
        dl = loader(cfg.seed + 1)
        t0, st = time.perf_counter(), 0
        for _ in range(args.epochs_acc):
            for views, _ in dl:
                lightly_step(model_l, opt_l, views, st, lrs)
                st += 1
        sync(device)
        del dl
        acc["lightly_train_s"] = time.perf_counter() - t0
        acc["lightly_knn_top1"] = knn(model_l)
        acc["lightly_param_shift"] = shift(model_l)
        print(f"kNN top-1 after {args.epochs_acc} epochs: emsiam {acc['emsiam_knn_top1']:.2f}  "
              f"lightly {acc['lightly_knn_top1']:.2f}  (train wall: emsiam {acc['emsiam_train_s']:.1f} s, "
              f"lightly {acc['lightly_train_s']:.1f} s; relative weight change {acc['emsiam_param_shift']:.3f} / "
              f"{acc['lightly_param_shift']:.3f})", flush=True)

    result = {
        "benchmark": "vs_lightly",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": _machine(device),
        "versions": {"torch": torch.__version__, "lightly": lightly.__version__,
                     "torchvision": __import__("torchvision").__version__},
        "preset": args.preset,
        "overrides": args.overrides,
        "data": args.data,
        "n_train": len(s.train),
        "batch_size": B,
        "model": {"backbone": cfg.model.backbone, "convnet_widths": cfg.model.convnet_widths,
                  "proj_layers": cfg.model.proj_layers, "proj_hidden": cfg.model.proj_hidden, "dim": cfg.model.dim,
                  "pred_hidden": cfg.model.pred_hidden or cfg.model.dim // 4,
                  "channels_last": cfg.model.channels_last, "amp": cfg.amp,
                  "heads": "emsiam's (both sides)"},
        "optimizer": {"type": "SGD", "base_lr": s.base_lr, "momentum": cfg.optim.momentum,
                      "weight_decay": cfg.optim.weight_decay, "predictor_lr": cfg.optim.predictor_lr},
        "lightly_side": {"transform": "SimSiamTransform", "transform_args": {
                             "input_size": cfg.data.resolution, "gaussian_blur": 0.0,
                             "normalize": {"mean": list(spec.mean), "std": list(spec.std)}},
                         "loss": "NegativeCosineSimilarity (symmetrised, z detached)",
                         "num_workers": args.workers, "prefetch_factor": args.prefetch_factor},
        "steps": args.steps, "warmup": args.warmup, "lead_in": lead,
        "emsiam_pairs_per_s": med["emsiam"],
        "lightly_pairs_per_s": med["lightly"],
        "ratio_emsiam_over_lightly": med["emsiam"] / med["lightly"],
        "rounds": rounds,
        "accuracy": acc,
    }
    shutil.rmtree(tmp, ignore_errors=True)
    out = write_json(result, args.out or f"benchmarks/results/vs-lightly-{device.type}.json")
    print(f"emsiam  {med['emsiam']:8.1f} pairs/s (median of {args.rounds})")
    print(f"lightly {med['lightly']:8.1f} pairs/s (median of {args.rounds})")
    print(f"ratio emsiam/lightly {med['emsiam'] / med['lightly']:.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
