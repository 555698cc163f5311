#!/usr/bin/env bash
# The long CIFAR-10 study in the background, seed by seed (complete pairs first: --order seed), resumable:
# rerunning it skips finished runs and resumes interrupted ones from their checkpoints.
#   bash benchmarks/run_long_study.sh [OUT] [WORKERS] [ARCHIVE]
# The study's code is the checkout this script sits in; runs go to OUT (default runs). Each finished
# run is also copied, without checkpoints or banks, to ARCHIVE/cifar10_long (default: results/ of
# this checkout, which is checked in); a new machine restores those first, so only the unfinished
# runs are trained again.
# Order: questions 1-4's main rows (experiments/cifar10_long.py MAIN_ROWS) over seeds 0, 1, 2;
# then the M-view rows (M4_*) and the predictor study's other rows (PREDICTOR_ROWS) for seed 0;
# then M4_* for seeds 1 and 2.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-runs}"
workers="${2:-2}"
archive="${3:-$here/results}"
data="${EMSIAM_CIFAR:-$here/../shared/data/cifar10-jpeg.tar.gz}"
py="${PYTHON:-python3}"
cd "$here"
rows() { PYTHONPATH="$here" "$py" -c "from experiments.cifar10_long import $1; print(' '.join($1))"; }
main_rows=$(rows MAIN_ROWS)
predictor_rows=$(rows PREDICTOR_ROWS)
study() {
  PYTHONPATH="$here" "$py" -m experiments.cifar10_long --workers "$workers" --out "$out" --archive "$archive" \
    --data data.source=imagefolder "data.root=$data" "$@" || true
}
study --seeds 3 --order seed --only $main_rows          # seed by seed: no worker waits at a seed's end
study --seeds 1 --only M4_learned M4_none $predictor_rows
study --seeds 3 --order seed --only M4_learned M4_none
