"""Write the UCI handwritten digits (scikit-learn's bundled copy: 1,797 grayscale 8x8 images,
10 classes; no download) as an npz dataset, upsampled to 16 px, stratified 80/20 split.

    pip install scikit-learn   # only for this conversion
    python benchmarks/make_digits_npz.py --out data/digits16
    python -m experiments.kstep_sweep --preset demo --seeds 3 --out runs/digits \
        --data data.source=npz data.root=data/digits16 data.resolution=16

The images are real (Alpaydin & Kaynak 1998), grayscale and not 32 px: a check that the
studies run unchanged beyond CIFAR-10 and the built-in synthetic set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/digits16", help="folder for train.npz and test.npz")
    ap.add_argument("--size", type=int, default=16, help="side length (nearest-neighbour upsampling of 8 px)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("this script needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    if args.size % 8:
        raise SystemExit("--size must be a multiple of 8")
    f = args.size // 8
    images = np.round(d.images * (255 / 16)).astype(np.uint8).repeat(f, axis=1).repeat(f, axis=2)
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(args.seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):  # stratified: 20% of every class
        idx = rng.permutation(np.flatnonzero(labels == c))
        test[idx[: len(idx) // 5]] = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    classes = np.array([str(c) for c in range(10)])
    np.savez(out / "train.npz", images=images[~test], labels=labels[~test], classes=classes)
    np.savez(out / "test.npz", images=images[test], labels=labels[test], classes=classes)
    print(f"{out}: train {int((~test).sum())}, test {int(test.sum())} images of {args.size}x{args.size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
