"""Command line of the study scripts: ``python -m experiments.STUDY [flags]`` or
``python -m experiments.sweep STUDY [flags]``.

    python -m experiments.kstep_sweep --preset cpu --seeds 2 --workers 1 \
        --data data.source=imagefolder data.root=../shared/data/cifar10-jpeg.tar.gz
    python -m experiments.sweep kstep_sweep --dry-run        # same, by study name

Every study script (``experiments/<study>.py``) defines a ``Study`` and calls
:func:`study_main`. Run layout, status.json, resume, signals, GPUs and clusters: docs/sweep.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

from .executors import GpuPool, gpu_executor, subprocess_executor
from .jobs import JobOptions, submitit_executor
from .runner import EXIT_INTERRUPTED, ORDERS, run_study
from .study import Study


def parser(study: Study | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=f"python -m experiments.{study.name}" if study else "python -m experiments.sweep",
        description=study.doc if study else __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    return ap


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """The flags every study script accepts (also used by ``su_dynamics``, which ignores most)."""
    ap.add_argument("--preset", default="cpu", help="preset or YAML file (cpu, demo, gpu-cifar)")
    ap.add_argument("--seeds", type=int, default=1, help="number of seeds: 0..N-1")
    ap.add_argument("--data", nargs="*", default=[], metavar="KEY=VALUE",
                    help="data overrides, e.g. data.source=imagefolder data.root=PATH")
    ap.add_argument("--epochs", type=int, default=None, help="optim.epochs of every run (default: the preset's)")
    ap.add_argument("--out", default="runs", help="root of the run directories (default: runs)")
    ap.add_argument("--workers", type=int, default=None,
                    help="runs in parallel (threads split between them); default 1, or one per GPU group with "
                         "--gpus-per-run, or --array-parallelism with a submitit launcher")
    ap.add_argument("--archive", default=None, metavar="DIR",
                    help="keep finished runs (without checkpoints or banks) in DIR/<study>/<run>, a folder to "
                         "check in; archived runs missing from --out are restored first and skipped")
    ap.add_argument("--order", choices=ORDERS, default="label",
                    help="start the runs label by label (default) or seed by seed: every label of seed 0 first, "
                         "so that complete pairs over seeds arrive early")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and exit; nothing is written")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="set",
                    help="overrides for every run (win over the study's)")
    ap.add_argument("--only", nargs="*", default=None, metavar="LABEL", help="only these runs of the study")
    ap.add_argument("--launcher", choices=["local", "submitit-local", "slurm"], default="local",
                    help="local subprocesses (default), or one submitit job per run (SLURM, or this machine)")
    ap.add_argument("--gpus-per-run", type=int, default=0,
                    help="GPUs per run (CUDA_VISIBLE_DEVICES round-robin; torchrun inside a run when > 1)")
    ap.add_argument("--partition", default=None, help="SLURM partition")
    ap.add_argument("--time", type=int, default=60, dest="time_min",
                    help="job time limit in minutes (submitit; a job that reaches it is requeued and resumes)")
    ap.add_argument("--cpus-per-run", type=int, default=None, help="CPUs per job (submitit)")
    ap.add_argument("--mem-gb", type=float, default=None, help="memory per job in GB (SLURM)")
    ap.add_argument("--array-parallelism", type=int, default=None,
                    help="at most this many jobs queued or running at once (submitit; default: all)")


def study_main(study: Study, argv: Sequence[str] | None = None) -> int:
    """Entry point of a study script's ``main()``; exit status 1 if any run failed, 130 if interrupted."""
    args = parser(study).parse_args(argv)
    if (args.workers is not None and args.workers < 1) or args.seeds < 1 or args.gpus_per_run < 0:
        raise SystemExit("--workers and --seeds must be >= 1, --gpus-per-run >= 0")
    if args.only is not None:
        unknown = set(args.only) - set(study.runs)
        if unknown:
            raise SystemExit(f"--only: no run labelled {sorted(unknown)} in {study.name} ({', '.join(study.runs)})")
        study = Study(study.name, study.doc, {k: v for k, v in study.runs.items() if k in args.only},
                      {k: v for k, v in study.epochs_factor.items() if k in args.only})
    executor, workers = subprocess_executor, args.workers or 1
    if args.dry_run:
        pass
    elif args.launcher != "local":
        opts = JobOptions(args.launcher, None, args.partition, args.time_min, args.gpus_per_run, args.cpus_per_run,
                          args.mem_gb)
        executor = submitit_executor(opts, Path(args.out) / study.name)
        workers = args.workers or args.array_parallelism or 256
    elif args.gpus_per_run:
        pool = GpuPool(args.gpus_per_run)
        executor, workers = gpu_executor(pool), args.workers or len(pool.groups)
    res = run_study(study, preset=args.preset, seeds=args.seeds, out=args.out, data=args.data, extra=args.set,
                    epochs=args.epochs, workers=workers, dry_run=args.dry_run, executor=executor,
                    archive=args.archive, order=args.order)
    if res.interrupted:
        return EXIT_INTERRUPTED
    return 1 if res.count("failed") else 0


#: The study modules under ``experiments/``.
STUDIES = ("kstep_sweep", "ema_vs_predictor", "predictor_ablation", "stopgrad", "symmetry", "mean_input",
           "predictor_as_expectation", "cifar10_long")


def load_study(name: str) -> Study:
    return importlib.import_module(f"experiments.{name}").STUDY


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.sweep STUDY [flags]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STUDIES:
        print(f"usage: python -m experiments.sweep STUDY [flags]; STUDY is one of {', '.join(STUDIES)}",
              file=sys.stderr)
        return 2
    return study_main(load_study(argv[0]), argv[1:])
