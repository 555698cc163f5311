"""The long CIFAR-10 study: k-sweep, EMA bank and predictors at 4,992 SGD steps per run, 3 seeds.

    python -m experiments.cifar10_long --seeds 3 --workers 2 --out runs --archive results \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz
    python -m analysis.report results/cifar10_long --out reports/cifar10-long

Questions (paired over seeds: the same seed gives the same init, data order and views):

1. k-sweep: SimSiam (= k = 1, proven bit-exact by tests/test_alternation.py) against
   k = 10, 100 and one epoch (156 steps). Paper: 68.1 / 68.7 / 68.9 / 67.0.
2. Beyond the paper: where does alternation break? k = 2 and 5 epochs (one E-step under θ_t
   serves 2 or 5 epochs of M-steps; ``method.k=2epochs``).
3. EMA bank without predictor, m = 0.5 / 0.8 / 0.9, against the learned predictor
   (SimSiam) and no predictor. Paper: 55.0 vs 68.1 (no predictor 0.1). At 32 epochs the
   initial targets keep m^32 of their weight: 2e-10 / 8e-4 / 0.034, all below 0.05.
4. Predictor (the predictor issue): DirectPred (ε = 0.1, freq 1) against the learned predictor,
   3 seeds; the 4-view expectation target η_x = mean of F over 4 target views (``M4_*``, with
   and without the learned predictor), after the main rows: an M-view run costs about (6 + M)/6
   of a SimSiam run. Paper (DirectPred, BYOL, 100 epochs, linear): CIFAR-10 85.21 vs 84.49,
   STL-10 77.86 vs 74.51. The predictor study's other rows (DirectPred ε = 0, DirectCopy,
   M = 2 and 8 with and without the learned predictor) run at this size with seed 0, so
   that experiments/predictor_as_expectation.py's question has every row on CIFAR-10.

Size: the ``cpu`` preset (small convnet, d = 512), a fixed random 10k-image subset of the
training set (``data.subset_seed=0``), the full 10k test set, B = 64 (156 steps per epoch),
32 epochs = 4,992 steps per run, evaluation every 4 epochs. 11 main configurations x 3 seeds
+ 2 M-view rows x 3 seeds + 6 predictor rows x 1 seed = 45 runs, 15-19 minutes each (SimSiam,
kstep) on one core of the 2-core VM, an M-view run (6 + M)/6 of that: about 7 hours with two
workers. Runs are listed seed by seed when started with
``--seeds 1``, then 2, then 3 (``benchmarks/run_long_study.sh``), so complete pairs arrive
first: questions 1-3 and DirectPred over 3 seeds, then the M-view rows.

Until 2026-12-07 the study used a 20k subset at B = 128 (same steps and epochs, twice the
images per step, about 30 minutes per run). Its runs were lost with the machine's ``runs/``
folder before the study finished; the smaller size halves the cost so that the study fits
in two sessions, and finished runs are now archived in the repository as they finish
(``--archive results``).
"""

from __future__ import annotations

import sys

from analysis.paper import study_numbers
from experiments.sweep import Study, study_main

#: The paper's numbers for these labels (analysis/paper.py is their one home).
PAPER = study_numbers("cifar10_long")

#: Settings shared by every run of the study (before the runner's --data and --set).
COMMON = ["data.n_train=10000", "data.subset_seed=0", "optim.batch_size=64", "optim.epochs=32",
          "eval.eval_every=4"]

#: The rows of questions 1-4 that run over 3 seeds first; the M-view rows (``M4_*``) follow them.
MAIN_ROWS = ("simsiam", "k10", "k100", "kepoch", "k2epochs", "k5epochs", "ema_m0.5", "ema_m0.8", "ema_m0.9",
             "simsiam_no_predictor", "directpred")
#: The predictor study's remaining rows, seed 0 only, after M4_* of seed 0.
PREDICTOR_ROWS = ("directpred_eps0", "directcopy", "M2_learned", "M2_none", "M8_learned", "M8_none")

STUDY = Study(
    name="cifar10_long",
    doc=__doc__,
    runs={
        "simsiam": [*COMMON, "method.variant=simsiam"],
        "k10": [*COMMON, "method.variant=kstep", "method.k=10"],
        "k100": [*COMMON, "method.variant=kstep", "method.k=100"],
        "kepoch": [*COMMON, "method.variant=kstep", "method.k=epoch"],
        "k2epochs": [*COMMON, "method.variant=kstep", "method.k=2epochs"],
        "k5epochs": [*COMMON, "method.variant=kstep", "method.k=5epochs"],
        "ema_m0.5": [*COMMON, "method.variant=ema", "method.ema_m=0.5", "method.predictor=none"],
        "ema_m0.8": [*COMMON, "method.variant=ema", "method.ema_m=0.8", "method.predictor=none"],
        "ema_m0.9": [*COMMON, "method.variant=ema", "method.ema_m=0.9", "method.predictor=none"],
        "simsiam_no_predictor": [*COMMON, "method.variant=simsiam", "method.predictor=none"],
        # question 4 (the predictor issue): DirectPred's closed form against the learned predictor
        # (paired with "simsiam"), and the explicit 4-view expectation target (kstep k = 1, which is
        # SimSiam bit for bit at M = 1) with and without the learned predictor.
        "directpred": [*COMMON, "method.variant=simsiam", "method.predictor=directpred"],
        "M4_learned": [*COMMON, "method.variant=kstep", "method.k=1", "method.target_views=4",
                       "method.predictor=learned"],
        "M4_none": [*COMMON, "method.variant=kstep", "method.k=1", "method.target_views=4",
                    "method.predictor=none"],
        # the rest of the predictor study (experiments/predictor_as_expectation.py) at this size,
        # one seed: its other rows are simsiam, directpred, simsiam_no_predictor and M4_* above.
        "directpred_eps0": [*COMMON, "method.variant=simsiam", "method.predictor=directpred",
                            "method.directpred_eps=0"],
        "directcopy": [*COMMON, "method.variant=simsiam", "method.predictor=directcopy"],
        **{f"M{m}_{p}": [*COMMON, "method.variant=kstep", "method.k=1", f"method.target_views={m}",
                         f"method.predictor={p}"] for m in (2, 8) for p in ("learned", "none")},
    },
)


def main(argv: list[str] | None = None) -> int:
    """Run the study (flags: see experiments/sweep/cli.py); exit status 1 if a run failed."""
    return study_main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
