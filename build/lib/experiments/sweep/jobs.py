"""A run as a submitit job (SLURM, or this machine for tests), requeued and resumed on timeout or preemption."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .executors import ERROR_LINES, GRACE_S, Executor, stop_requested
from .study import RunSpec, now, plan


class TrainJob:
    """One run as a submitit job: ``emsiam train`` in a subprocess of the job (under torchrun
    for several GPUs). When submitit signals a time limit or preemption, :meth:`checkpoint`
    stops the run (SIGTERM: the run keeps its last checkpoint and releases its lock) and
    returns itself with ``resume=True``, which submitit requeues; the requeued job resumes
    the run from its checkpoint (or restarts it when none was written yet)."""

    def __init__(self, spec: RunSpec, threads: int | None = None, gpus: int = 0, resume: bool = False):
        self.spec, self.threads, self.gpus, self.resume = spec, threads, gpus, resume
        self._proc: subprocess.Popen | None = None

    def __call__(self) -> tuple[int, str]:
        spec = self.spec
        if self.resume:  # what the run's files say now (a checkpoint, or a config only)
            spec = plan(RunSpec(spec.study, spec.label, spec.seed, spec.name, spec.run_dir, spec.preset,
                                list(spec.overrides), spec.epochs))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.threads is not None:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[var] = str(self.threads)
        cmd = spec.command(self.gpus if self.gpus > 1 else 1)
        tail: collections.deque[str] = collections.deque(maxlen=ERROR_LINES)
        with open(spec.run_dir / "log.txt", "a") as log:
            log.write(f"==== {now()} job {os.environ.get('SLURM_JOB_ID') or os.environ.get('SUBMITIT_LOCAL_JOB_ID', '?')}"
                      f"{' (requeued)' if self.resume else ''}: {' '.join(cmd)}\n")
            log.flush()
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, env=env)
            assert self._proc.stderr is not None
            for line in self._proc.stderr:
                log.write(line)
                log.flush()
                tail.append(line.rstrip("\n"))
            rc = self._proc.wait()
        return rc, "\n".join(tail)

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on timeout/preemption: stop the run, requeue this job with resume=true."""
        import submitit

        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        return submitit.helpers.DelayedSubmission(TrainJob(self.spec, self.threads, self.gpus, resume=True))


@dataclass
class JobOptions:
    """Resources of each run's job (``--launcher slurm|submitit-local``)."""

    launcher: str = "slurm"  # slurm | submitit-local
    folder: str | None = None  # submitit's logs and pickles (default: OUT/.submitit)
    partition: str | None = None
    time_min: int = 60
    gpus: int = 0  # per run (one node)
    cpus: int | None = None
    mem_gb: float | None = None


def _submitit():
    try:
        import submitit
    except ImportError:
        raise SystemExit("--launcher slurm|submitit-local needs submitit: pip install submitit "
                         "(or pip install 'emsiam[slurm]')") from None
    return submitit


def submitit_executor(opts: JobOptions, out: str | Path) -> Executor:
    """Each run as one submitit job; the pool thread waits for it (cancels it on Ctrl-C)."""
    submitit = _submitit()
    folder = Path(opts.folder or Path(out) / ".submitit")
    if opts.launcher == "slurm":
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        params = {"timeout_min": opts.time_min, "gpus_per_node": opts.gpus, "tasks_per_node": 1, "nodes": 1}
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.cpus:
            params["cpus_per_task"] = opts.cpus
        if opts.mem_gb:
            params["mem_gb"] = opts.mem_gb
        ex.update_parameters(**params)
    elif opts.launcher == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder / "%j")
        ex.update_parameters(timeout_min=opts.time_min, gpus_per_node=opts.gpus)
    else:
        raise ValueError(f"unknown launcher {opts.launcher!r}")

    def run(spec: RunSpec, threads: int | None) -> tuple[int, str]:
        job = ex.submit(TrainJob(spec, opts.cpus or (threads if opts.launcher == "submitit-local" else None), opts.gpus))
        with open(spec.run_dir / "log.txt", "a") as log:
            log.write(f"==== {now()} submitted job {job.job_id} ({opts.launcher}); its output: {folder}\n")
        while not job.done():
            if stop_requested.is_set():
                job.cancel(check=False)
                return -signal.SIGTERM, f"job {job.job_id} cancelled: the sweep was interrupted"
            time.sleep(0.5)
        try:
            return job.result()
        except Exception as e:  # noqa: BLE001 - the job failed outside our callable (node failure, cancelled)
            return -1, f"job {job.job_id}: {type(e).__name__}: {str(e)[-2000:]}"
    return run
