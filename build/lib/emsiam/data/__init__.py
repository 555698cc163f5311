"""Datasets held as one uint8 tensor, and the batches the training loop gathers from it.

Modules, in data-flow order:

- ``imageset``: :class:`ImageSet` (uint8 ``(N, 3, H, W)`` + int64 labels),
  :class:`Batches` (the epoch order), :class:`DataError`, :func:`resize_images`;
- ``sources``: :func:`load_split` and :func:`check_source`, the dispatch over ``SOURCES``;
- ``synthetic``, ``torchvision_sets``, ``npz``, ``imagefolder`` (with ``decode`` and
  ``cache``): one module per kind of source;
- ``store`` and ``memmap``: the on-disk store for sets larger than memory
  (``data.store=memmap``).

Design notes: docs/data.md.
"""

from .cache import default_cache_dir
from .imageset import SPLITS, Batches, DataError, ImageSet, resize_images
from .memmap import MemmapImages, prefetch
from .npz import npz_paths
from .sources import SOURCES, check_source, load_split
from .store import load_split_store, open_store, store_key, write_store
from .synthetic import SYNTHETIC_CLASSES, make_synthetic

__all__ = [
    "SOURCES",
    "SPLITS",
    "SYNTHETIC_CLASSES",
    "Batches",
    "DataError",
    "ImageSet",
    "MemmapImages",
    "check_source",
    "default_cache_dir",
    "load_split",
    "load_split_store",
    "make_synthetic",
    "npz_paths",
    "open_store",
    "prefetch",
    "resize_images",
    "store_key",
    "write_store",
]
