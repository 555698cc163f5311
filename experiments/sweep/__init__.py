"""The study runner: a study's runs over seeds, resumably, one child process (or submitit job) per run.

``study`` expands and plans the runs from their directories' files, ``executors`` and ``jobs``
start them, ``runner`` runs a pool of them and writes the tables, ``cli`` is the study scripts'
command line. Run layout, status.json, resume, signals, GPUs and clusters: docs/sweep.md.
"""

from .archive import archive_run, restore
from .cli import STUDIES, add_common_args, load_study, main, parser, study_main
from .executors import (ERROR_LINES, GRACE_S, Executor, GpuPool, cpu_count, gpu_executor, stop_children,
                        subprocess_executor, visible_gpus)
from .jobs import JobOptions, TrainJob, submitit_executor
from .runner import (EXIT_INTERRUPTED, EXIT_LOCKED, INTERRUPT_RCS, SweepResult, execute, run_studies, run_study,
                     study_table)
from .study import RunSpec, Study, expand, plan, reconcile, safe_label, write_status

__all__ = ["Study", "RunSpec", "safe_label", "expand", "plan", "reconcile", "write_status",
           "Executor", "GpuPool", "cpu_count", "visible_gpus", "subprocess_executor", "gpu_executor", "stop_children",
           "JobOptions", "TrainJob", "submitit_executor",
           "archive_run", "restore", "SweepResult", "execute", "run_study", "run_studies", "study_table",
           "STUDIES", "add_common_args", "load_study", "main", "parser", "study_main",
           "ERROR_LINES", "GRACE_S", "EXIT_INTERRUPTED", "EXIT_LOCKED", "INTERRUPT_RCS"]
