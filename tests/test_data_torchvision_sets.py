"""Tests for emsiam.data.torchvision_sets: CIFAR and STL-10 from a local root."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from emsiam.data import DataError, check_source, load_split


@pytest.mark.parametrize(
    ("source", "folder"),
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("stl10", "stl10_binary")],
)
def test_torchvision_missing_root(tmp_path: Path, source: str, folder: str) -> None:
    root = tmp_path / "datasets"
    calls = (lambda: check_source(source, str(root)), lambda: load_split(source, "train", root=str(root)))
    for call in calls:
        with pytest.raises(DataError, match=rf"'{re.escape(str(root))}'.*{folder}.*data\.download=true"):
            call()
    with pytest.raises(DataError, match="data.root"):
        check_source(source, None)
    check_source(source, str(root), download=True)  # would download, so nothing to complain about


def test_cifar10_from_fake_pickles(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)  # fake files, fake md5
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    rows = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        rows[name] = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({"data": rows[name], "labels": [(i + j) % 10 for j in range(4)]}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"name{k}" for k in range(10)]}, f)

    tr = load_split("cifar10", "train", root=str(tmp_path))
    assert tr.images.shape == (20, 3, 32, 32) and tr.name == "cifar10/train"
    assert torch.equal(tr.images[5], torch.from_numpy(rows["data_batch_2"][1].reshape(3, 32, 32)))
    assert tr.labels[:6].tolist() == [0, 1, 2, 3, 1, 2] and tr.classes[3] == "name3"
    te = load_split("cifar10", "test", root=str(base), image_size=16)  # the folder itself works too
    assert te.images.shape == (4, 3, 16, 16) and te.labels.tolist() == [5, 6, 7, 8]
