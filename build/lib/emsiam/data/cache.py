"""The imagefolder conversion cache: decoded splits saved as ``.npz`` files.

A cache file is named by a hash of its source (the file listing of a folder,
or an archive's path, size and modification time), the split and the image
size, so a changed source is converted again. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Converted", "cache_file", "default_cache_dir", "read_cache", "write_cache"]

#: Bump when the imagefolder conversion changes, so stale caches are not reused.
_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$EMSIAM_CACHE`` if set, else ``~/.cache/emsiam``."""
    env = os.environ.get("EMSIAM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emsiam"


@dataclass
class Converted:
    """Decoded images of one split, in stored order."""

    images: np.ndarray  # uint8 (N, 3, H, W)
    labels: np.ndarray  # int64 (N,)
    skipped: list[str]  # "key (error)" of unreadable files


def cache_file(
    cache: Path,
    stem: str,
    path: Path,
    split: str,
    size: int | None,
    files: Sequence[tuple[str, Path]],
    classes: Sequence[str],
) -> Path:
    """Cache file named by a hash of the source: the file listing (folders) or the archive's stat."""
    h = hashlib.sha256(f"emsiam-imagefolder v{_CACHE_VERSION}|{split}|{size}\n".encode())
    if path.is_dir():
        h.update(("\0".join(classes) + "\n").encode())
        for key, f in files:
            st = f.stat()
            h.update(f"{key}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        st = path.stat()
        h.update(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return cache / f"{stem}-{split}-{size or 'native'}-{h.hexdigest()[:20]}.npz"


def read_cache(path: Path) -> tuple[Converted, list[str]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            conv = Converted(z["images"], z["labels"].astype(np.int64), [str(s) for s in z["skipped"]])
            classes = [str(c) for c in z["classes"]]
        if conv.images.dtype != np.uint8 or conv.images.ndim != 4 or conv.labels.shape != (len(conv.images),):
            raise ValueError("unexpected array shapes")
        return conv, classes
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(f"Ignoring unreadable cache '{path}' ({err}); converting again.", stacklevel=4)
        return None


def write_cache(path: Path, conv: Converted, classes: Sequence[str]) -> None:
    """Write an npz atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                images=conv.images,
                labels=conv.labels,
                classes=np.array(list(classes), dtype=np.str_),
                skipped=np.array(conv.skipped, dtype=np.str_),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
