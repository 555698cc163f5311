"""The predictor question (issue 12): is h the expectation E_T[F(T(x))]? Two sides.

    python -m experiments.predictor_as_expectation --preset cpu --seeds 3 \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz
    python -m experiments.predictor_as_expectation --preset demo --dry-run      # list the runs
    python -m experiments.predictor_as_expectation --preset demo --epochs 1 --out /tmp/pred \
        --set data.n_train=512 data.n_test=128 "model.convnet_widths=[8,16]" model.proj_hidden=32 \
        model.dim=32 optim.batch_size=64 eval.linear=false eval.knn_k=20     # smoke test, ~1 min per run

1. Replace the learned predictor by a closed form known to work (SimSiam otherwise unchanged):
   ``learned`` (the 2-layer SGD-trained predictor), ``directpred_eps0`` and ``directpred_eps0.1``
   (W_p = Q diag(√(s/s_max) + ε) Qᵀ from F̂ every step), ``directcopy`` (W_p = F̂/s_max + ε·I),
   ``none`` (identity: collapses in the paper, Table 1).
2. Replace the one-sample target by an explicit M-sample estimate of E_T: kstep (k = 1) with
   η_x = (1/M) Σ_i F_θt(T(x; s_i)) over M target views disjoint from the two M-step views,
   M ∈ {2, 4, 8}, with the learned predictor (``M{M}_learned``) and without (``M{M}_none``).
   M = 1 is SimSiam itself (``learned`` / ``none``). If "predictor = expectation" holds, then
   as M grows ``M{M}_none`` should stop collapsing, or its gap to ``M{M}_learned`` shrink.

Every run logs, at each evaluation: kNN, collapse statistics, the leave-one-out
predictor-expectation gap (gap/*) and spectral alignment of the predictor with F̂
(spectral/*; spectra in ``<run>/spectra/epochNNNN.npz``). After the runs, the study's figures
go to ``OUT/predictor_as_expectation/figures/``: accuracy vs M, the eigen-spectra of F̂ and W_p,
and the gap by predictor kind (analysis/figures/predictor.py, PREDICTOR_FIGURES); ``python -m
analysis.report OUT`` adds the table and claims.

Runtime per run (2 CPU cores): preset ``cpu`` about 1.6 min per epoch with full CIFAR-10 at
B = 256; an ``M*`` run adds M target forward passes (no backward) per step, roughly (6 + M)/6
times a SimSiam step (a step is about 6 forward-equivalents); DirectPred adds its eigh at d = 512
(benchmarks/directpred_cost.py). 11 runs per seed.

Paper numbers (analysis/paper.py): DirectPred (BYOL, CIFAR-10, 100 epochs, linear top-1):
ε = 0.1 85.21 vs SGD-trained predictor 84.49; STL-10: 77.86 vs 74.51 (ε = 0: 76.77).
No predictor collapses (SimSiam Table 1: 0.1). The M-view target has no published number.
"""

from __future__ import annotations

import sys
from pathlib import Path

from analysis.paper import study_numbers
from experiments.sweep import Study, parser, study_main

#: The paper's number per run label (analysis/paper.py holds them all).
PAPER = study_numbers("predictor_as_expectation")

_SIMSIAM = ["method.variant=simsiam"]
_KSTEP = ["method.variant=kstep", "method.k=1"]

STUDY = Study(
    name="predictor_as_expectation",
    doc=__doc__,
    runs={
        "learned": [*_SIMSIAM, "method.predictor=learned"],
        "directpred_eps0": [*_SIMSIAM, "method.predictor=directpred", "method.directpred_eps=0"],
        "directpred_eps0.1": [*_SIMSIAM, "method.predictor=directpred", "method.directpred_eps=0.1"],
        "directcopy": [*_SIMSIAM, "method.predictor=directcopy"],
        "none": [*_SIMSIAM, "method.predictor=none"],
        **{f"M{m}_{p}": [*_KSTEP, f"method.target_views={m}", f"method.predictor={p}"]
           for p in ("learned", "none") for m in (2, 4, 8)},
    },
)


def render_figures(out: str | Path) -> list[str]:
    """The study's figures under ``OUT/<study>/figures``; returns notes for figures skipped."""
    from analysis.figures import PREDICTOR_FIGURES

    study_dir = Path(out) / STUDY.name
    notes = []
    for name, fn in PREDICTOR_FIGURES.items():
        try:
            paths = fn(study_dir, study_dir / "figures" / name)
            print(f"figure: {paths[0]}")
        except ValueError as exc:
            notes.append(f"{name} skipped: {exc}")
    for n in notes:
        print(n, file=sys.stderr)
    return notes


def main(argv: list[str] | None = None) -> int:
    """Run the study (flags: see experiments/sweep/cli.py), then its figures; exit status 1 if a run failed."""
    rc = study_main(STUDY, argv)
    args = parser(STUDY).parse_args(argv)
    if not args.dry_run and (Path(args.out) / STUDY.name).exists():
        render_figures(args.out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
