"""A uint8 image store on disk, for training sets larger than memory (``data.store=memmap``).

A split is written once to a folder (``images.npy`` uint8 ``(N, 3, H, W)``,
``labels.npy``, ``meta.json``) and opened as an :class:`~.imageset.ImageSet`
whose images are :class:`~.memmap.MemmapImages`. Augmentation seeds are per
sample, so a run from the store equals the in-memory run. See docs/data.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import default_cache_dir
from .imageset import DataError, ImageSet
from .memmap import MemmapImages
from .sources import load_split

__all__ = ["STORE_VERSION", "load_split_store", "open_store", "store_key", "write_store"]

#: Bump when the store layout changes, so stale stores are not reused.
STORE_VERSION = 1
_IMAGES, _LABELS, _META = "images.npy", "labels.npy", "meta.json"


def write_store(
    data: ImageSet | np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor],
    path: str | os.PathLike,
    *,
    labels: np.ndarray | torch.Tensor | None = None,
    classes: list[str] | None = None,
    name: str | None = None,
    chunk_rows: int = 8192,
) -> Path:
    """Write images and labels as a store folder at ``path``; return the path.

    ``data`` is an :class:`ImageSet`, a uint8 ``(N, 3, H, W)`` array or tensor
    (it may itself be a memmap: it is copied ``chunk_rows`` rows at a time), or
    an iterable of such chunks, written in order (then ``labels`` sets N). For
    anything but an ImageSet, ``labels`` (int, length N) is required and
    ``classes`` defaults to ``str(0..max)``. The folder is written under a
    temporary name and renamed into place, so a half-written store is never
    opened; an existing store at ``path`` is replaced.
    """
    if isinstance(data, ImageSet):
        labels, classes, name = data.labels, data.classes, name or data.name
        data = data.images
    if labels is None:
        raise ValueError("write_store: labels are required unless data is an ImageSet")
    labels_np = np.ascontiguousarray(_numpy(labels).astype(np.int64, copy=False))
    n = len(labels_np)
    if classes is None:
        classes = [str(c) for c in range(int(labels_np.max()) + 1 if n else 0)]
    chunks: Iterable[Any]
    if isinstance(data, (np.ndarray, torch.Tensor)):
        if tuple(data.shape[:1]) != (n,):
            raise ValueError(f"write_store: {n} labels for {data.shape[0]} images")
        chunks = (data[i : i + chunk_rows] for i in range(0, n, chunk_rows))
        first_shape = tuple(data.shape)
    else:
        it = iter(data)
        head = next(it, None)
        if head is None:
            raise ValueError("write_store: no images")
        chunks = _chain(head, it)
        first_shape = (n, *tuple(head.shape[1:]))
    if len(first_shape) != 4 or first_shape[1] != 3:
        raise DataError(f"write_store: images must be (N, 3, H, W), got {first_shape}")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent))
    try:
        out = np.lib.format.open_memmap(tmp / _IMAGES, mode="w+", dtype=np.uint8, shape=first_shape)
        row = 0
        for chunk in chunks:
            c = _numpy(chunk)
            if c.dtype != np.uint8 or tuple(c.shape[1:]) != first_shape[1:]:
                raise DataError(f"write_store: chunk of {c.dtype} {tuple(c.shape)}, expected uint8 "
                                f"(*, {', '.join(map(str, first_shape[1:]))})")
            if row + len(c) > n:
                raise ValueError(f"write_store: more images than the {n} labels")
            out[row : row + len(c)] = c
            row += len(c)
        if row != n:
            raise ValueError(f"write_store: {row} images for {n} labels")
        out.flush()
        del out
        np.save(tmp / _LABELS, labels_np)
        meta = {"version": STORE_VERSION, "shape": list(first_shape), "classes": list(classes),
                "name": name or path.name}
        (tmp / _META).write_text(json.dumps(meta) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def open_store(path: str | os.PathLike, device: torch.device | str = "cpu") -> ImageSet:
    """The store at ``path`` as an :class:`ImageSet`: memory-mapped images, labels on ``device``."""
    path = Path(path)
    try:
        meta = json.loads((path / _META).read_text())
        if meta.get("version") != STORE_VERSION:
            raise ValueError(f"format version {meta.get('version')}, expected {STORE_VERSION}")
        array = np.load(path / _IMAGES, mmap_mode="r")
        labels = np.load(path / _LABELS)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"Cannot open the image store '{path}' ({err}); delete it to rebuild "
                        "(data.store_dir).") from err
    if array.dtype != np.uint8 or list(array.shape) != meta["shape"]:
        raise DataError(f"Image store '{path}': images are {array.dtype} {array.shape}, "
                        f"meta says uint8 {meta['shape']}; delete it to rebuild.")
    images = MemmapImages(array, device)
    return ImageSet(images, torch.from_numpy(labels).to(images.device), meta["classes"], meta["name"])  # type: ignore[arg-type]


def load_split_store(cfg: Any, split: str, load_kw: dict[str, Any], device: torch.device | str) -> ImageSet:
    """One split of ``cfg`` (a DataConfig) from its store, writing the store first if it is missing.

    The store sits in ``data.store_dir`` (default: the cache dir) under a name
    hashed from the fields that determine the split's contents (source, root
    and the root's size and modification time, image size, subset size and
    seed). Once written, the source is not read again: only the rows each
    batch needs are read from disk. Delete the folder to rebuild it. The
    first write goes through :func:`~.sources.load_split`, so the split
    must fit host memory once; a set that never does is written in chunks
    with :func:`write_store`.
    """
    root = None if cfg.root is None else Path(os.path.expanduser(str(cfg.root)))
    stat = root.stat() if root is not None and root.exists() else None
    n = cfg.n_train if split == "train" else cfg.n_test
    key = store_key(source=cfg.source, split=split, root=None if root is None else str(root.resolve()),
                    root_stat=None if stat is None else [stat.st_size, stat.st_mtime_ns],
                    image_size=cfg.image_size, n=n, subset_seed=cfg.subset_seed)
    base = Path(cfg.store_dir or cfg.cache_dir or default_cache_dir()).expanduser()
    path = base / "stores" / f"{cfg.source}-{split}-{key}"
    if not (path / _META).is_file():
        data = load_split(cfg.source, split, **load_kw)
        write_store(data, path)
        del data
    return open_store(path, device)


def store_key(**parts: Any) -> str:
    """A short stable hash of ``parts`` (the config fields that determine a split's contents)."""
    text = json.dumps({"version": STORE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _chain(head: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield head
    yield from rest
