"""Tests for emsiam.data.synthetic: the built-in shape-wallpaper source."""

from __future__ import annotations

import torch

from emsiam.data import SYNTHETIC_CLASSES, load_split


def test_synthetic_shapes_and_names() -> None:
    ds = load_split("synthetic", "train", root=None, n_train=300)
    assert ds.images.shape == (300, 3, 32, 32)
    assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (300,)
    assert ds.classes == list(SYNTHETIC_CLASSES) and len(ds.classes) == 10
    assert ds.name == "synthetic/train"
    assert int(ds.images.float().std()) > 10  # not blank


def test_synthetic_default_sizes_and_n_respected() -> None:
    assert len(load_split("synthetic", "test", root=None)) == 2000
    assert len(load_split("synthetic", "train", root=None, n_train=123)) == 123
    assert len(load_split("synthetic", "test", root=None, n_train=5, n_test=45)) == 45
    big = load_split("synthetic", "test", root=None, n_test=20, image_size=48)
    assert big.images.shape == (20, 3, 48, 48)


def test_synthetic_is_deterministic_and_seeded() -> None:
    a = load_split("synthetic", "train", root=None, n_train=200, seed=1)
    b = load_split("synthetic", "train", root=None, n_train=200, seed=1)
    c = load_split("synthetic", "train", root=None, n_train=200, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_synthetic_train_and_test_are_disjoint() -> None:
    tr = load_split("synthetic", "train", root=None, n_train=300)
    te = load_split("synthetic", "test", root=None, n_test=300)
    train_bytes = {bytes(x.numpy()) for x in tr.images}
    assert not any(bytes(x.numpy()) in train_bytes for x in te.images)


def test_synthetic_classes_balanced() -> None:
    ds = load_split("synthetic", "train", root=None, n_train=1003)
    counts = torch.bincount(ds.labels, minlength=10)
    assert counts.min() >= 100 and counts.max() <= 101
    assert len(ds.labels[:50].unique()) >= 6  # classes are shuffled, not in blocks
