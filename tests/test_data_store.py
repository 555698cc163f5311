"""Tests for emsiam.data.store and emsiam.data.memmap: the uint8 store for sets larger than memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from emsiam.config import load_config
from emsiam.data import ImageSet, MemmapImages, make_synthetic, open_store, prefetch, write_store
from emsiam.train import train


@pytest.fixture
def synthetic() -> ImageSet:
    return make_synthetic(300, image_size=16, seed=3, name="synthetic/train")


def test_store_round_trips_an_imageset_exactly(synthetic, tmp_path):
    store = open_store(write_store(synthetic, tmp_path / "s"))
    assert isinstance(store.images, MemmapImages)
    assert store.images.shape == synthetic.images.shape and len(store) == len(synthetic)
    assert store.name == synthetic.name and store.classes == synthetic.classes
    assert torch.equal(store.labels, synthetic.labels)
    assert torch.equal(store.images[0 : len(store)], synthetic.images)
    assert torch.equal(store.images[-1], synthetic.images[-1])
    assert torch.equal(store.images[5:77:3], synthetic.images[5:77:3])
    # written again from chunks (a source that never sits in memory whole): the same store
    chunks = synthetic.images.split(64)
    again = open_store(write_store(chunks, tmp_path / "c", labels=synthetic.labels,
                                   classes=synthetic.classes, name=synthetic.name))
    assert torch.equal(again.images[:], synthetic.images)


def test_index_select_equals_the_in_memory_tensor(synthetic, tmp_path):
    store = open_store(write_store(synthetic, tmp_path / "s")).to("cpu")
    g = torch.Generator().manual_seed(0)
    for n in (1, 17, 64, 300):
        idx = torch.randint(0, len(synthetic), (n,), generator=g)
        got = store.images.index_select(0, idx)
        assert got.dtype == torch.uint8 and got.is_contiguous()
        assert torch.equal(got, synthetic.images.index_select(0, idx))
    assert torch.equal(store.subset(idx).images, synthetic.subset(idx).images)
    with pytest.raises(IndexError):
        store.images.index_select(0, torch.tensor([len(synthetic)]))
    with pytest.raises(IndexError):
        store.images.index_select(0, torch.tensor([-1]))
    # prefetch hands out the same batches in the same order
    batches = list(torch.randperm(len(synthetic), generator=g).split(50))
    got = list(prefetch(store.images, batches, depth=2))
    assert [i for i, _ in got] == batches
    for idx, x in got:
        assert torch.equal(x, synthetic.images.index_select(0, idx))


@pytest.mark.parametrize("variant", ["simsiam", "ema"])
def test_memmap_store_trains_exactly_like_memory(tiny_overrides, tmp_path, variant):
    """One epoch on the synthetic set: the same losses and kNN from the store as from memory."""
    base = tiny_overrides + ["optim.epochs=1", "eval.linear=false", f"method.variant={variant}",
                             "data.n_train=256", "data.n_test=64"]
    mem = train(load_config("demo", base + [f"name=mem_{variant}"]))
    store_dir = tmp_path / "stores"
    mm = train(load_config("demo", base + [f"name=mm_{variant}", "data.store=memmap", f"data.store_dir={store_dir}"]))
    assert len(list((store_dir / "stores").iterdir())) == 2  # train and test, written once
    pick = lambda recs, key: [r[key] for r in recs if key in r]  # noqa: E731
    assert pick(mem, "train/loss") and pick(mm, "train/loss") == pick(mem, "train/loss")
    assert pick(mm, "eval/knn_top1") == pick(mem, "eval/knn_top1")


_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, torch
    from emsiam.data import open_store

    def vm(key):
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))

    store = open_store(sys.argv[1])
    nbytes = store.images.array.nbytes
    headroom = int(sys.argv[2])
    cap = vm("VmSize") + headroom  # torch, numpy and the store's mapping fit; little else does
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    rss0 = vm("RssAnon")
    try:
        full = np.load(store.images.array.filename)  # the in-memory path: the whole set in RAM
        loaded = True
    except MemoryError:
        loaded = False
    g = torch.Generator().manual_seed(0)
    ok = 0
    for _ in range(40):
        idx = torch.randint(0, len(store), (256,), generator=g)
        x = store.images.index_select(0, idx)
        i = idx.numpy()
        want = np.stack([i % 256, (i // 256) % 256, i // 65536], 1).astype(np.uint8)
        ok += int(np.array_equal(x[:, :, 0, 0].numpy(), want))
    rss1 = vm("RssAnon")
    print(json.dumps({"store_bytes": nbytes, "headroom": headroom, "full_load_succeeded": loaded,
                      "batches_ok": ok, "anon_rss_growth": rss1 - rss0, "file_rss": vm("RssFile"), "cap": cap}))
    """
)


def test_store_larger_than_a_memory_cap_still_serves_batches(tmp_path):
    """A 320 MB store, read in a child process whose address space is capped at what it has
    mapped after importing torch and opening the store plus 128 MB: loading the whole set
    into memory fails with MemoryError, while batches of random rows are still gathered
    (the right rows; the process's anonymous resident memory grows by far less than the store:
    file pages that the kernel maps around each read are page cache, reclaimable, and are not
    counted).

    RLIMIT_AS, not a cgroup: the cap is set in the child after torch is imported (torch maps
    ~3 GB of address space at import), at its then address-space size plus 128 MB. The store's
    mapping counts against the cap too, so what the cap proves is that training from the store
    needs no allocation of the set's size, while the in-memory path needs one."""
    n, size = 104_000, 32  # 104,000 x 3 x 32 x 32 bytes = 320 MB
    labels = np.zeros(n, dtype=np.int64)

    def chunks(rows: int = 8192):
        for a in range(0, n, rows):
            i = np.arange(a, min(a + rows, n))
            c = np.empty((len(i), 3, size, size), dtype=np.uint8)
            for ch, v in enumerate((i % 256, (i // 256) % 256, i // 65536)):
                c[:, ch] = v.astype(np.uint8)[:, None, None]
            yield c

    path = write_store(chunks(), tmp_path / "big", labels=labels, classes=["x"], name="big/train")
    headroom = 128 * 2**20
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(headroom)], capture_output=True,
                         text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(r)
    assert r["store_bytes"] == n * 3 * size * size > 2 * headroom
    assert r["full_load_succeeded"] is False
    assert r["batches_ok"] == 40
    assert r["anon_rss_growth"] < r["store_bytes"] / 10  # batch buffers, not the set
