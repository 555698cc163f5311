"""Atomic file writes (temporary file + ``os.replace``) and the code version a run records."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator


def code_versions(run_dir: str | Path) -> list[str]:
    """The distinct git shas a run was trained with, in order of first use (from git.txt)."""
    path = Path(run_dir) / "git.txt"
    shas = [line.split()[0] for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return list(dict.fromkeys(shas))


def git_sha() -> str:
    """Short git sha of the package's checkout, ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def named(e: OSError, path: Path) -> OSError:
    """``e`` with ``path`` as its file name (writes to an open file raise OSErrors without one)."""
    return e if e.filename else OSError(e.errno, e.strerror, str(path))


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically, on any
    failure it is removed (an OSError is re-raised naming the file) and ``path`` is untouched."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise named(e, path) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)
