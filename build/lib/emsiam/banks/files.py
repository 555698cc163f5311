"""Durable file operations of the file banks: fsync of a file or its directory, an atomic
no-overwrite move into place, removal, and a file's sha256."""

from __future__ import annotations

import hashlib
import os

from .base import BankError


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_into_place(tmp: str, path: str) -> None:
    """Move a finished file to `path`, failing (never overwriting) if `path` exists."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        raise BankError(f"{path} appeared while the bank was being created; refusing to overwrite it") from None
    except OSError:  # filesystems without hard links
        if os.path.exists(path):
            os.unlink(tmp)
            raise BankError(f"{path} appeared while the bank was being created; refusing to overwrite it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
