"""Load one split of a named source as an :class:`~.imageset.ImageSet`, or check that it can be.

``SOURCES``: ``synthetic`` (built in), ``cifar10``/``cifar100``/``stl10``
(torchvision, from ``root``), ``imagefolder`` and ``npz`` (local files).
:func:`check_source` runs before any compute and raises :class:`DataError`
naming the missing path and the config option that fixes it. A subset
(``n_train``/``n_test``) is random and class-stratified, never a prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .imagefolder import check_imagefolder, load_imagefolder
from .imageset import SPLITS, DataError, ImageSet, derive_seed, resize_images
from .npz import load_npz, npz_paths
from .synthetic import make_synthetic
from .torchvision_sets import TORCHVISION, check_torchvision, load_torchvision

__all__ = ["SOURCES", "check_source", "load_split"]

SOURCES = ("synthetic", "cifar10", "cifar100", "stl10", "imagefolder", "npz")


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
            seed=derive_seed(seed, "synthetic", split),
            name=f"synthetic/{split}",
        )

    if source == "imagefolder":
        data = load_imagefolder(_require_root(source, root), split, image_size, cache_dir)
    else:
        check_source(source, root, download)
        assert root is not None
        if source == "npz":
            data = load_npz(root, split)
        else:
            data = load_torchvision(source, root, split, download)
    if n is not None:
        data = _stratified_subset(data, n, derive_seed(subset_seed, "subset", split), split)
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
    if source in TORCHVISION:
        check_torchvision(source, path, download)
    elif source == "imagefolder":
        check_imagefolder(path)
    else:
        npz_paths(path)


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
