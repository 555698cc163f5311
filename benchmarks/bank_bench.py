"""Target-bank throughput: random-batch reads and writes at ImageNet scale.

    python benchmarks/bank_bench.py --rows 1281167 --dim 2048 --dtype fp16 --batch 512 --seconds 20 \\
        --path /tmp/bank.h5 [--backend disk|memmap|device] [--json out.json] [--delete]

Creates the bank at --path (or reopens it if it is there: then creation is not timed again,
and the file is read once so that the phases start with it in the page cache, as after a
fill), fills every row once if it has never been committed (the EMA init pass: sequential
blocks, then flush), and measures, each for --seconds, with batches of B random row ids taken from a
permutation (like an epoch):

- ``read``: bank.read(idx);
- ``write``: bank.write(idx, eta, version) with eta a (B, V, d) fp32 tensor, then one flush()
  (the commit of everything written in the phase, timed apart);
- ``read+write``: a read then a write of the same batch (one training step of the EMA
  variant), then one flush();
- ``read (cold)``: reads after closing the bank and dropping its files' pages from the
  page cache (posix_fadvise DONTNEED on those files only; --cold-seconds, 0 to skip). On a
  VM the host may still cache the virtual disk.

torch runs single-threaded by default (--threads): see the comment in main().

The writing phases use one version per batch and flush at every epoch boundary (each
permutation of all rows; the EMA engine's schedule) and once at the end, so reads within an
epoch come from the bank file, not from the journal. Reports rows/s from the median batch
time, rows/s from the summed batch times (mean), and for the writing phases rows/s including
all flushes (the sustained figure). Target: >= 50,000 rows/s read+write.
Writes JSON (default benchmarks/results/bank-<backend>-<rows>x<dim>-<dtype>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from emsiam.banks import make_bank


def _files(bank) -> list[str]:
    return [p for p in bank._store_files() if os.path.exists(p)] if hasattr(bank, "_store_files") else []


def _disk_bytes(paths) -> int:
    return sum(os.stat(p).st_blocks * 512 for p in paths)


def _warm(paths) -> None:
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(64 << 20):
                pass


def _drop_cache(paths) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _phase(name, bank, rng, batch, seconds, eta, version, do_read, do_write):
    """Epochs of random batches for `seconds`; writing phases flush at each epoch's end."""
    n_rows = bank.n_rows
    times, flushes, n, x = [], [], 0, None
    perm, pos = torch.from_numpy(rng.permutation(n_rows)), 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if pos + batch > n_rows:  # epoch boundary: commit it (EMA engine), reshuffle
            if do_write:
                t = time.perf_counter()
                bank.flush()
                flushes.append(time.perf_counter() - t)
            perm, pos = torch.from_numpy(rng.permutation(n_rows)), 0
        idx = perm[pos : pos + batch]
        pos += batch
        t = time.perf_counter()
        if do_read:
            x = bank.read(idx)
        if do_write:
            bank.write(idx, eta, version)
            version += 1
        times.append(time.perf_counter() - t)
        n += batch
    if do_write:  # commit the last, partial epoch
        t = time.perf_counter()
        bank.flush()
        flushes.append(time.perf_counter() - t)
    calls_s, flush_s = sum(times), sum(flushes)
    med = statistics.median(times)
    del x
    return {
        "phase": name,
        "batches": len(times),
        "rows": n,
        "calls_s": calls_s,
        "median_batch_ms": 1e3 * med,
        "rows_per_s_median": batch / med,
        "rows_per_s_mean": n / calls_s,
        "flushes": len(flushes),
        "flush_s": flush_s if do_write else None,
        "rows_per_s_with_flush": n / (calls_s + flush_s) if do_write else None,
    }, version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1281167)
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--dtype", default="fp16")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=20.0, help="per phase")
    ap.add_argument("--cold-seconds", type=float, default=10.0, help="cold-cache read phase (0 = skip)")
    ap.add_argument("--backend", default="disk", choices=["disk", "memmap", "device"])
    ap.add_argument("--path", default="/tmp/bank.h5", help="memmap: a .h5 suffix becomes .npy")
    ap.add_argument("--chunk-rows", type=int, default=0, help="disk: 0 = contiguous, >0 = HDF5 chunk rows")
    ap.add_argument("--no-durable", action="store_true", help="skip fsyncs at commit points")
    ap.add_argument("--fill-block", type=int, default=16384, help="rows per write in the fill pass")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--delete", action="store_true", help="delete the bank files at the end")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    # On a small shared machine a 2-thread OpenMP region stalls for a scheduler slice (~8 ms
    # measured on 2 shared cores) whenever another process holds a core; the bank's per-batch
    # work is memory-bound copies, so the default measures it single-threaded.
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = args.path
    if args.backend == "memmap" and path.endswith(".h5"):
        path = path[:-3] + ".npy"
    kw = {} if args.backend == "device" else {"path": path, "durable": not args.no_durable}
    if args.backend == "disk":
        kw["chunk_rows"] = args.chunk_rows
    N, V, d, B = args.rows, args.views, args.dim, args.batch

    t = time.perf_counter()
    bank = make_bank(args.backend, N, V, d, dtype=args.dtype, **kw)
    create_s = time.perf_counter() - t
    created = getattr(bank, "created", True)
    print(f"{'created' if created else 'reopened'} {bank!r} at {path if args.backend != 'device' else 'RAM'} "
          f"in {create_s:.2f} s", flush=True)

    fill = warm_s = None
    if not created and _files(bank):  # a reused file may be cold: read it once, so phases start warm
        t = time.perf_counter()
        _warm(_files(bank))
        warm_s = time.perf_counter() - t
        print(f"warmed the page cache in {warm_s:.1f} s", flush=True)
    if bank.committed_version < 0:
        block = torch.randn(min(args.fill_block, N), V, d)
        t = time.perf_counter()
        for s in range(0, N, args.fill_block):
            e = min(N, s + args.fill_block)
            bank.write(torch.arange(s, e), block[: e - s], 0)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        bank.flush()
        flush_s = time.perf_counter() - t
        fill = {"write_s": write_s, "flush_s": flush_s, "total_s": write_s + flush_s,
                "rows_per_s": N / (write_s + flush_s)}
        print(f"fill: write {write_s:.1f} s + flush {flush_s:.1f} s = {fill['rows_per_s']:,.0f} rows/s", flush=True)

    rng = np.random.default_rng(0)
    eta = torch.randn(B, V, d)  # what the encoder hands over: fp32
    version = bank.committed_version + 1  # one version per step, like the EMA variant
    rows = []
    for name, r, w in [("read", True, False), ("write", False, True), ("read+write", True, True)]:
        row, version = _phase(name, bank, rng, B, args.seconds, eta, version, r, w)
        rows.append(row)
        print(f"  {name}: {row['rows_per_s_median']:,.0f} rows/s (median batch)", flush=True)
    files = _files(bank)
    disk_bytes = _disk_bytes(files) if files else 0
    reopen_s = None
    if args.cold_seconds > 0 and files:
        bank.close()  # unmap, so that the pages can be dropped
        _drop_cache(files)
        t = time.perf_counter()
        bank = make_bank(args.backend, N, V, d, dtype=args.dtype, **kw)
        reopen_s = time.perf_counter() - t
        rows.append(_phase("read (cold)", bank, rng, B, args.cold_seconds, eta, 0, True, False)[0])
    bank.close()

    print(f"\nbank {args.backend} {N} x {V} x {d} {args.dtype}, B={B}, {bank.nbytes / 1e9:.2f} GB "
          f"({disk_bytes / 1e9:.2f} GB on disk); create {create_s:.2f} s"
          + (f"; fill {fill['total_s']:.1f} s ({fill['rows_per_s']:,.0f} rows/s)" if fill else "")
          + (f"; reopen {reopen_s:.2f} s" if reopen_s is not None else "")
          + f"; durable={not args.no_durable}, threads={args.threads}")
    hdr = (f"{'phase':<12} {'rows/s (median)':>16} {'rows/s (mean)':>14} {'flushes':>8} {'flush s':>8} "
           f"{'rows/s incl. flush':>19}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        fl = "" if r["flush_s"] is None else f"{r['flush_s']:.2f}"
        wf = "" if r["rows_per_s_with_flush"] is None else f"{r['rows_per_s_with_flush']:,.0f}"
        print(f"{r['phase']:<12} {r['rows_per_s_median']:>16,.0f} {r['rows_per_s_mean']:>14,.0f} "
              f"{r['flushes'] or '':>8} {fl:>8} {wf:>19}")

    out = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"bank-{args.backend}-{N}x{V}x{d}-{args.dtype}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "args": vars(args),
        "path": path if args.backend != "device" else None,
        "bank_bytes": bank.nbytes,
        "disk_bytes": disk_bytes,
        "created": created,
        "create_s": create_s,
        "reopen_s": reopen_s,
        "warm_s": warm_s,
        "fill": fill,
        "phases": rows,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    if args.delete and files:
        for p in files:
            os.unlink(p)
        print(f"deleted {', '.join(files)}")


if __name__ == "__main__":
    main()
