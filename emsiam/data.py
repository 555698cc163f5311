"""Datasets held as one uint8 tensor, and a batch iterator over them.

Every source is converted once into an :class:`ImageSet`: a contiguous uint8
tensor of shape ``(N, 3, H, W)`` plus int64 labels. Training then gathers
batches straight from that tensor (on CPU or GPU) with :class:`Batches`; there
is no per-image Python work, no PIL and no DataLoader in the training loop.

Sources (``SOURCES``):

``synthetic``
    Procedural shapes (the class) over random colours, backgrounds, positions
    and scales (nuisances). Built in, seeded, needs no files.
``cifar10`` / ``cifar100`` / ``stl10``
    Read through ``torchvision.datasets`` from ``root`` (downloaded only when
    ``download=True``).
``imagefolder``
    ``root/train/<class>/*`` and ``root/test/<class>/*`` (any size or mode),
    or a ``.tar``/``.tar.gz`` archive of that layout. Decoded once with Pillow
    into an ``.npz`` cache and loaded from there afterwards.
``npz``
    ``train.npz``/``test.npz`` holding uint8 ``images`` (NHWC or NHW) and
    integer ``labels`` (and optionally a unicode ``classes`` array).

Call :func:`check_source` before any compute: it raises :class:`DataError`
with a message that names the missing path and the config option to fix.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import math
import multiprocessing as mp
import os
import sys
import tarfile
import tempfile
import warnings
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

from .progress import progress_bar

__all__ = [
    "SOURCES",
    "SPLITS",
    "SYNTHETIC_CLASSES",
    "Batches",
    "DataError",
    "ImageSet",
    "check_source",
    "default_cache_dir",
    "load_split",
    "make_synthetic",
]

SOURCES = ("synthetic", "cifar10", "cifar100", "stl10", "imagefolder", "npz")
SPLITS = ("train", "test")

#: Bump when the imagefolder conversion changes, so stale caches are not reused.
_CACHE_VERSION = 1
#: Image file suffixes read by the imagefolder source (case-insensitive).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"}
)
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


class DataError(ValueError):
    """A dataset is missing, malformed or misconfigured; the message says how to fix it."""


# ---------------------------------------------------------------------------
# ImageSet
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


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
            g = torch.Generator(device="cpu").manual_seed(_derive_seed(self.seed, "batches", epoch))
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


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$EMSIAM_CACHE`` if set, else ``~/.cache/emsiam``."""
    env = os.environ.get("EMSIAM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emsiam"


def load_split(
    source: str,
    split: str,
    *,
    root: str | None,
    image_size: int | None = None,
    download: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    subset_seed: int = 0,
    cache_dir: str | None = None,
    seed: int = 0,
) -> ImageSet:
    """Load one split (``'train'`` or ``'test'``) of ``source`` as an :class:`ImageSet` on CPU.

    ``n_train``/``n_test`` pick a random class-stratified subset of that size
    (seeded by ``subset_seed``, never a prefix); for ``synthetic`` they set how
    many images are generated. ``image_size`` resizes images that are not
    already square of that size (shorter side resize, antialiased, then
    centre crop; synthetic images are rendered at that size). ``seed`` seeds
    the synthetic generator only; train and test draw from distinct streams.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"data.image_size must be a positive integer, got {image_size!r}")
    n = n_train if split == "train" else n_test
    if n is not None and n < 1:
        raise DataError(f"data.n_{split} must be a positive integer, got {n}")

    if source == "synthetic":
        default_n = 10_000 if split == "train" else 2_000
        return make_synthetic(
            n if n is not None else default_n,
            image_size=image_size or 32,
            seed=_derive_seed(seed, "synthetic", split),
            name=f"synthetic/{split}",
        )

    if source == "imagefolder":
        data = _load_imagefolder(_require_root(source, root), split, image_size, cache_dir)
    else:
        check_source(source, root, download)
        assert root is not None
        if source == "npz":
            data = _load_npz(root, split)
        else:
            data = _load_torchvision(source, root, split, download)
    if n is not None:
        data = _stratified_subset(data, n, _derive_seed(subset_seed, "subset", split), split)
    if image_size is not None and tuple(data.images.shape[-2:]) != (image_size, image_size):
        data = ImageSet(resize_images(data.images, image_size), data.labels, data.classes, data.name)
    return data


def check_source(source: str, root: str | None, download: bool = False) -> None:
    """Check that ``source`` can be loaded from ``root``; raise :class:`DataError` if not.

    Cheap (no decoding), meant to run before any compute. With ``download``
    the torchvision sources only need ``root`` to be set.
    """
    if source not in SOURCES:
        raise DataError(
            f"Unknown data source {source!r} (data.source); valid sources: {', '.join(SOURCES)}."
        )
    if source == "synthetic":
        return
    path = _require_root(source, root, download)
    if source in _TORCHVISION:
        _check_torchvision(source, path, download)
    elif source == "imagefolder":
        _check_imagefolder(path)
    else:
        _npz_paths(path)


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (stable across runs and platforms)."""
    text = "|".join(str(int(p)) if not isinstance(p, str) else p for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _require_root(source: str, root: str | None, download: bool = False) -> Path:
    if root is None or str(root) == "":
        what = {
            "imagefolder": "a folder with train/<class>/ and test/<class>/ images, "
            "or a .tar/.tar.gz archive of that layout",
            "npz": "a folder holding train.npz and test.npz, or a path prefix P for "
            "Ptrain.npz and Ptest.npz",
        }.get(source, "the folder that holds (or will receive) the dataset")
        hint = " (the folder to download into)" if download else ""
        raise DataError(
            f"data.source={source} needs data.root{hint}: {what}. "
            "Set data.root=..., or use data.source=synthetic (built in, no files)."
        )
    return Path(os.path.expanduser(str(root)))


def _stratified_subset(data: ImageSet, n: int, seed: int, split: str) -> ImageSet:
    """A random subset of ``n`` images with class proportions kept (largest remainder)."""
    total = len(data)
    if n > total:
        raise DataError(f"data.n_{split}={n} exceeds the {total} images of {data.name}.")
    if n == total:
        return data
    g = torch.Generator().manual_seed(seed)
    labels = data.labels.cpu()
    perm = torch.randperm(total, generator=g)
    counts = torch.bincount(labels, minlength=len(data.classes)).double()
    quota = counts * (n / total)
    take = quota.floor().long()
    short = n - int(take.sum())
    if short > 0:  # hand the remaining slots to the largest fractional parts
        take[torch.argsort(quota - take, descending=True, stable=True)[:short]] += 1
    shuffled = labels[perm]
    picks = [perm[shuffled == c][: int(k)] for c, k in enumerate(take.tolist()) if k > 0]
    idx = torch.sort(torch.cat(picks)).values
    return data.subset(idx.to(data.images.device))


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


# ---------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------

#: Class names of the synthetic source (label ``i`` is ``SYNTHETIC_CLASSES[i]``).
SYNTHETIC_CLASSES = (
    "disc", "square", "triangle", "plus", "ring", "hbar", "vbar", "diamond", "xcross", "ell",
)  # fmt: skip


def _box(px: torch.Tensor, py: torch.Tensor, bx: float, by: float) -> torch.Tensor:
    """Signed distance to an axis-aligned box with half-sizes ``(bx, by)``."""
    qx, qy = px.abs() - bx, py.abs() - by
    outside = torch.hypot(qx.clamp(min=0), qy.clamp(min=0))
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _rot45(px: torch.Tensor, py: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates rotated by 45 degrees."""
    s = math.sqrt(0.5)
    return (px + py) * s, (py - px) * s


def _triangle(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Signed distance to an upright equilateral triangle with circumradius 1 (y points down)."""
    k = math.sqrt(3.0)
    x = px.abs() - k / 2  # half the side length
    y = 0.5 - py  # flip so the apex points up in image coordinates
    fold = x + k * y > 0
    x, y = torch.where(fold, (x - k * y) / 2, x), torch.where(fold, (-k * x - y) / 2, y)
    x = x - x.clamp(-k, 0)
    return -torch.hypot(x, y) * torch.sign(y)


def _shape_sdf(label: int, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Signed distance (local units, outer radius about 1) of synthetic class ``label``."""
    name = SYNTHETIC_CLASSES[label]
    if name == "disc":
        return torch.hypot(px, py) - 0.9
    if name == "square":
        return _box(px, py, 0.75, 0.75)
    if name == "triangle":
        return _triangle(px, py - 0.25)  # centre the bounding box
    if name == "plus":
        return torch.minimum(_box(px, py, 1.0, 0.28), _box(px, py, 0.28, 1.0))
    if name == "ring":
        return (torch.hypot(px, py) - 0.72).abs() - 0.24
    if name == "hbar":
        return _box(px, py, 1.0, 0.32)
    if name == "vbar":
        return _box(px, py, 0.32, 1.0)
    if name == "diamond":
        rx, ry = _rot45(px, py)
        return _box(rx, ry, 0.72, 0.72)
    if name == "xcross":
        rx, ry = _rot45(px, py)
        return torch.minimum(_box(rx, ry, 1.0, 0.26), _box(rx, ry, 0.26, 1.0))
    if name == "ell":
        vertical = _box(px + 0.5, py, 0.3, 0.85)
        horizontal = _box(px, py - 0.55, 0.8, 0.3)
        return torch.minimum(vertical, horizontal)
    raise AssertionError(name)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV maps ``(n, H, W)`` in [0, 1] to RGB ``(n, 3, H, W)``."""
    k = (torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


def _smooth_noise(n: int, size: int, cells: int, g: torch.Generator) -> torch.Tensor:
    """Low-frequency noise ``(n, size, size)`` of roughly unit scale."""
    coarse = torch.randn(n, 1, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]


#: Layout of the synthetic images: a GRID x GRID jittered lattice of instances.
SYNTHETIC_GRID = 3


def make_synthetic(n: int, *, image_size: int = 32, seed: int = 0, name: str = "synthetic") -> ImageSet:
    """Render ``n`` images of the synthetic "shape wallpaper" data set (balanced, seeded).

    An image is a jittered 3 x 3 lattice of copies of one shape; the shape
    (``SYNTHETIC_CLASSES``) is the class. Everything else is a nuisance drawn
    independently of the class: the lattice phase and each copy's position,
    scale (radius 17-26% of the half side) and rotation (at most 10 degrees);
    each copy's colour (any hue); the background, a smooth field of varying
    hue with random saturation and brightness; pixel noise.

    Why this design (measured, see README "Synthetic data"): with a single
    object, random crops often miss it while colour survives both views, so
    SimSiam learned colour and kNN fell below init. Repeating the shape puts
    it in almost every crop, and colours that change from copy to copy and
    across the background give no cross-view shortcut. Random-init features
    are dominated by colour, so kNN at init is poor.
    """
    g = torch.Generator().manual_seed(seed)
    k = len(SYNTHETIC_CLASSES)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    images = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    lin = (torch.arange(image_size) + 0.5) / image_size * 2 - 1
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    chunk = max(1, 2**18 // (image_size * image_size))
    cell = 2 / SYNTHETIC_GRID
    for lo in range(0, n, chunk):
        m = min(n, lo + chunk) - lo
        lab = labels[lo : lo + m]
        u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
        flat = lambda v: v[:, None, None].expand(m, image_size, image_size)  # noqa: E731
        # Background: hue wanders over +-0.3 around a random base; dark to mid brightness.
        hue = (u(m, 1, 1) + 0.3 * _smooth_noise(m, image_size, 3, g)) % 1
        sat = (u(m, 1, 1) * 0.5 + 0.2).expand_as(hue)
        val = (u(m, 1, 1) * 0.3 + 0.15 + 0.08 * _smooth_noise(m, image_size, 3, g)).clamp(0, 1)
        img = _hsv_to_rgb(hue, sat, val)
        phase = u(m, 2) * cell - cell / 2
        for i in range(SYNTHETIC_GRID):
            for j in range(SYNTHETIC_GRID):
                ext = (u(m) * 0.09 + 0.17)[:, None, None]
                cx = -1 + cell * (j + 0.5) + phase[:, 0] + (u(m) * 2 - 1) * 0.175 * cell
                cy = -1 + cell * (i + 0.5) + phase[:, 1] + (u(m) * 2 - 1) * 0.175 * cell
                ang = ((u(m) * 2 - 1) * math.radians(10))[:, None, None]
                dx, dy = gx - cx[:, None, None], gy - cy[:, None, None]
                px = (ang.cos() * dx + ang.sin() * dy) / ext
                py = (ang.cos() * dy - ang.sin() * dx) / ext
                sdf = torch.empty_like(px)
                for c in range(k):
                    sel = (lab == c).nonzero().squeeze(1)
                    if len(sel):
                        sdf[sel] = _shape_sdf(c, px[sel], py[sel]) * ext[sel]
                alpha = (0.5 - sdf * (image_size / 2)).clamp(0, 1)[:, None]  # 1-pixel soft edge
                colour = _hsv_to_rgb(flat(u(m)), flat(u(m) * 0.6 + 0.3), flat(u(m) * 0.3 + 0.7))
                img = torch.lerp(img, colour, alpha)
        img += 0.03 * torch.randn(img.shape, generator=g)
        images[lo : lo + m] = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(images, labels, list(SYNTHETIC_CLASSES), name)


# ---------------------------------------------------------------------------
# torchvision sources
# ---------------------------------------------------------------------------

_TORCHVISION = {
    # source: (display name, folder, files torchvision checks)
    "cifar10": (
        "CIFAR-10",
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta"),
    ),
    "cifar100": ("CIFAR-100", "cifar-100-python", ("train", "test", "meta")),
    "stl10": (
        "STL-10",
        "stl10_binary",
        ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin"),
    ),
}  # fmt: skip


def _torchvision_root(source: str, path: Path) -> Path:
    """Accept both the parent folder and the dataset folder itself as ``root``."""
    folder = _TORCHVISION[source][1]
    return path.parent if path.name == folder and not (path / folder).is_dir() else path


def _check_torchvision(source: str, path: Path, download: bool) -> None:
    title, folder, files = _TORCHVISION[source]
    base = _torchvision_root(source, path) / folder
    missing = [f for f in files if not (base / f).is_file()]
    if not missing or download:
        return
    if base.is_dir():
        raise DataError(
            f"{title} under '{base}' is incomplete (missing {', '.join(missing)}). "
            f"Set data.root=... to a folder holding a complete {folder}, "
            "or pass data.download=true (needs internet)."
        )
    raise DataError(
        f"{title} not found under '{path}'. Set data.root=... to a folder holding {folder}, "
        "or pass data.download=true (needs internet)."
    )


def _load_torchvision(source: str, root: str, split: str, download: bool) -> ImageSet:
    from torchvision import datasets

    title, folder, _ = _TORCHVISION[source]
    path = _torchvision_root(source, Path(os.path.expanduser(root)))
    try:
        if source == "stl10":
            ds = datasets.STL10(str(path), split=split, download=download)
            images, labels = np.asarray(ds.data), np.asarray(ds.labels)  # already NCHW
        else:
            cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
            ds = cls(str(path), train=split == "train", download=download)
            images, labels = np.asarray(ds.data).transpose(0, 3, 1, 2), np.asarray(ds.targets)
    except Exception as err:  # torchvision raises RuntimeError / URLError / OSError
        if download:
            fix = f"this needs internet; without it, put {folder} under data.root and set data.download=false"
        else:
            fix = "the files may be corrupt; pass data.download=true (needs internet) for a fresh copy"
        raise DataError(f"Loading {title} from '{path / folder}' failed ({err}): {fix}.") from err
    return ImageSet(
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
        torch.from_numpy(labels.astype(np.int64)),
        [str(c) for c in ds.classes],
        f"{source}/{split}",
    )


# ---------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------


def _npz_paths(path: Path) -> dict[str, Path]:
    """``{split: file}`` for a folder (``train.npz``) or a path prefix (``<prefix>train.npz``)."""
    paths = {s: (path / f"{s}.npz" if path.is_dir() else Path(f"{path}{s}.npz")) for s in SPLITS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"npz data not found: {' and '.join(repr(m) for m in missing)} missing. "
            "Set data.root=... to a folder holding train.npz and test.npz, or to a path "
            "prefix P such that Ptrain.npz and Ptest.npz exist."
        )
    return paths


def _npz_classes(path: Path) -> list[str]:
    """Class names of the other split's npz: its ``classes``, else 0..max label (best effort)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "classes" in z.files:
                return [str(c) for c in z["classes"].astype(str)]
            labels = z["labels"]
        count = int(labels.max()) + 1 if labels.size and labels.dtype.kind in "iu" else 0
        return [str(i) for i in range(count)]
    except (ValueError, OSError, KeyError, zipfile.BadZipFile):
        return []  # reported when that split itself is loaded


def _load_npz(root: str, split: str) -> ImageSet:
    paths = _npz_paths(Path(os.path.expanduser(root)))
    path = paths[split]
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"images", "labels"} - set(z.files)
            if missing:
                raise DataError(
                    f"'{path}' lacks array(s) {sorted(missing)}; it needs uint8 'images' "
                    f"(N,H,W,3), (N,H,W,1) or (N,H,W) and integer 'labels' (N,); it has {z.files}."
                )
            images, labels = z["images"], z["labels"]
            classes = [str(c) for c in z["classes"].astype(str)] if "classes" in z.files else None
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise DataError(
            f"Cannot read '{path}' as a plain npz ({err}). Object/pickled arrays are not "
            "accepted: save uint8 'images' and integer 'labels' with np.savez."
        ) from err

    if images.dtype != np.uint8:
        raise DataError(f"'{path}': images must be uint8, got {images.dtype}.")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        hint = ""
        if images.ndim == 4 and images.shape[1] in (1, 3):
            hint = " It looks channels-first; transpose to (N,H,W,C)."
        raise DataError(
            f"'{path}': images must be (N,H,W,3), (N,H,W,1) or (N,H,W), got {images.shape}.{hint}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise DataError(
            f"'{path}': labels must be integer (N,) with N={len(images)}, "
            f"got {labels.dtype} {labels.shape}."
        )
    labels = labels.astype(np.int64)
    if len(labels) == 0:
        raise DataError(f"'{path}' holds no images.")
    if classes is None:  # take names from the other split, or 0..K-1 over both splits
        other = _npz_classes(paths[SPLITS[1 - SPLITS.index(split)]])
        own = [str(i) for i in range(int(labels.max()) + 1)]
        classes = other if len(other) >= len(own) else own
    if labels.min() < 0 or labels.max() >= len(classes):
        raise DataError(
            f"'{path}': labels must lie in [0, {len(classes)}), got {labels.min()}..{labels.max()}."
        )
    chw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    if chw.shape[1] == 1:
        chw = chw.expand(-1, 3, -1, -1).contiguous()
    if path.name == f"{split}.npz":
        stem = path.parent.name
    else:
        stem = path.name[: -len(f"{split}.npz")].rstrip("_-.")
    return ImageSet(chw, torch.from_numpy(labels), classes, f"{stem or 'npz'}/{split}")


# ---------------------------------------------------------------------------
# imagefolder: layout
# ---------------------------------------------------------------------------
#
# Every image is identified by its key "<split>/<class>/<path>" relative to the
# root (or to the archive's top folder); sorting keys by (split, class, key)
# gives the stored order, and the class part gives the label.


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


def _check_imagefolder(path: Path) -> None:
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


# ---------------------------------------------------------------------------
# imagefolder: decoding (Pillow; in worker processes for large sets)
# ---------------------------------------------------------------------------

_DECODE_CHUNK = 512


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited over white."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit grayscale
        arr = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and arr.max() > 255):
            arr = arr / 257.0
        elif im.mode == "F" and arr.max() <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(arr.round(), 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _decode_image(data: bytes, size: int | None) -> np.ndarray:
    """Decode one encoded image to a uint8 ``(3, H, W)`` array (resized to ``size`` if given)."""
    with Image.open(io.BytesIO(data)) as im:
        if size is not None:
            im.draft(None, (size, size))  # JPEG: decode at a reduced scale that is still >= size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # malformed EXIF should not cost the image
            orientation = 1
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        rgb = _to_rgb(im)
        w, h = rgb.size
        if size is not None and (w, h) != (size, size):
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)  # antialiased when shrinking
            left, top = (nw - size) // 2, (nh - size) // 2
            rgb = rgb.crop((left, top, left + size, top + size))
        return np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1))


def _decode_chunk(blobs: list[bytes], size: int | None) -> list[np.ndarray | str]:
    """Decode a list of images; failures come back as error strings."""
    out: list[np.ndarray | str] = []
    for data in blobs:
        try:
            out.append(_decode_image(data, size))
        except Exception as err:  # corrupt, truncated, unsupported: reported, not fatal
            out.append(f"{type(err).__name__}: {err}")
    return out


def _decode_workers() -> int:
    """Worker processes for decoding (``$EMSIAM_DECODE_WORKERS`` overrides; <= 1: in-process)."""
    env = os.environ.get("EMSIAM_DECODE_WORKERS")
    if env:
        return int(env)
    if not sys.platform.startswith("linux"):  # only 'fork' starts workers cheaply
        return 0
    return min(8, len(os.sched_getaffinity(0)))


class _Decoder:
    """Decode ``(key, bytes)`` items in chunks, in a process pool once there is enough work.

    The pool starts only when a full chunk is pending, so small sets never pay
    for it; at most two chunks per worker are in flight, which bounds memory.
    """

    def __init__(self, size: int | None, workers: int, progress: tqdm) -> None:
        self.size, self.workers, self.progress = size, workers, progress
        self.pool: cf.ProcessPoolExecutor | None = None
        self.pending: deque[tuple[list[str], cf.Future[list[np.ndarray | str]]]] = deque()
        self.keys: list[str] = []
        self.arrays: list[np.ndarray] = []
        self.failed: list[tuple[str, str]] = []
        self._keys: list[str] = []
        self._blobs: list[bytes] = []

    def add(self, key: str, data: bytes) -> None:
        self._keys.append(key)
        self._blobs.append(data)
        if len(self._blobs) >= _DECODE_CHUNK:
            self._submit()

    def finish(self) -> None:
        if self._blobs:
            self._submit()
        while self.pending:
            self._collect()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self) -> None:
        keys, blobs = self._keys, self._blobs
        self._keys, self._blobs = [], []
        if self.pool is None and self.workers > 1 and len(blobs) >= _DECODE_CHUNK:
            self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"))
        if self.pool is None:
            fut: cf.Future[list[np.ndarray | str]] = cf.Future()
            fut.set_result(_decode_chunk(blobs, self.size))
        else:
            fut = self.pool.submit(_decode_chunk, blobs, self.size)
        self.pending.append((keys, fut))
        while len(self.pending) > 2 * max(1, self.workers):
            self._collect()

    def _collect(self) -> None:
        keys, fut = self.pending.popleft()
        for key, result in zip(keys, fut.result()):
            if isinstance(result, str):
                self.failed.append((key, result))
                continue
            if self.arrays and result.shape != self.arrays[0].shape:
                _, h0, w0 = self.arrays[0].shape
                raise DataError(
                    f"Images differ in size ({w0}x{h0} in '{self.keys[0]}', "
                    f"{result.shape[2]}x{result.shape[1]} in '{key}'); "
                    "set data.image_size=N to resize them all to NxN."
                )
            self.keys.append(key)
            self.arrays.append(result)
        self.progress.update(len(keys))


@dataclass
class _Converted:
    """Decoded images of one split, in stored order."""

    images: np.ndarray  # uint8 (N, 3, H, W)
    labels: np.ndarray  # int64 (N,)
    skipped: list[str]  # "key (error)" of unreadable files


def _decode_all(
    items: Iterable[tuple[str, bytes]], size: int | None, total: int | None, desc: str
) -> tuple[dict[str, list[tuple[str, np.ndarray]]], list[tuple[str, str]]]:
    """Decode ``(key, bytes)`` items; return ``{split: [(key, image), ...]}`` and the failures."""
    with progress_bar(total=total, desc=desc, unit="img", leave=True) as bar:  # plain lines when piped
        dec = _Decoder(size, _decode_workers(), bar)
        try:
            with warnings.catch_warnings():
                # Python >= 3.12 warns about fork() in a threaded process; workers only run Pillow.
                warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks")
                for key, data in items:
                    dec.add(key, data)
                dec.finish()
        finally:
            dec.close()
    by_split: dict[str, list[tuple[str, np.ndarray]]] = {s: [] for s in SPLITS}
    for key, array in zip(dec.keys, dec.arrays):
        by_split[key.split("/", 1)[0]].append((key, array))
    return by_split, dec.failed


def _assemble(
    decoded: list[tuple[str, np.ndarray]], failed: list[tuple[str, str]], split: str, classes: Sequence[str]
) -> _Converted:
    """Order one split's images by (class, key) and attach labels."""
    index = {c: i for i, c in enumerate(classes)}

    def label(key: str) -> int:
        return index[key.split("/", 2)[1]]

    decoded = sorted(decoded, key=lambda kv: (label(kv[0]), kv[0]))
    images = np.stack([a for _, a in decoded]) if decoded else np.empty((0, 3, 0, 0), np.uint8)
    labels = np.asarray([label(k) for k, _ in decoded], dtype=np.int64)
    skipped = [f"{k} ({err})" for k, err in failed if k.startswith(split + "/")]
    return _Converted(images, labels, skipped)


# ---------------------------------------------------------------------------
# imagefolder: conversion cache
# ---------------------------------------------------------------------------


def _root_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(_ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "images"


def _cache_file(
    cache: Path,
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
    return cache / f"{_root_stem(path)}-{split}-{size or 'native'}-{h.hexdigest()[:20]}.npz"


def _read_cache(path: Path) -> tuple[_Converted, list[str]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            conv = _Converted(z["images"], z["labels"].astype(np.int64), [str(s) for s in z["skipped"]])
            classes = [str(c) for c in z["classes"]]
        if conv.images.dtype != np.uint8 or conv.images.ndim != 4 or conv.labels.shape != (len(conv.images),):
            raise ValueError("unexpected array shapes")
        return conv, classes
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(f"Ignoring unreadable cache '{path}' ({err}); converting again.", stacklevel=4)
        return None


def _write_cache(path: Path, conv: _Converted, classes: Sequence[str]) -> None:
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


def _convert_archive(path: Path, size: int | None, desc: str) -> tuple[dict[str, _Converted], list[str]]:
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
        decoded, failed = _decode_all(items(), size, None, desc)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"Cannot read archive '{path}' (data.root): {err}") from err
    if splits != set(SPLITS):
        raise _layout_error(path)
    names = sorted(classes)
    return {s: _assemble(decoded[s], failed, s, names) for s in SPLITS}, names


def _load_imagefolder(path: Path, split: str, size: int | None, cache_dir: str | None) -> ImageSet:
    """Load a split from the cache, converting (and caching) it first if needed.

    A folder is converted one split at a time; an archive is streamed once
    and both of its splits are cached.
    """
    if path.is_dir() or not _is_archive(path):
        _check_imagefolder(path)  # archives are checked while they are converted
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    name = f"{_root_stem(path)}/{split}"
    where = f"'{path}' ({split})"
    classes = _folder_classes(path) if path.is_dir() else []
    files = _iter_folder(path, split, classes) if path.is_dir() else []
    target = _cache_file(cache, path, split, size, files, classes)

    cached = _read_cache(target) if target.is_file() else None
    if cached is not None:
        conv, classes = cached
    else:
        desc = f"Converting {name}"
        if path.is_dir():
            decoded, failed = _decode_all(((k, f.read_bytes()) for k, f in files), size, len(files), desc)
            converted = {split: _assemble(decoded[split], failed, split, classes)}
        else:
            converted, classes = _convert_archive(path, size, f"Converting {_root_stem(path)}")
        for s, c in converted.items():
            if len(c.images):
                _write_cache(_cache_file(cache, path, s, size, files, classes), c, classes)
        conv = converted[split]
        if len(conv.images) == 0:
            detail = f" ({len(conv.skipped)} unreadable, e.g. {conv.skipped[0]})" if conv.skipped else ""
            raise DataError(f"No readable images under {where}{detail}. Check data.root.")
    if conv.skipped:
        shown = "; ".join(conv.skipped[:5]) + ("; ..." if len(conv.skipped) > 5 else "")
        warnings.warn(f"Skipped {len(conv.skipped)} unreadable image(s) in {where}: {shown}", stacklevel=3)
    return ImageSet(torch.from_numpy(conv.images), torch.from_numpy(conv.labels), classes, name)
