"""Finished runs kept small enough to check in, and put back where the runner finds them.

A study that spans several sessions on a machine whose ``runs/`` folder does not survive
them keeps each finished run's record (config, metrics, git sha, status, log, spectra) in an
archive folder that is committed, ``ARCHIVE/<study>/<run>/``: checkpoints and target banks
(the bulk, and only needed to resume) are left out. :func:`restore` copies archived runs back
into an empty ``OUT/<study>/``, where :func:`experiments.sweep.study.plan` skips them as done
(their metrics reach the last epoch), so the runner resumes with the runs not yet finished.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from emsiam.runs import LOCK

#: What an archived run leaves out: the resume state (checkpoints, banks and their journals),
#: the lock, and temporary files of an interrupted write.
SKIP_DIRS = frozenset({"checkpoints"})
SKIP_SUFFIXES = (".pt", ".h5", ".hdf5", ".npy", ".tmp")
#: A file larger than this is left out as well (and named), so that nothing bulky is committed.
MAX_FILE_BYTES = 4 << 20


def _kept(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    if rel.parts[0] in SKIP_DIRS or path.name == LOCK or ".stale-" in path.name:
        return False
    return not any(part.endswith(SKIP_SUFFIXES) or ".journal" in part for part in rel.parts)


def archive_run(run_dir: str | Path, dest: str | Path) -> list[str]:
    """Copy the small files of ``run_dir`` to ``dest`` (replaced as a whole: the copy is made
    beside it and renamed, so ``dest`` never holds half a run). Returns the files left out
    for their size."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory {run_dir}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = dest.with_name(f".{dest.name}.partial"), dest.with_name(f".{dest.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    too_big = []
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or not _kept(path, run_dir):
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            too_big.append(str(path.relative_to(run_dir)))
            continue
        target = tmp / path.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    tmp.mkdir(exist_ok=True)  # a run with nothing to keep still gets its (empty) folder
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return too_big


def restore(archive_study: str | Path, out_study: str | Path, say: Callable[..., None] = print) -> list[str]:
    """Copy each archived run of ``archive_study`` that ``out_study`` does not have at all to
    ``out_study`` (never over an existing run directory, finished or not). Returns their names."""
    archive_study, out_study = Path(archive_study), Path(out_study)
    if not archive_study.is_dir():
        return []
    restored = []
    for src in sorted(p for p in archive_study.iterdir() if p.is_dir() and not p.name.startswith(".")):
        dest = out_study / src.name
        if dest.exists():
            continue
        out_study.mkdir(parents=True, exist_ok=True)
        tmp = out_study / f".{src.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        tmp.rename(dest)
        restored.append(src.name)
    if restored:
        say(f"restored {len(restored)} finished runs from {archive_study}: {', '.join(restored)}")
    return restored
