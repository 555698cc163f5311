"""Target from the mean augmented input F_θ(x̄), x̄ = mean_i T_i(x) (Su's open question).

    python -m experiments.mean_input --preset cpu --seeds 1 \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz

Runs: ``method.variant=mean_input`` (targets from the pixel mean of
``method.mean_input_views`` = 8 views, learned predictor); SimSiam; ``ema``
(m = 0.8, no predictor) as the other expectation-based target. 3 runs per seed.

Runtime per run (2 CPU cores): preset ``cpu`` about 1.6 min per epoch with full
CIFAR-10 at B = 256 for SimSiam/ema (80 s per epoch for 20k images at 1 thread);
mean_input also augments M = 8 extra views per image per target refresh, so it is
slower; ``demo`` about 20 s per epoch; ``gpu-cifar`` GPU only.

Paper: no number; Su (kexue.fm 7980) asks, unverified, whether F_θ(x̄) works as a
target without collapse, and nobody has published the experiment. Reference
points (ImageNet, linear top-1 %): SimSiam 68.1, ema m = 0.8 without predictor 55.0.
"""

from __future__ import annotations

import sys

from analysis.paper import study_numbers
from experiments.sweep import Study, study_main

#: The paper's number per run label (analysis/paper.py holds them all).
PAPER = study_numbers("mean_input")

STUDY = Study(
    name="mean_input",
    doc=__doc__,
    runs={
        "mean_input": ["method.variant=mean_input"],
        "simsiam": ["method.variant=simsiam"],
        "ema_m0.8": ["method.variant=ema", "method.ema_m=0.8"],
    },
)

def main(argv: list[str] | None = None) -> int:
    """Run the study (flags: see experiments/sweep/cli.py); exit status 1 if a run failed."""
    return study_main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
