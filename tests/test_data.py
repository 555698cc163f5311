"""Tests for emsiam.data: sources, conversion cache, subsets and the batch iterator."""

from __future__ import annotations

import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emsiam import data as D
from emsiam.data import Batches, DataError, ImageSet, check_source, load_split


def _shared_archive() -> Path:
    env = os.environ.get("EMSIAM_SHARED_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "cifar10-jpeg.tar.gz"


def _image_set(n_per_class: int, n_classes: int, size: int = 4) -> ImageSet:
    """A class-sorted set; image i holds i % 256 in channel 0 and i // 256 in channel 1."""
    n = n_per_class * n_classes
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, 0] = (torch.arange(n) % 256).to(torch.uint8)[:, None, None]
    images[:, 1] = (torch.arange(n) // 256).to(torch.uint8)[:, None, None]
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return ImageSet(images, labels, [f"c{i}" for i in range(n_classes)], "toy/train")


# ---------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------


def test_synthetic_shapes_and_names() -> None:
    ds = load_split("synthetic", "train", root=None, n_train=300)
    assert ds.images.shape == (300, 3, 32, 32)
    assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (300,)
    assert ds.classes == list(D.SYNTHETIC_CLASSES) and len(ds.classes) == 10
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


# ---------------------------------------------------------------------------
# ImageSet, subsets, resizing
# ---------------------------------------------------------------------------


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


def test_resize_images_centre_crops_shorter_side() -> None:
    x = torch.zeros(1, 3, 4, 8, dtype=torch.uint8)
    x[..., 2:6] = 200
    assert torch.equal(D.resize_images(x, 4), torch.full((1, 3, 4, 4), 200, dtype=torch.uint8))
    flat = torch.full((2, 3, 10, 20), 77, dtype=torch.uint8)
    assert torch.equal(D.resize_images(flat, 6), torch.full((2, 3, 6, 6), 77, dtype=torch.uint8))


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# imagefolder
# ---------------------------------------------------------------------------

# (split, class, file, mode, size, fill) -> expected RGB after conversion
_FIXTURE: list[tuple[str, str, str, str, tuple[int, int], object, tuple[int, int, int]]] = [
    ("train", "cat", "a.png", "RGB", (40, 30), (200, 10, 10), (200, 10, 10)),
    ("train", "cat", "b.png", "L", (32, 32), 77, (77, 77, 77)),
    ("train", "cat", "c.png", "RGBA", (20, 20), (0, 0, 255, 0), (255, 255, 255)),  # transparent
    ("train", "cat", "sub/d.jpg", "RGB", (64, 48), (10, 200, 10), (10, 200, 10)),
    ("train", "dog", "e.png", "P", (32, 32), 1, (0, 0, 250)),
    ("train", "dog", "f.tif", "CMYK", (24, 24), (0, 0, 0, 0), (255, 255, 255)),
    ("train", "dog", "g.png", "RGBA", (16, 16), (9, 99, 199, 255), (9, 99, 199)),
    ("train", "dog", "i.png", "I;16", (32, 32), 200 * 257, (200, 200, 200)),  # 16-bit grayscale
    ("test", "dog", "h.png", "RGB", (32, 32), (123, 45, 67), (123, 45, 67)),
]


def _make_folder(root: Path) -> Path:
    for split, cls, name, mode, size, fill, _ in _FIXTURE:
        path = root / split / cls / name
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.new(mode, size, fill)  # type: ignore[arg-type]
        if mode == "P":
            im.putpalette([0, 0, 0, 0, 0, 250] + [0] * 762)
        if name.endswith(".jpg"):
            im.save(path, quality=95)
        else:
            im.save(path)
    (root / "train" / "cat" / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(300))
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    (root / "test" / "bird").mkdir()  # class only present (empty) in test
    return root


def _expected(split: str) -> tuple[list[int], list[tuple[int, int, int]]]:
    classes = ["bird", "cat", "dog"]
    rows = sorted((classes.index(c), f"{s}/{c}/{n}", rgb) for s, c, n, *_, rgb in _FIXTURE if s == split)
    return [r[0] for r in rows], [r[2] for r in rows]


def _mean_rgb(ds: ImageSet) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in m) for m in ds.images.float().mean((2, 3)).round()]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return _make_folder(tmp_path / "pets")


