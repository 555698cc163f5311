#!/usr/bin/env bash
# The long CIFAR-10 study in the background, seed by seed (complete pairs first), resumable:
# rerunning it skips finished runs and resumes interrupted ones from their checkpoints.
#   bash benchmarks/run_long_study.sh [OUT] [WORKERS]
# The study's code is the checkout this script sits in; runs go to OUT (default runs).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-runs}"
workers="${2:-2}"
data="${EMSIAM_CIFAR:-$here/../shared/data/cifar10-jpeg.tar.gz}"
py="${PYTHON:-python3}"
cd "$here"
for n in 1 2 3; do
  PYTHONPATH="$here" "$py" -m experiments.cifar10_long --seeds "$n" --workers "$workers" --out "$out" \
    --data data.source=imagefolder "data.root=$data" || true
done
