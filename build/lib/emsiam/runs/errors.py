"""The errors a run directory raises; each carries the CLI's exit code."""

from __future__ import annotations


class RunError(RuntimeError):
    """The run directory cannot be used as asked (exists, mismatched config, ...)."""

    exit_code = 4


class RunLocked(RunError):
    """Another live process holds the run directory's lock."""

    exit_code = 9


class CheckpointError(RunError):
    """A checkpoint file cannot be read: empty, truncated, corrupt, or refused as unsafe."""

    exit_code = 5
