"""The in-memory image set and the epoch batch order.

Every source is converted once into an :class:`ImageSet`: one contiguous uint8
tensor ``(N, 3, H, W)`` plus int64 labels. :class:`Batches` gathers
``(idx, images, labels)`` batches from it by index, on CPU or GPU, with no
per-image Python work and no DataLoader; the order of an epoch is a pure
function of ``(seed, epoch)``. Design notes: docs/data.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["SPLITS", "Batches", "DataError", "ImageSet", "derive_seed", "resize_images"]

SPLITS = ("train", "test")


class DataError(ValueError):
    """A dataset is missing, malformed or misconfigured; the message says how to fix it."""


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (stable across runs and platforms)."""
    text = "|".join(str(int(p)) if not isinstance(p, str) else p for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass(repr=False, eq=False)
class ImageSet:
    """A labelled image set held in memory as one tensor.

    ``images`` is uint8 ``(N, 3, H, W)`` and contiguous (grayscale sources are
    replicated to RGB at load time); ``labels`` is int64 ``(N,)`` indexing
    ``classes``; ``name`` is a short tag such as ``"cifar10/train"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise DataError(
                f"{self.name}: images must be uint8 (N, 3, H, W), "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"{self.name}: labels must be int64 ({self.images.shape[0]},), "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        self.images = self.images.contiguous()
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        n, _, h, w = self.images.shape
        return (
            f"ImageSet({self.name!r}, n={n}, size={h}x{w}, classes={len(self.classes)}, "
            f"device={self.images.device})"
        )

    @property
    def device(self) -> torch.device:
        """Device holding the images."""
        return self.images.device

    def to(self, device: torch.device | str) -> ImageSet:
        """The same set with images and labels on ``device`` (tensors are shared if already there)."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.classes, self.name)

    def subset(self, idx: torch.Tensor) -> ImageSet:
        """Return the images at ``idx`` (int64 indices or a boolean mask), in that order."""
        idx = torch.as_tensor(idx, device=self.images.device)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().squeeze(1)
        idx = idx.long()
        return ImageSet(
            self.images.index_select(0, idx),
            self.labels.index_select(0, idx),
            self.classes,
            self.name,
        )


class Batches:
    """Iterate ``(idx, images, labels)`` batches over an :class:`ImageSet`.

    The set should already be on the target device; batches are gathers from
    its tensors. With ``shuffle`` the order of epoch ``e`` is a pure function
    of ``(seed, e)``, so a resumed run sees exactly the batches it would have
    seen without RNG state to restore.
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and len(data) < batch_size:
            raise DataError(
                f"batch_size={batch_size} exceeds the {len(data)} images of {data.name}, "
                "so drop_last=True would yield no batch; lower the batch size (optim.batch_size) "
                "or use more images (data.n_train)."
            )
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last

    def __len__(self) -> int:
        n, b = len(self.data), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def indices(self, epoch: int) -> torch.Tensor:
        """The int64 order of dataset indices used by :meth:`epoch` (on the data device)."""
        n = len(self.data)
        if self.shuffle:
            g = torch.Generator(device="cpu").manual_seed(derive_seed(self.seed, "batches", epoch))
            order = torch.randperm(n, generator=g, device="cpu")
        else:
            order = torch.arange(n)
        return order.to(self.data.images.device)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(idx, images, labels)`` for every batch of ``epoch``."""
        order = self.indices(epoch)
        images, labels = self.data.images, self.data.labels
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield idx, images.index_select(0, idx), labels.index_select(0, idx)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Same as ``epoch(0)``."""
        return self.epoch(0)


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize uint8 ``(N, 3, H, W)`` images to ``size x size``.

    The shorter side is resized to ``size`` (bilinear, antialiased) and the
    centre is cropped, in chunks to bound memory.
    """
    n, c, h, w = images.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    out = torch.empty((n, c, size, size), dtype=torch.uint8, device=images.device)
    for i in range(0, n, chunk):
        x = images[i : i + chunk].float()
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        x = x[:, :, top : top + size, left : left + size]
        out[i : i + chunk] = x.round().clamp_(0, 255).to(torch.uint8)
    return out
