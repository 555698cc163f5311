"""Shared by the benchmark scripts: how a machine is named, and how results are written."""

from __future__ import annotations

import json
import platform
from pathlib import Path

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
