"""CIFAR-10, CIFAR-100 and STL-10 through ``torchvision.datasets``, from a local root.

Nothing is downloaded unless ``download=True``; :func:`check_torchvision`
names the missing files and the config option that fixes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .imageset import DataError, ImageSet

__all__ = ["TORCHVISION", "check_torchvision", "load_torchvision"]

TORCHVISION = {
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
    folder = TORCHVISION[source][1]
    return path.parent if path.name == folder and not (path / folder).is_dir() else path


def check_torchvision(source: str, path: Path, download: bool) -> None:
    title, folder, files = TORCHVISION[source]
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


def load_torchvision(source: str, root: str, split: str, download: bool) -> ImageSet:
    from torchvision import datasets

    title, folder, _ = TORCHVISION[source]
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
