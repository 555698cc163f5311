"""Tests for emsiam.data.sources: the dispatch, its checks and the stratified subset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emsiam.data import DataError, check_source, load_split
from tests.test_data_imageset import _image_set
from tests.test_data_npz import _write_npz


def test_subset_is_random_stratified_not_prefix(tmp_path: Path) -> None:
    ds = _image_set(100, 10)  # sorted by class: a prefix of 50 would be one class
    _write_npz(tmp_path, "train", ds.images.permute(0, 2, 3, 1).numpy(), ds.labels.numpy())
    _write_npz(tmp_path, "test", ds.images[:10].permute(0, 2, 3, 1).numpy(), ds.labels[:10].numpy())
    a = load_split("npz", "train", root=str(tmp_path), n_train=50, subset_seed=0)
    b = load_split("npz", "train", root=str(tmp_path), n_train=50, subset_seed=0)
    c = load_split("npz", "train", root=str(tmp_path), n_train=50, subset_seed=1)
    assert torch.bincount(a.labels, minlength=10).tolist() == [5] * 10
    ids = lambda s: (s.images[:, 0, 0, 0].long() + 256 * s.images[:, 1, 0, 0].long()).tolist()  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert ids(a) != list(range(50)) and ids(a) == sorted(ids(a))
    assert torch.equal(a.labels, ds.labels[ids(a)])
    with pytest.raises(DataError, match="n_train=2000"):
        load_split("npz", "train", root=str(tmp_path), n_train=2000)


def test_unknown_source_lists_valid_ones() -> None:
    with pytest.raises(DataError, match="synthetic, cifar10, cifar100, stl10, imagefolder, npz"):
        check_source("mnist", "/tmp")
    with pytest.raises(DataError, match="split"):
        load_split("synthetic", "val", root=None)
    check_source("synthetic", None)  # needs nothing
