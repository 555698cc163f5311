"""A memory-mapped uint8 image store on disk, for training sets larger than memory.

The in-memory path keeps a whole split as one uint8 tensor ``(N, 3, H, W)`` on
the training device. ``data.store=memmap`` instead writes the split once to a
folder on disk and trains from there::

    <store>/images.npy   uint8 (N, 3, H, W), a plain .npy (read through numpy's memmap)
    <store>/labels.npy   int64 (N,)
    <store>/meta.json    classes, name, shape, format version

:func:`open_store` returns an :class:`~emsiam.data.ImageSet` whose ``images`` is a
:class:`MemmapImages`: it has the parts of the tensor interface that training and
evaluation use (``index_select(0, idx)``, slicing, ``shape``, ``device``,
``len``, ``to(device)``), so the loop, the variants and evaluation run on it
unchanged. Each gather reads only the rows asked for (the OS page cache holds
whatever fits), into pinned host memory when CUDA is available, and copies them
to the target device with ``non_blocking=True``. Augmentation seeds are per
sample, so views are the same whichever storage serves the rows: a run with
``data.store=memmap`` reproduces the ``data.store=memory`` run exactly.

:func:`prefetch` overlaps the host-side gather of the next batch with the
current step (one background thread); the training loop does not use it yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import DataError, ImageSet

__all__ = ["MemmapImages", "load_split_store", "open_store", "prefetch", "store_key", "write_store"]

#: Bump when the store layout changes, so stale stores are not reused.
STORE_VERSION = 1
_IMAGES, _LABELS, _META = "images.npy", "labels.npy", "meta.json"


# ---------------------------------------------------------------------------
# Writing and opening
# ---------------------------------------------------------------------------


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
    first write goes through :func:`~emsiam.data.load_split`, so the split
    must fit host memory once; a set that never does is written in chunks
    with :func:`write_store`.
    """
    from .data import default_cache_dir, load_split

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


# ---------------------------------------------------------------------------
# The images object
# ---------------------------------------------------------------------------


class MemmapImages:
    """uint8 ``(N, 3, H, W)`` images in a memory-mapped file, served as tensors on ``device``.

    Stands in for the in-memory images tensor of an :class:`ImageSet`:
    ``index_select(0, idx)`` and ``images[a:b]`` return ordinary tensors on
    ``device`` holding only those rows; ``to(device)`` returns the same store
    serving another device. Gathers go through pinned host memory when the
    device is CUDA (the copy is issued with ``non_blocking=True``; PyTorch's
    pinned allocator keeps each buffer alive until its copy has completed).
    """

    dtype = torch.uint8
    ndim = 4

    def __init__(self, array: np.ndarray, device: torch.device | str = "cpu") -> None:
        self.array = array
        self._device = torch.device(device)
        if self._device.type == "cuda" and self._device.index is None:
            self._device = torch.device("cuda", torch.cuda.current_device())

    # --- tensor-like attributes -------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.array.shape)

    @property
    def device(self) -> torch.device:
        """Where gathered batches are placed."""
        return self._device

    def __len__(self) -> int:
        return self.array.shape[0]

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return 4

    def contiguous(self, memory_format: torch.memory_format = torch.contiguous_format) -> MemmapImages:
        return self  # rows are stored contiguously; gathered batches are contiguous tensors

    def to(self, device: torch.device | str, *args: Any, **kwargs: Any) -> MemmapImages:
        """This store, serving ``device`` (the file mapping is shared, nothing is copied)."""
        if args or kwargs:
            raise TypeError("MemmapImages.to takes only a device")
        return MemmapImages(self.array, device)

    def __repr__(self) -> str:
        return f"MemmapImages(shape={tuple(self.shape)}, file={getattr(self.array, 'filename', None)}, device={self.device})"

    # --- reads --------------------------------------------------------------------------------
    def gather_host(self, idx: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        """Rows ``idx`` as a CPU uint8 tensor (pinned when the device is CUDA); no device copy."""
        ix = np.asarray(torch.as_tensor(idx).detach().cpu().numpy() if not isinstance(idx, np.ndarray) else idx)
        if ix.ndim != 1 or not np.issubdtype(ix.dtype, np.integer):
            raise IndexError(f"index_select: expected a 1-D integer index, got {ix.dtype} {ix.shape}")
        n = len(self)
        if len(ix) and (int(ix.min()) < 0 or int(ix.max()) >= n):
            raise IndexError(f"index_select: index out of range for {n} images")
        out = torch.empty((len(ix), *self.array.shape[1:]), dtype=torch.uint8,
                          pin_memory=self._device.type == "cuda")
        np.take(self.array, ix, axis=0, out=out.numpy())
        return out

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        if self._device.type == "cpu":
            return host
        return host.to(self._device, non_blocking=True)

    def index_select(self, dim: int, idx: torch.Tensor) -> torch.Tensor:
        """``images.index_select(0, idx)`` of the in-memory tensor, read from the file."""
        if dim != 0:
            raise ValueError("MemmapImages.index_select supports dim=0 only")
        return self._to_device(self.gather_host(idx))

    def __getitem__(self, key: Any) -> torch.Tensor:
        """Rows by an int, a slice (evaluation's ``images[a:b]``) or an index tensor."""
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                rows = self.array[start:stop]
                pin = self._device.type == "cuda"
                host = torch.empty(rows.shape, dtype=torch.uint8, pin_memory=pin)
                host.numpy()[...] = rows
                return self._to_device(host)
            return self.index_select(0, torch.arange(start, stop, step))
        if isinstance(key, int):
            k = key + len(self) if key < 0 else key
            if not 0 <= k < len(self):
                raise IndexError(f"index {key} out of range for {len(self)} images")
            return self[k : k + 1][0]
        return self.index_select(0, torch.as_tensor(key).reshape(-1))


# ---------------------------------------------------------------------------
# Prefetch
# ---------------------------------------------------------------------------


def prefetch(
    images: MemmapImages | torch.Tensor, indices: Iterable[torch.Tensor], depth: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(idx, images.index_select(0, idx))`` for each ``idx``, gathering ahead.

    With a :class:`MemmapImages`, one background thread reads the next
    ``depth`` batches' rows from the file into (pinned) host memory while the
    caller works on the current one (numpy's gather releases the GIL); the
    host-to-device copy is issued, ``non_blocking``, when a batch is handed
    out. With an ordinary tensor it is a plain loop. The batches are the same
    as without prefetching, in the same order. A training loop would use it as
    ``for idx, x in prefetch(s.train.images, group): ...``.
    """
    if not isinstance(images, MemmapImages):
        for idx in indices:
            yield idx, images.index_select(0, idx)
        return
    it = iter(indices)
    pending: list[tuple[torch.Tensor, Future]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="emsiam-prefetch") as pool:
        def submit() -> bool:
            idx = next(it, None)
            if idx is None:
                return False
            pending.append((idx, pool.submit(images.gather_host, idx.detach().cpu())))
            return True

        for _ in range(max(depth, 1)):
            if not submit():
                break
        while pending:
            idx, fut = pending.pop(0)
            submit()  # the next read runs while the caller uses this batch
            yield idx, images._to_device(fut.result())


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _chain(head: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield head
    yield from rest

