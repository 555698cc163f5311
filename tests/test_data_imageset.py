"""Tests for emsiam.data.imageset: ImageSet, resizing and the Batches iterator."""

from __future__ import annotations

import pytest
import torch

from emsiam.data import Batches, DataError, ImageSet, resize_images


def _image_set(n_per_class: int, n_classes: int, size: int = 4) -> ImageSet:
    """A class-sorted set; image i holds i % 256 in channel 0 and i // 256 in channel 1."""
    n = n_per_class * n_classes
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, 0] = (torch.arange(n) % 256).to(torch.uint8)[:, None, None]
    images[:, 1] = (torch.arange(n) // 256).to(torch.uint8)[:, None, None]
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return ImageSet(images, labels, [f"c{i}" for i in range(n_classes)], "toy/train")


def test_imageset_subset_and_validation() -> None:
    ds = _image_set(3, 2)
    sub = ds.subset(torch.tensor([4, 0]))
    assert torch.equal(sub.images, ds.images[[4, 0]]) and sub.labels.tolist() == [1, 0]
    assert len(ds.subset(ds.labels == 1)) == 3
    with pytest.raises(DataError, match="uint8"):
        ImageSet(ds.images.float(), ds.labels, ds.classes, "bad")
    with pytest.raises(DataError, match="int64"):
        ImageSet(ds.images, ds.labels.int(), ds.classes, "bad")
    assert "n=6" in repr(ds)


def test_resize_images_centre_crops_shorter_side() -> None:
    x = torch.zeros(1, 3, 4, 8, dtype=torch.uint8)
    x[..., 2:6] = 200
    assert torch.equal(resize_images(x, 4), torch.full((1, 3, 4, 4), 200, dtype=torch.uint8))
    flat = torch.full((2, 3, 10, 20), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(flat, 6), torch.full((2, 3, 6, 6), 77, dtype=torch.uint8))


def test_batches_gather_and_cover_every_index_once() -> None:
    ds = _image_set(13, 8)  # 104 images
    batches = Batches(ds, 10, shuffle=True, seed=3, drop_last=False)
    assert len(batches) == 11
    seen = []
    for idx, images, labels in batches.epoch(2):
        assert idx.dtype == torch.int64
        assert torch.equal(images, ds.images[idx]) and torch.equal(labels, ds.labels[idx])
        seen.append(idx)
    order = torch.cat(seen)
    assert sorted(order.tolist()) == list(range(104))
    assert torch.equal(order, batches.indices(2))
    assert order.tolist() != list(range(104))


def test_batches_permutation_is_pure_function_of_seed_and_epoch() -> None:
    ds = _image_set(50, 2)
    a = Batches(ds, 8, shuffle=True, seed=5)
    b = Batches(ds, 8, shuffle=True, seed=5)
    for _ in a.epoch(0):  # consuming other epochs must not matter
        pass
    assert torch.equal(a.indices(7), b.indices(7))
    assert not torch.equal(a.indices(7), a.indices(8))
    assert not torch.equal(a.indices(7), Batches(ds, 8, shuffle=True, seed=6).indices(7))
    assert Batches(ds, 8, shuffle=False).indices(3).tolist() == list(range(100))


def test_batches_drop_last_length() -> None:
    ds = _image_set(25, 4)  # 100 images
    full = list(Batches(ds, 30, shuffle=True, drop_last=True).epoch(0))
    assert len(full) == len(Batches(ds, 30, shuffle=True)) == 3
    assert all(len(idx) == 30 for idx, _, _ in full)
    assert len(Batches(ds, 30, shuffle=True, drop_last=False)) == 4
    assert len(Batches(ds, 25, shuffle=False)) == 4
    with pytest.raises(DataError, match="batch_size=101"):
        Batches(ds, 101, shuffle=True)
