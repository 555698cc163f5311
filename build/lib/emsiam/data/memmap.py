"""Images in a memory-mapped ``.npy`` file, served as tensors row by row.

:class:`MemmapImages` stands in for the images tensor of an
:class:`~.imageset.ImageSet` (``index_select(0, idx)``, slicing, ``shape``,
``to(device)``): each gather reads only the rows asked for, through pinned
memory on CUDA. :func:`prefetch` reads the next batch on a background thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

__all__ = ["MemmapImages", "prefetch"]


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
