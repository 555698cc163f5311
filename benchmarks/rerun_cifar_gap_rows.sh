#!/usr/bin/env bash
# Issue 10: re-run the 2-epoch CIFAR-10 rows of reports/cifar10-cpu whose training the instrument
# fixes do not change but whose expectation-gap probe they do (leave-one-out Ē). Two chains, one
# thread per run; rerunning skips finished runs and resumes the rest from their checkpoints.
#   bash benchmarks/rerun_cifar_gap_rows.sh [OUT]          (default runs/cifar_rest)
# Then swap the rows into the checked-in tables (python -m analysis.merge_tables ...; README,
# "Paper studies on real CIFAR-10") and rebuild the report with the command in its header.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-runs/cifar_rest}"
data="$(realpath -m "${EMSIAM_CIFAR:-$here/../shared/data/cifar10-jpeg.tar.gz}")"  # one spelling, so resumes match
py="${PYTHON:-python3}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$here"
D=(--preset cpu --epochs 2 --workers 1 --out "$out" --data data.source=imagefolder "data.root=$data" data.n_train=20000
   --set optim.batch_size=128 eval.linear=false method.diag_every=47 eval.batch_size=1024 eval.eval_every=2)
( "$py" -m experiments.ema_vs_predictor --seeds 2 "${D[@]}" --only simsiam_no_predictor
  "$py" -m experiments.predictor_ablation --seeds 1 "${D[@]}" --only fixed_random learned_cosine_lr
  "$py" -m experiments.mean_input --seeds 1 "${D[@]}" --only mean_input ) &
( "$py" -m experiments.stopgrad --seeds 2 "${D[@]}" --only no_stopgrad
  "$py" -m experiments.symmetry --seeds 1 "${D[@]}" --only asymmetric asymmetric_2x ) &
wait
