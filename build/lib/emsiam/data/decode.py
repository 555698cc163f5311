"""Decode encoded images (JPEG, PNG, ...) with Pillow to uint8 ``(3, H, W)`` arrays.

Any Pillow mode becomes RGB (transparency over white, 16-bit grayscale
scaled), EXIF orientation is applied, and an optional square size is reached
by a shorter-side resize and centre crop. Large sets are decoded in a pool
of forked worker processes, in chunks, with bounded memory.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import multiprocessing as mp
import os
import sys
import warnings
from collections import deque
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from ..progress import progress_bar
from .imageset import SPLITS, DataError

__all__ = ["decode_all"]

_DECODE_CHUNK = 512


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited over white."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit grayscale
        arr = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and arr.max() > 255):
            arr = arr / 257.0
        elif im.mode == "F" and arr.max() <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(arr.round(), 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _decode_image(data: bytes, size: int | None) -> np.ndarray:
    """Decode one encoded image to a uint8 ``(3, H, W)`` array (resized to ``size`` if given)."""
    with Image.open(io.BytesIO(data)) as im:
        if size is not None:
            im.draft(None, (size, size))  # JPEG: decode at a reduced scale that is still >= size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # malformed EXIF should not cost the image
            orientation = 1
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        rgb = _to_rgb(im)
        w, h = rgb.size
        if size is not None and (w, h) != (size, size):
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)  # antialiased when shrinking
            left, top = (nw - size) // 2, (nh - size) // 2
            rgb = rgb.crop((left, top, left + size, top + size))
        return np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1))


def _decode_chunk(blobs: list[bytes], size: int | None) -> list[np.ndarray | str]:
    """Decode a list of images; failures come back as error strings."""
    out: list[np.ndarray | str] = []
    for data in blobs:
        try:
            out.append(_decode_image(data, size))
        except Exception as err:  # corrupt, truncated, unsupported: reported, not fatal
            out.append(f"{type(err).__name__}: {err}")
    return out


def _decode_workers() -> int:
    """Worker processes for decoding (``$EMSIAM_DECODE_WORKERS`` overrides; <= 1: in-process)."""
    env = os.environ.get("EMSIAM_DECODE_WORKERS")
    if env:
        return int(env)
    if not sys.platform.startswith("linux"):  # only 'fork' starts workers cheaply
        return 0
    return min(8, len(os.sched_getaffinity(0)))


class _Decoder:
    """Decode ``(key, bytes)`` items in chunks, in a process pool once there is enough work.

    The pool starts only when a full chunk is pending, so small sets never pay
    for it; at most two chunks per worker are in flight, which bounds memory.
    """

    def __init__(self, size: int | None, workers: int, progress: tqdm) -> None:
        self.size, self.workers, self.progress = size, workers, progress
        self.pool: cf.ProcessPoolExecutor | None = None
        self.pending: deque[tuple[list[str], cf.Future[list[np.ndarray | str]]]] = deque()
        self.keys: list[str] = []
        self.arrays: list[np.ndarray] = []
        self.failed: list[tuple[str, str]] = []
        self._keys: list[str] = []
        self._blobs: list[bytes] = []

    def add(self, key: str, data: bytes) -> None:
        self._keys.append(key)
        self._blobs.append(data)
        if len(self._blobs) >= _DECODE_CHUNK:
            self._submit()

    def finish(self) -> None:
        if self._blobs:
            self._submit()
        while self.pending:
            self._collect()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self) -> None:
        keys, blobs = self._keys, self._blobs
        self._keys, self._blobs = [], []
        if self.pool is None and self.workers > 1 and len(blobs) >= _DECODE_CHUNK:
            self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"))
        if self.pool is None:
            fut: cf.Future[list[np.ndarray | str]] = cf.Future()
            fut.set_result(_decode_chunk(blobs, self.size))
        else:
            fut = self.pool.submit(_decode_chunk, blobs, self.size)
        self.pending.append((keys, fut))
        while len(self.pending) > 2 * max(1, self.workers):
            self._collect()

    def _collect(self) -> None:
        keys, fut = self.pending.popleft()
        for key, result in zip(keys, fut.result()):
            if isinstance(result, str):
                self.failed.append((key, result))
                continue
            if self.arrays and result.shape != self.arrays[0].shape:
                _, h0, w0 = self.arrays[0].shape
                raise DataError(
                    f"Images differ in size ({w0}x{h0} in '{self.keys[0]}', "
                    f"{result.shape[2]}x{result.shape[1]} in '{key}'); "
                    "set data.image_size=N to resize them all to NxN."
                )
            self.keys.append(key)
            self.arrays.append(result)
        self.progress.update(len(keys))


def decode_all(
    items: Iterable[tuple[str, bytes]], size: int | None, total: int | None, desc: str
) -> tuple[dict[str, list[tuple[str, np.ndarray]]], list[tuple[str, str]]]:
    """Decode ``(key, bytes)`` items; return ``{split: [(key, image), ...]}`` and the failures."""
    with progress_bar(total=total, desc=desc, unit="img", leave=True) as bar:  # plain lines when piped
        dec = _Decoder(size, _decode_workers(), bar)
        try:
            with warnings.catch_warnings():
                # Python >= 3.12 warns about fork() in a threaded process; workers only run Pillow.
                warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks")
                for key, data in items:
                    dec.add(key, data)
                dec.finish()
        finally:
            dec.close()
    by_split: dict[str, list[tuple[str, np.ndarray]]] = {s: [] for s in SPLITS}
    for key, array in zip(dec.keys, dec.arrays):
        by_split[key.split("/", 1)[0]].append((key, array))
    return by_split, dec.failed