def test_imagefolder_converts_modes_and_sizes(folder: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"Skipped 1 unreadable image.*corrupt\.jpg"):
        ds = load_split("imagefolder", "train", root=str(folder), image_size=16, cache_dir=str(tmp_path))
    labels, colours = _expected("train")
    assert ds.images.shape == (8, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.classes == ["bird", "cat", "dog"] and ds.name == "pets/train"
    assert ds.labels.tolist() == labels
    for got, want in zip(_mean_rgb(ds), colours):
        assert max(abs(g - w) for g, w in zip(got, want)) <= 3, (got, want)
    te = load_split("imagefolder", "test", root=str(folder), image_size=16, cache_dir=str(tmp_path))
    assert te.labels.tolist() == [2] and te.classes == ds.classes  # same label space as train


def test_imagefolder_mixed_sizes_need_image_size(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"40x30 in 'train/cat/a\.png'.*data\.image_size=N"):
        load_split("imagefolder", "train", root=str(folder), cache_dir=str(tmp_path / "c"))
    same = load_split("imagefolder", "test", root=str(folder), cache_dir=str(tmp_path / "c"))
    assert same.images.shape == (1, 3, 32, 32)  # one native size: no resize needed


def test_imagefolder_applies_exif_orientation(tmp_path: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / "r" / split / "a").mkdir(parents=True)
        im = Image.new("RGB", (8, 4), (0, 0, 0))
        im.paste((255, 255, 255), (0, 0, 4, 4))  # left half white
        exif = Image.Exif()
        exif[0x0112] = 6  # display rotated 90 degrees clockwise
        im.save(tmp_path / "r" / split / "a" / "x.jpg", exif=exif, quality=100)
    ds = load_split("imagefolder", "train", root=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"))
    assert ds.images.shape == (1, 3, 8, 4)  # portrait after rotation
    assert ds.images[0, :, :4].float().mean() > 200 and ds.images[0, :, 4:].float().mean() < 50


def test_imagefolder_cache_hit_skips_decoding(folder: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "c"
    with pytest.warns(UserWarning):
        first = load_split("imagefolder", "train", root=str(folder), image_size=16, cache_dir=str(cache))
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # no temp file left behind

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(D.Image, "open", no_decoding)
    with pytest.warns(UserWarning, match="Skipped 1"):  # the warning is repeated from the cache
        second = load_split("imagefolder", "train", root=str(folder), image_size=16, cache_dir=str(cache))
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.classes == second.classes
    with pytest.raises(DataError, match="decoded although cached"):  # another size is another cache
        load_split("imagefolder", "train", root=str(folder), image_size=8, cache_dir=str(cache))


def test_imagefolder_changed_file_changes_cache_key(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    kw = dict(root=str(folder), image_size=16, cache_dir=str(cache))
    with pytest.warns(UserWarning):
        before = load_split("imagefolder", "train", **kw)
    target = folder / "train" / "cat" / "a.png"
    Image.new("RGB", (40, 30), (5, 5, 250)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.warns(UserWarning):
        after = load_split("imagefolder", "train", **kw)
    assert len(list(cache.glob("*.npz"))) == 2
    assert _mean_rgb(before)[0] == (200, 10, 10) and _mean_rgb(after)[0] == (5, 5, 250)


def test_imagefolder_cache_write_is_atomic(folder: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "c"

    def crash(f, **arrays):
        f.write(b"half a file")
        raise RuntimeError("crash while writing")

    monkeypatch.setattr(D.np, "savez", crash)
    with pytest.raises(RuntimeError, match="crash while writing"):
        load_split("imagefolder", "test", root=str(folder), cache_dir=str(cache))
    assert list(cache.iterdir()) == []


def test_imagefolder_tar_archive_matches_folder(folder: Path, tmp_path: Path) -> None:
    for name, arcname, mode in [("pets.tar.gz", "pets", "w:gz"), ("flat.tar", ".", "w")]:
        archive = tmp_path / name
        with tarfile.open(archive, mode) as tf:
            tf.add(folder, arcname=arcname)
        check_source("imagefolder", str(archive))
        kw = dict(image_size=16, cache_dir=str(tmp_path / "c"))
        with pytest.warns(UserWarning, match="corrupt.jpg"):
            from_tar = load_split("imagefolder", "train", root=str(archive), **kw)
        with pytest.warns(UserWarning):
            from_dir = load_split("imagefolder", "train", root=str(folder), **kw)
        assert torch.equal(from_tar.images, from_dir.images)
        assert torch.equal(from_tar.labels, from_dir.labels) and from_tar.classes == from_dir.classes


def test_imagefolder_process_pool_matches_in_process(folder: Path, tmp_path: Path, monkeypatch) -> None:
    kw = dict(root=str(folder), image_size=16)
    with pytest.warns(UserWarning):
        serial = load_split("imagefolder", "train", cache_dir=str(tmp_path / "a"), **kw)
    monkeypatch.setattr(D, "_DECODE_CHUNK", 2)
    monkeypatch.setenv("EMSIAM_DECODE_WORKERS", "2")
    with pytest.warns(UserWarning, match="Skipped 1"):
        pooled = load_split("imagefolder", "train", cache_dir=str(tmp_path / "b"), **kw)
    assert torch.equal(serial.images, pooled.images) and torch.equal(serial.labels, pooled.labels)


def test_imagefolder_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for call in (
        lambda: check_source("imagefolder", str(missing)),
        lambda: load_split("imagefolder", "train", root=str(missing), cache_dir=str(tmp_path)),
    ):
        with pytest.raises(DataError, match=r"nowhere.*data\.root"):
            call()
    with pytest.raises(DataError, match="data.root"):
        check_source("imagefolder", None)
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="test/"):
        check_source("imagefolder", str(tmp_path / "half"))
    bad_tar = tmp_path / "bad.tar"
    with tarfile.open(bad_tar, "w") as tf:
        tf.add(tmp_path / "half" / "train", arcname="train")
    with pytest.raises(DataError, match="train/<class>/ and test/<class>/"):
        check_source("imagefolder", str(bad_tar))
    broken = tmp_path / "broken"
    for split in ("train", "test"):
        (broken / split / "x").mkdir(parents=True)
        (broken / split / "x" / "1.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="No readable images"):
        load_split("imagefolder", "train", root=str(broken), cache_dir=str(tmp_path / "c"))


@pytest.mark.skipif(not _shared_archive().is_file(), reason="shared CIFAR-10 JPEG archive not available")
def test_imagefolder_real_cifar10_archive(tmp_path: Path) -> None:
    root = str(_shared_archive())
    ds = load_split("imagefolder", "train", root=root, cache_dir=str(tmp_path))
    assert ds.images.shape == (50000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.classes == "airplane automobile bird cat deer dog frog horse ship truck".split()
    assert torch.bincount(ds.labels).tolist() == [5000] * 10
    cached = load_split("imagefolder", "train", root=root, cache_dir=str(tmp_path), n_train=1000)
    assert torch.bincount(cached.labels).tolist() == [100] * 10


# ---------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# torchvision sources and general checks
# ---------------------------------------------------------------------------


def test_unknown_source_lists_valid_ones() -> None:
    with pytest.raises(DataError, match="synthetic, cifar10, cifar100, stl10, imagefolder, npz"):
        check_source("mnist", "/tmp")
    with pytest.raises(DataError, match="split"):
        load_split("synthetic", "val", root=None)
    check_source("synthetic", None)  # needs nothing


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
