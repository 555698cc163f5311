"""Shared by the benchmark scripts: how a machine is named, how steps are timed, how results are written."""

from __future__ import annotations

import itertools
import json
import platform
import time
from pathlib import Path
from typing import Callable, Iterator

import torch


def device_label(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture and torch thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def write_json(result: dict, path: str | Path) -> Path:
    """Write ``result`` as indented JSON to ``path`` (parents created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def sync(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU), so that wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(step: Callable[[], object], n: int, batch: int, device: torch.device) -> float:
    """Images per second of ``n`` calls of ``step`` (each a batch of ``batch`` images)."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return n * batch / (time.perf_counter() - t0)


def batch_stream(s, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (idx, uint8 images) training batches of a Setup, epoch after epoch, as fit() draws them."""
    for epoch in itertools.count():
        for idx in s.batches.indices(epoch).split(batch):
            if len(idx) == batch:
                yield idx, s.train.images.index_select(0, idx)
