"""The demo: a small k-step sweep and the EMA-vs-predictor study on built-in data, then the report.

    make demo                                   # = python -m experiments.demo
    python -m experiments.demo --out runs/demo --workers 2

Runs, on the embedded synthetic data set (no download) with the ``demo``
preset shortened to a laptop budget (5,000 training images, 4 epochs, B = 64,
312 SGD steps per run):

- ``kstep_sweep``: simsiam, kstep k = 10 and k = epoch;
- ``ema_vs_predictor``: ema (m = 0.8, no predictor) and simsiam with no predictor
  (plus the simsiam run above as the learned-predictor reference).

Five runs, two at a time with one thread each: about 6-8 minutes on 2 CPU
cores. Then ``analysis.report`` writes figures and ``report.md`` under
``OUT/report`` and the path is printed. Finished runs are skipped, so a second
``make demo`` only rebuilds the report. For the full studies use the study
commands in ``experiments/`` (see the README).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from experiments import ema_vs_predictor, kstep_sweep
from experiments.sweep import Study, run_study

#: The demo budget: overrides of the ``demo`` preset for every run.
BUDGET = ["data.n_train=5000", "data.n_test=2000", "optim.batch_size=64", "eval.eval_every=2",
          "eval.linear=false"]
EPOCHS = 4


def subset(study: Study, labels: list[str]) -> Study:
    return Study(name=study.name, doc=study.doc, runs={k: study.runs[k] for k in labels})


STUDIES = [
    subset(kstep_sweep.STUDY, ["simsiam", "k10", "kepoch"]),
    subset(ema_vs_predictor.STUDY, ["ema_m0.8", "simsiam_no_predictor"]),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/demo", help="runs directory (default runs/demo)")
    ap.add_argument("--workers", type=int, default=2, help="runs in parallel (default 2)")
    ap.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    args = ap.parse_args(argv)

    failed = 0
    for study in STUDIES:
        res = run_study(study, preset="demo", out=args.out, extra=BUDGET, epochs=EPOCHS,
                        workers=args.workers, dry_run=args.dry_run)
        failed += sum(1 for r in res.records.values() if r["status"] == "failed")
    if args.dry_run:
        return 0
    # The learned-predictor reference of ema_vs_predictor is the kstep_sweep simsiam run.
    ref = Path(args.out) / "ema_vs_predictor" / "simsiam_s0"
    if not ref.exists():
        shutil.copytree(Path(args.out) / "kstep_sweep" / "simsiam_s0", ref)

    from analysis.report import main as report_main

    report_main([str(args.out)])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
