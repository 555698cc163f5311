"""The ``npz`` source: ``train.npz``/``test.npz`` with uint8 ``images`` and integer ``labels``.

Images may be NHWC or NHW (grayscale is replicated to RGB); an optional
unicode ``classes`` array names the labels. Pickled arrays are refused.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .imageset import SPLITS, DataError, ImageSet

__all__ = ["load_npz", "npz_paths"]


def npz_paths(path: Path) -> dict[str, Path]:
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


def load_npz(root: str, split: str) -> ImageSet:
    paths = npz_paths(Path(os.path.expanduser(root)))
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
