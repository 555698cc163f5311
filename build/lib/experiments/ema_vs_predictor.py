"""Moving-average targets without a predictor vs the learned predictor (paper Sec. 5).

    python -m experiments.ema_vs_predictor --preset cpu --seeds 1 \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz

Runs: ``method.variant=ema`` (η_x ← m·η_x + (1−m)·F_θ(T'(x)), a memory bank over
all images, no predictor) for m in {0, 0.5, 0.8, 0.9, 0.99}; SimSiam with its
learned predictor; SimSiam with ``method.predictor=none``. 7 runs per seed.
m = 0 is one-step alternation with a single sampled view, i.e. SimSiam without
predictor, through the bank code path.

Runtime per run (2 CPU cores): preset ``cpu`` about 1.6 min per epoch with full
CIFAR-10 at B = 256 (80 s per epoch for 20k images at 1 thread); ``demo`` about
20 s per epoch; ``gpu-cifar`` GPU only (800 epochs).

Paper (ImageNet, ResNet-50, 100 epochs, linear top-1 %): ema m = 0.8 without
predictor 55.0; SimSiam (learned predictor) 68.1; no predictor 0.1 (collapse).
Other m are not reported. Calibration on this machine (CIFAR-10, convnet):
no predictor fell below the init kNN within 2 epochs, ema m = 0.8 matched
SimSiam after 3 epochs (49.3 vs ~49 kNN).
"""

from __future__ import annotations

import sys

from analysis.paper import study_numbers
from experiments.sweep import Study, study_main

#: The paper's number per run label (analysis/paper.py holds them all).
PAPER = study_numbers("ema_vs_predictor")

STUDY = Study(
    name="ema_vs_predictor",
    doc=__doc__,
    runs={
        **{f"ema_m{m}": ["method.variant=ema", f"method.ema_m={m}", "method.predictor=none"]
           for m in (0.0, 0.5, 0.8, 0.9, 0.99)},
        "simsiam": ["method.variant=simsiam", "method.predictor=learned"],
        "simsiam_no_predictor": ["method.variant=simsiam", "method.predictor=none"],
    },
)

def main(argv: list[str] | None = None) -> int:
    """Run the study (flags: see experiments/sweep/cli.py); exit status 1 if a run failed."""
    return study_main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
