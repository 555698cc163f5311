"""The ``imagefolder`` source: ``root/{train,test}/<class>/*`` images, or a tar archive of that layout.

Images of any size or mode are decoded once (:mod:`.decode`) into a cached
uint8 array (:mod:`.cache`) and loaded from the cache afterwards. An archive
is streamed once, without extraction, and both of its splits are cached.
An image's key is ``<split>/<class>/<path>`` relative to the root (or to the
archive's top folder): keys sorted by (class, key) give the stored order, and
the class part gives the label.
"""

from __future__ import annotations

import os
import tarfile
import warnings
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .cache import Converted, cache_file, default_cache_dir, read_cache, write_cache
from .decode import decode_all
from .imageset import SPLITS, DataError, ImageSet

__all__ = ["IMAGE_SUFFIXES", "check_imagefolder", "load_imagefolder"]

#: Image file suffixes read by the imagefolder source (case-insensitive).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"}
)
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_SUFFIXES


def _folder_classes(path: Path) -> list[str]:
    """Sorted union of the class folders of ``train/`` and ``test/`` (one label space)."""
    names = {
        e.name
        for split in SPLITS
        for e in os.scandir(path / split)
        if e.is_dir() and not e.name.startswith(".")
    }
    return sorted(names)


def check_imagefolder(path: Path) -> None:
    if not path.exists():
        raise DataError(
            f"Image folder '{path}' does not exist. Set data.root=... to a folder with "
            "train/<class>/ and test/<class>/ images, or to a .tar/.tar.gz archive of that layout."
        )
    if path.is_dir():
        missing = [s for s in SPLITS if not (path / s).is_dir()]
        if missing:
            raise DataError(
                f"Image folder '{path}' has no {' or '.join(s + '/' for s in missing)} subfolder. "
                "Set data.root=... to a folder holding train/<class>/ and test/<class>/ images."
            )
        if not _folder_classes(path):
            raise DataError(f"Image folder '{path}' has no class subfolders under train/ or test/.")
        return
    if not _is_archive(path):
        raise DataError(
            f"data.root='{path}' is a file but not a .tar/.tar.gz archive. Set data.root=... "
            "to a folder or archive holding train/<class>/ and test/<class>/ images."
        )
    st = path.stat()
    _scan_archive(str(path.resolve()), st.st_size, st.st_mtime_ns)


def _iter_folder(path: Path, split: str, classes: Sequence[str]) -> list[tuple[str, Path]]:
    """``(key, file)`` for every image file under ``path/split/<class>/`` (recursively)."""
    found = []
    for cls in classes:
        for dirpath, dirnames, filenames in os.walk(path / split / cls):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [Path(dirpath) / f for f in filenames if _is_image_name(f)]
    return sorted((f.relative_to(path).as_posix(), f) for f in found)


def _archive_members(tf: tarfile.TarFile, read: bool) -> Iterator[tuple[str, str, str, bytes | None]]:
    """``(split, class, key, data)`` for members under ``[<top>/]<split>/<class>/``.

    The first such member fixes the optional top folder. ``key`` is empty for
    entries that only show a class exists (its folder, non-image files);
    ``data`` holds an image's bytes when ``read``.
    """
    prefix: str | None = None
    for m in tf:
        name = m.name
        while name.startswith("./"):
            name = name[2:]
        parts = name.split("/")
        depth = 0 if parts[0] in SPLITS else 1
        if len(parts) < depth + 2 or parts[depth] not in SPLITS:
            continue
        split, cls, rest = parts[depth], parts[depth + 1], parts[depth + 2 :]
        if not cls or cls.startswith("."):
            continue
        top = "/".join(parts[:depth])
        if prefix is None:
            prefix = top
        elif top != prefix:
            continue
        if m.isfile() and rest and _is_image_name(name) and not any(p.startswith(".") for p in rest):
            f = tf.extractfile(m) if read else None
            yield split, cls, "/".join(parts[depth:]), f.read() if f is not None else None
        elif m.isdir() or rest:
            yield split, cls, "", None


def _layout_error(path: Path | str) -> DataError:
    return DataError(
        f"Archive '{path}' (data.root) does not hold train/<class>/ and test/<class>/ folders "
        "(at its top level or inside one top folder)."
    )


