"""Batch gathers from the memory-mapped store (data.store=memmap) against the in-memory tensor.

    python benchmarks/datastore_bench.py [--n 50000] [--size 32] [--batch 256] [--rounds 15]
        [--per-round 20] [--device cpu|cuda] [--dir /tmp] [--json out.json]

Writes a random uint8 set of --n images (--size px; 50,000 x 32 x 32 is CIFAR-10's train
split, 154 MB) once as a store, then times ``images.index_select(0, idx)`` for batches of
--batch random rows (a fresh permutation, as in an epoch) from both the in-memory tensor and
the store, side by side: each round runs --per-round batches of one then of the other (the
order alternating between rounds), and batches/s are the medians over rounds. The store's
file was just written, so it is read from the page cache (the warm case); a last phase drops
the file's pages (posix_fadvise DONTNEED; on a VM the host may still cache the disk) and
times --per-round batches again (the cold case). With --device cuda both paths end on the
GPU: the in-memory tensor lives there, the store gathers into pinned memory and copies.
Writes JSON (default benchmarks/results/datastore-<device>.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_io import device_label, sync, write_json  # noqa: E402
from emsiam.data import open_store, write_store  # noqa: E402


def time_batches(images, batches: list[torch.Tensor], device: torch.device) -> float:
    """Batches per second of gathering ``batches`` from ``images``."""
    sync(device)
    t0 = time.perf_counter()
    for idx in batches:
        images.index_select(0, idx)
    sync(device)
    return len(batches) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--per-round", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    ap.add_argument("--dir", default=None, help="where the temporary store is written (default: the temp dir)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    g = torch.Generator().manual_seed(0)
    host = torch.randint(0, 256, (args.n, 3, args.size, args.size), dtype=torch.uint8, generator=g)
    tmp = Path(tempfile.mkdtemp(prefix="emsiam-store-bench.", dir=args.dir))
    try:
        t0 = time.perf_counter()
        path = write_store(host, tmp / "store", labels=torch.zeros(args.n, dtype=torch.int64))
        write_s = time.perf_counter() - t0
        memory = host.to(device)
        store = open_store(path, device).images
        check = torch.randint(0, args.n, (args.batch,), generator=g)
        assert torch.equal(store.index_select(0, check).cpu(), host.index_select(0, check))

        perm = torch.randperm(args.n, generator=g)
        pool = [perm[i : i + args.batch] for i in range(0, args.n - args.batch + 1, args.batch)]

        def batches(r: int) -> list[torch.Tensor]:
            return [pool[(r * args.per_round + j) % len(pool)] for j in range(args.per_round)]

        def on_device(bs: list[torch.Tensor]) -> list[torch.Tensor]:  # as fit() sees them: on the data device
            return [b.to(device) for b in bs]

        time_batches(memory, on_device(batches(0)), device)  # warm-up
        time_batches(store, on_device(batches(0)), device)
        mem_rates, store_rates = [], []
        for r in range(1, args.rounds + 1):
            bs = on_device(batches(r))
            pair = [(memory, mem_rates), (store, store_rates)]
            for images, rates in pair if r % 2 else pair[::-1]:
                rates.append(time_batches(images, bs, device))

        cold = None
        if hasattr(os, "posix_fadvise"):
            fd = os.open(path / "images.npy", os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            cold_store = open_store(path, device).images
            cold = time_batches(cold_store, on_device(batches(args.rounds + 1)), device)
            del cold_store
        del store
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mem, mm = statistics.median(mem_rates), statistics.median(store_rates)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {
        "date": date.today().isoformat(),
        "device": device_label(device),
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15": load,
        "note": ("shared, loaded machine (2 cores, a background experiment running): absolute rates "
                 "are noisy; the ratio of interleaved medians is the figure to read"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "n_images": args.n,
        "image_size": args.size,
        "store_mb": round(args.n * 3 * args.size**2 / 2**20, 1),
        "batch": args.batch,
        "rounds": args.rounds,
        "batches_per_round": args.per_round,
        "write_store_s": round(write_s, 3),
        "memory_batches_per_s": round(mem, 1),
        "memmap_batches_per_s": round(mm, 1),
        "memmap_over_memory": round(mm / mem, 3),
        "memmap_cold_batches_per_s": None if cold is None else round(cold, 1),
        "memory_rounds": [round(x, 1) for x in mem_rates],
        "memmap_rounds": [round(x, 1) for x in store_rates],
    }
    out = args.json or Path(__file__).parent / "results" / f"datastore-{device.type}.json"
    write_json(result, out)
    print(f"memory  {mem:9.1f} batches/s ({mem * args.batch:,.0f} images/s)")
    print(f"memmap  {mm:9.1f} batches/s ({mm * args.batch:,.0f} images/s)  ratio {mm / mem:.3f}")
    if cold is not None:
        print(f"memmap, cold page cache: {cold:.1f} batches/s")
    print(f"machine: {os.cpu_count()} cores, load {load}; shared and loaded, so rates are noisy -> {out}")


if __name__ == "__main__":
    main()
