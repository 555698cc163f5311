"""Symmetrised vs asymmetric loss (paper Sec. 4.6).

    python -m experiments.symmetry --preset cpu --seeds 1 \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz

Runs: ``symmetric`` (½D(p1, z2) + ½D(p2, z1), the default); ``asymmetric``
(``method.symmetric=false``: D(p1, z2) only); ``asymmetric_2x``. 3 runs per seed.

About "2× asymmetric": as in the paper, it samples *two* independent view pairs
per image in each step (``method.pairs=2``: views 0-1 and 2-3, the two asymmetric
losses averaged), so it sees as many loss terms per step as the symmetric version
and costs about twice its compute per step.

Runtime per run (2 CPU cores): preset ``cpu`` about 1.6 min per epoch with full
CIFAR-10 at B = 256 (asymmetric_2x: about twice that; 80 s per epoch for 20k images
at 1 thread); ``demo`` about 20 s per epoch; ``gpu-cifar`` GPU only.

Paper (ImageNet, ResNet-50, 100 epochs, linear top-1 %): symmetric 68.1,
asymmetric 64.8, 2× asymmetric 67.3. Symmetrisation acts like denser sampling of
T; it helps but is not needed to avoid collapse.
"""

from __future__ import annotations

import sys

from analysis.paper import study_numbers
from experiments.sweep import Study, study_main

#: The paper's number per run label (analysis/paper.py holds them all).
PAPER = study_numbers("symmetry")

STUDY = Study(
    name="symmetry",
    doc=__doc__,
    runs={
        "symmetric": ["method.variant=simsiam", "method.symmetric=true"],
        "asymmetric": ["method.variant=simsiam", "method.symmetric=false"],
        "asymmetric_2x": ["method.variant=simsiam", "method.symmetric=false", "method.pairs=2"],
    },
)

def main(argv: list[str] | None = None) -> int:
    """Run the study (flags: see experiments/sweep/cli.py); exit status 1 if a run failed."""
    return study_main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
