"""Every variant side by side at one budget: the qualitative findings of Sec. 4-5.

    python experiments/variant_table.py --preset cpu --epochs 3 \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz

Runs each variant below for the same number of epochs (sequentially; finished
runs are skipped, so an interrupted table resumes), then prints a Markdown
table of kNN top-1 at init and at the end, z_std·√d, effective rank, and the
diagnostics. Expected (paper, ImageNet, 100 epochs): `predictor=none` and
`stopgrad=false` collapse (z_std·√d → 0, kNN → chance); simsiam, kstep with
k in {1, 10, 100, epoch} and ema (m = 0.8, no predictor) do not.
Runtime: about (epochs x 1.2 min + 0.5 min) per variant on 2 CPU cores with CIFAR-10.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emsiam.config import load_config
from emsiam.runs import read_metrics
from emsiam.train import train

VARIANTS = {
    "simsiam": [],
    "kstep k=1": ["method.variant=kstep", "method.k=1"],
    "kstep k=10": ["method.variant=kstep", "method.k=10"],
    "kstep k=100": ["method.variant=kstep", "method.k=100"],
    "kstep k=epoch": ["method.variant=kstep", "method.k=epoch"],
    "ema m=0.8": ["method.variant=ema", "method.ema_m=0.8"],
    "predictor=none": ["method.predictor=none"],
    "stopgrad=false": ["method.stopgrad=false"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out-dir", default="runs/variant_table")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--data", nargs="*", default=[], help="data.* overrides")
    ap.add_argument("--table", default=None, help="also write the Markdown table to this file")
    args = ap.parse_args()

    rows = []
    for label, extra in VARIANTS.items():
        if args.only and label not in args.only:
            continue
        name = label.replace(" ", "_").replace("=", "")
        over = [f"out_dir={args.out_dir}", f"name={name}", f"optim.epochs={args.epochs}",
                f"eval.eval_every={args.epochs}", *args.data, *extra]
        run_dir = Path(args.out_dir) / name
        recs = read_metrics(run_dir)
        if not (recs and recs[-1].get("epoch") == args.epochs):
            if (run_dir / "checkpoints" / "last.pt").exists():
                over.append("resume=true")
            recs = train(load_config(args.preset, over))
        rows.append((label, recs[0], recs[-1]))

    head = ("| variant | kNN init | kNN end | Δ | z_std·√d | eff. rank | loss | staleness cos | "
            "cos(h(F),Ē) | cos(F,Ē) | cos(η,Ē) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    fmt = lambda r, k: f"{r[k]:.3f}" if k in r else "–"  # noqa: E731
    for label, r0, r1 in rows:
        lines.append(
            f"| {label} | {r0['eval/knn_top1']:.1f} | {r1['eval/knn_top1']:.1f} | "
            f"{r1['eval/knn_top1'] - r0['eval/knn_top1']:+.1f} | {r1['collapse/z_std_sqrt_d']:.2f} | "
            f"{r1['collapse/eff_rank']:.1f} | {r1['train/loss']:.3f} | {fmt(r1, 'bank/staleness_cos')} | "
            f"{fmt(r1, 'gap/cos_h_E')} | {fmt(r1, 'gap/cos_F_E')} | {fmt(r1, 'gap/cos_eta_E')} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.table:
        Path(args.table).write_text(table + "\n")


if __name__ == "__main__":
    main()
