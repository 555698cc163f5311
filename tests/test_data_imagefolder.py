"""Tests for emsiam.data.imagefolder with its decoder and conversion cache: folders and archives."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emsiam.data import DataError, ImageSet, check_source, decode, load_split
from emsiam.data import cache as conversion_cache


def _shared_archive() -> Path:
    env = os.environ.get("EMSIAM_SHARED_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "cifar10-jpeg.tar.gz"


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

    monkeypatch.setattr(decode.Image, "open", no_decoding)
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

    monkeypatch.setattr(conversion_cache.np, "savez", crash)
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
    monkeypatch.setattr(decode, "_DECODE_CHUNK", 2)
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
