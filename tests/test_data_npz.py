"""Tests for emsiam.data.npz: the train.npz/test.npz source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emsiam.data import DataError, check_source, load_split


def _write_npz(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, **extra: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.npz"
    np.savez(path, images=images, labels=labels, **extra)
    return path


def test_npz_nhwc_and_grayscale_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (4, 5, 7), dtype=np.uint8)
    _write_npz(tmp_path / "a", "train", rgb, np.array([0, 1, 2, 0, 1, 2]), classes=np.array(["x", "y", "z"]))
    _write_npz(tmp_path / "a", "test", gray, np.array([2, 1, 0, 0], dtype=np.uint8))
    tr = load_split("npz", "train", root=str(tmp_path / "a"))
    te = load_split("npz", "test", root=str(tmp_path / "a"))
    assert torch.equal(tr.images, torch.from_numpy(rgb).permute(0, 3, 1, 2))
    assert tr.classes == ["x", "y", "z"] and tr.labels.dtype == torch.int64 and tr.name == "a/train"
    assert te.images.shape == (4, 3, 5, 7) and te.images.is_contiguous()
    for c in range(3):
        assert torch.equal(te.images[:, c], torch.from_numpy(gray))
    assert te.classes == ["x", "y", "z"] and te.labels.tolist() == [2, 1, 0, 0]  # names from train
    np.savez(tmp_path / "a" / "train.npz", images=rgb, labels=np.array([0, 1, 2, 0, 1, 2]))
    np.savez(tmp_path / "a" / "test.npz", images=gray, labels=np.array([0, 0, 0, 0]))
    assert load_split("npz", "test", root=str(tmp_path / "a")).classes == ["0", "1", "2"]  # K from train
    # path-prefix form and NHWC with one channel
    np.savez(tmp_path / "mnist_train.npz", images=gray[..., None], labels=np.zeros(4, np.int64))
    np.savez(tmp_path / "mnist_test.npz", images=gray, labels=np.zeros(4, np.int64))
    pre = load_split("npz", "train", root=str(tmp_path / "mnist_"), image_size=3)
    assert pre.images.shape == (4, 3, 3, 3) and pre.name == "mnist/train"


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (np.array([np.zeros((2, 2, 3)), None], dtype=object), np.zeros(2, np.int64), "pickle"),
        (np.zeros((2, 4, 4, 3), np.float32), np.zeros(2, np.int64), "uint8"),
        (np.zeros((2, 3, 4, 4), np.uint8), np.zeros(2, np.int64), "channels-first"),
        (np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3, np.int64), "labels must be integer"),
        (np.zeros((2, 4, 4, 3), np.uint8), np.array([0.0, 1.0]), "labels must be integer"),
    ],
)
def test_npz_rejects_bad_arrays(tmp_path: Path, images: np.ndarray, labels: np.ndarray, match: str) -> None:
    _write_npz(tmp_path, "train", images, labels)
    _write_npz(tmp_path, "test", np.zeros((1, 4, 4, 3), np.uint8), np.zeros(1, np.int64))
    with pytest.raises(DataError, match=match):
        load_split("npz", "train", root=str(tmp_path))


def test_npz_missing_files(tmp_path: Path) -> None:
    _write_npz(tmp_path, "train", np.zeros((1, 4, 4, 3), np.uint8), np.zeros(1, np.int64))
    with pytest.raises(DataError, match=r"test\.npz.*data\.root"):
        check_source("npz", str(tmp_path))
