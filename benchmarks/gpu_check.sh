#!/usr/bin/env bash
# The GPU check in one command (<= 8 minutes on one H100/H200): CUDA tests, ResNet-18 CIFAR-10
# throughput (eager/compile, bf16, channels_last), variant cost, the cpu preset's convnet on the
# GPU, and a 5-epoch k-sweep smoke, all into one JSON under benchmarks/results/.
#   bash benchmarks/gpu_check.sh                  # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --cpu-dry-run    # every step shrunk, on the CPU (~1 minute)
# Needs only python3 with torch and torchvision (PYTHON=... to pick another); installs nothing.
# Data: ../shared/data/cifar10-jpeg.tar.gz is copied to data/ (ignored by git) when present;
# else data/cifar10-jpeg.tar.gz is read; else synthetic data (the JSON says which).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export EMSIAM_CACHE="${EMSIAM_CACHE:-$PWD/data/.cache}"  # the decoded CIFAR-10 cache, next to the archive
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