@lru_cache(maxsize=16)
def _scan_archive(path: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    """Check an archive's layout once per process (keyed by its size and mtime); return its classes."""
    splits, classes = set(), set()
    try:
        with tarfile.open(path, "r|*") as tf:
            for split, cls, _, _ in _archive_members(tf, read=False):
                splits.add(split)
                classes.add(cls)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"Cannot read archive '{path}' (data.root): {err}") from err
    if splits != set(SPLITS):
        raise _layout_error(path)
    return tuple(sorted(classes))


def _assemble(
    decoded: list[tuple[str, np.ndarray]], failed: list[tuple[str, str]], split: str, classes: Sequence[str]
) -> Converted:
    """Order one split's images by (class, key) and attach labels."""
    index = {c: i for i, c in enumerate(classes)}

    def label(key: str) -> int:
        return index[key.split("/", 2)[1]]

    decoded = sorted(decoded, key=lambda kv: (label(kv[0]), kv[0]))
    images = np.stack([a for _, a in decoded]) if decoded else np.empty((0, 3, 0, 0), np.uint8)
    labels = np.asarray([label(k) for k, _ in decoded], dtype=np.int64)
    skipped = [f"{k} ({err})" for k, err in failed if k.startswith(split + "/")]
    return Converted(images, labels, skipped)


def _root_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(_ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "images"


def _convert_archive(path: Path, size: int | None, desc: str) -> tuple[dict[str, Converted], list[str]]:
    """Decode both splits of an archive in one streaming pass (no extraction to disk)."""
    splits: set[str] = set()
    classes: set[str] = set()

    def items() -> Iterator[tuple[str, bytes]]:
        with tarfile.open(path, "r|*") as tf:
            for split, cls, key, data in _archive_members(tf, read=True):
                splits.add(split)
                classes.add(cls)
                if data is not None:
                    yield key, data

    try:
        decoded, failed = decode_all(items(), size, None, desc)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"Cannot read archive '{path}' (data.root): {err}") from err
    if splits != set(SPLITS):
        raise _layout_error(path)
    names = sorted(classes)
    return {s: _assemble(decoded[s], failed, s, names) for s in SPLITS}, names


def load_imagefolder(path: Path, split: str, size: int | None, cache_dir: str | None) -> ImageSet:
    """Load a split from the cache, converting (and caching) it first if needed.

    A folder is converted one split at a time; an archive is streamed once
    and both of its splits are cached.
    """
    if path.is_dir() or not _is_archive(path):
        check_imagefolder(path)  # archives are checked while they are converted
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    stem = _root_stem(path)
    name = f"{stem}/{split}"
    where = f"'{path}' ({split})"
    classes = _folder_classes(path) if path.is_dir() else []
    files = _iter_folder(path, split, classes) if path.is_dir() else []
    target = cache_file(cache, stem, path, split, size, files, classes)

    cached = read_cache(target) if target.is_file() else None
    if cached is not None:
        conv, classes = cached
    else:
        desc = f"Converting {name}"
        if path.is_dir():
            decoded, failed = decode_all(((k, f.read_bytes()) for k, f in files), size, len(files), desc)
            converted = {split: _assemble(decoded[split], failed, split, classes)}
        else:
            converted, classes = _convert_archive(path, size, f"Converting {stem}")
        for s, c in converted.items():
            if len(c.images):
                write_cache(cache_file(cache, stem, path, s, size, files, classes), c, classes)
        conv = converted[split]
        if len(conv.images) == 0:
            detail = f" ({len(conv.skipped)} unreadable, e.g. {conv.skipped[0]})" if conv.skipped else ""
            raise DataError(f"No readable images under {where}{detail}. Check data.root.")
    if conv.skipped:
        shown = "; ".join(conv.skipped[:5]) + ("; ..." if len(conv.skipped) > 5 else "")
        warnings.warn(f"Skipped {len(conv.skipped)} unreadable image(s) in {where}: {shown}", stacklevel=3)
    return ImageSet(torch.from_numpy(conv.images), torch.from_numpy(conv.labels), classes, name)
