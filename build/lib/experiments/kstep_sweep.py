"""Multi-step alternation (paper Sec. 5): cached targets refreshed every k SGD steps.

    python -m experiments.kstep_sweep --preset cpu --seeds 1 \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz
    python -m experiments.kstep_sweep --preset demo --dry-run     # list the runs

Runs: SimSiam, and ``method.variant=kstep`` with k = 1, 10, 100 and one epoch
(targets η_x precomputed for the next k steps, then k SGD steps on θ; same
architecture, hyper-parameters and predictor as SimSiam). 5 runs per seed.

Runtime per run (2 CPU cores): preset ``cpu`` about 1.6 min per epoch with full
CIFAR-10 at B = 256 (8 epochs: ~13 min plus evaluation; about 80 s per epoch for
a 20k-image subset at 1 thread); preset ``demo`` about 20 s per epoch (10 epochs);
``gpu-cifar`` is the 800-epoch ResNet-18 recipe (GPU only; hours per run).
kstep adds one extra forward pass per image per refresh.

Paper (ImageNet, ResNet-50, 100 epochs, linear top-1 %): SimSiam 68.1,
1-step 68.1, 10-step 68.7, 100-step 68.9, 1-epoch 67.0. Expected here: k = 1
matches SimSiam, no k collapses; small CPU budgets resolve the ordering only
roughly (differences of < 1 point are within seed noise).
"""

from __future__ import annotations

import sys

from analysis.paper import study_numbers
from experiments.sweep import Study, study_main

#: The paper's number per run label (analysis/paper.py holds them all).
PAPER = study_numbers("kstep_sweep")

STUDY = Study(
    name="kstep_sweep",
    doc=__doc__,
    runs={
        "simsiam": ["method.variant=simsiam"],
        "k1": ["method.variant=kstep", "method.k=1"],
        "k10": ["method.variant=kstep", "method.k=10"],
        "k100": ["method.variant=kstep", "method.k=100"],
        "kepoch": ["method.variant=kstep", "method.k=epoch"],
    },
)

def main(argv: list[str] | None = None) -> int:
    """Run the study (flags: see experiments/sweep/cli.py); exit status 1 if a run failed."""
    return study_main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
