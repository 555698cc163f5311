"""Console progress: bars that do not flood logs, and the one-line epoch summary.

In a terminal, :func:`progress_bar` is an ordinary tqdm bar. When stderr is not a
terminal (a pipe, a log file, a sweep's ``log.txt``) it prints one plain line at
most every ``LOG_INTERVAL_S`` seconds, plus the last state, instead of a stream of
carriage-return updates on one line.
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from tqdm.auto import tqdm

#: Seconds between two lines of a bar that is not on a terminal.
LOG_INTERVAL_S = 30.0


class _Lines:
    """File wrapper for tqdm: each refresh becomes one newline-terminated line; clears are dropped."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._last = ""

    def write(self, s: str) -> None:
        text = s.replace("\r", "").replace("\x1b[A", "").strip()
        if text and text != self._last:
            self.stream.write(text + "\n")
            self._last = text

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
                 leave: bool = False, stream: TextIO | None = None, **kw: Any) -> tqdm:
    """A tqdm bar; outside a terminal, a line every ``LOG_INTERVAL_S`` seconds (see module docstring)."""
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=leave, file=stream,
                    dynamic_ncols=True, **kw)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=True, file=_Lines(stream),
                mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, delay=LOG_INTERVAL_S, ncols=100,
                ascii=True, **kw)


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def epoch_summary(record: dict[str, Any], epochs: int, eta_s: float | None = None, name: str | None = None) -> str:
    """One console line for an epoch's metrics record.

    ``epoch 3/10  loss -0.6123  knn 48.20  z_std*sqrt(d) 0.96  412 pairs/s  ETA 4m12s``: kNN and
    z-std only when the record carries an evaluation. ``eta_s`` defaults to the remaining
    epochs times this epoch's time (``time/epoch_s``; evaluation time not included).
    """
    epoch = int(record.get("epoch", 0))
    parts = [f"epoch {epoch}/{epochs}"]
    if name:
        parts.insert(0, f"[{name}]")
    if "train/loss" in record:
        parts.append(f"loss {record['train/loss']:.4f}")
    if "eval/knn_top1" in record:
        parts.append(f"knn {record['eval/knn_top1']:.2f}")
    if "eval/linear_top1" in record:
        parts.append(f"linear {record['eval/linear_top1']:.2f}")
    if "collapse/z_std_sqrt_d" in record:
        parts.append(f"z_std*sqrt(d) {record['collapse/z_std_sqrt_d']:.2f}")
    if "time/pairs_per_s" in record:
        parts.append(f"{record['time/pairs_per_s']:.0f} pairs/s")
    if eta_s is None and "time/epoch_s" in record:
        eta_s = max(epochs - epoch, 0) * float(record["time/epoch_s"])
    if eta_s is not None:
        parts.append(f"ETA {format_duration(eta_s)}")
    return "  ".join(parts)
