"""Row checksums of the file banks: a 64-bit weighted sum of each row's words (5x faster than
crc32 per row), and a crc32 over the versions and checksums themselves. Part of the file
format; why this sum: docs/banks.md, "Row checksums"."""

from __future__ import annotations

import functools
import zlib

import numpy as np


@functools.lru_cache(maxsize=8)
def _sum_weights(n_words: int) -> np.ndarray:
    """Fixed odd 64-bit weights (splitmix64 of the word position): part of the file format."""
    x = np.arange(1, n_words + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x | np.uint64(1)


def _row_sums(data: np.ndarray) -> np.ndarray:
    """(B,) uint64 checksum of each row's bytes: sum_i w_i * word_i mod 2^64, w_i odd.

    Any change to one word changes the sum; random bytes go unnoticed with probability
    ~2^-64. ~5x faster than zlib.crc32 per row (docs/banks.md)."""
    b = data.shape[0]
    if b == 0:
        return np.empty(0, np.uint64)
    raw = np.ascontiguousarray(data).reshape(b, -1).view(np.uint8)
    size = raw.shape[1]
    word = next(w for w in (8, 4, 2, 1) if size % w == 0)
    words = raw.view(np.dtype(f"<u{word}"))
    if word != 8:
        words = words.astype(np.uint64)
    return np.einsum("ij,j->i", words, _sum_weights(words.shape[1]))


def _table_check(versions: np.ndarray, sums: np.ndarray) -> int:
    """crc32 of the versions and row checksums, kept beside them."""
    return zlib.crc32(np.ascontiguousarray(sums), zlib.crc32(np.ascontiguousarray(versions)))
