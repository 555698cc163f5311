"""Checkpoint files: written atomically, loaded without unpickling arbitrary objects, checked
cheaply before a resume; the RNG states they carry."""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .files import replacing

CKPT = "checkpoints/last.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _cpu_bytes(t: torch.Tensor) -> torch.Tensor:
    """An RNG state as the CPU ByteTensor torch's setters require (whatever device it was loaded on)."""
    if t.device.type == "meta":
        raise CheckpointError("RNG state was loaded on the meta device (no data); load checkpoints "
                              "with emsiam.runs.load_checkpoint, which keeps RNG states on the CPU")
    return t.to("cpu", torch.uint8)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states saved by :func:`rng_state` (moved to the CPU first)."""
    torch.set_rng_state(_cpu_bytes(state["torch"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_cpu_bytes(t) for t in state["cuda"]])


class _Writer:
    """A file wrapper that remembers the OSError of a failed write."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, b) -> int:
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically: a failed write (disk full, read-only) raises
    the OSError naming ``path`` and leaves the previous file in place."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        w = _Writer(f)
        try:
            torch.save(state, w)
        except RuntimeError:
            if w.error is not None:  # torch hides the OSError of the write behind a RuntimeError
                raise w.error from None
            raise


def check_checkpoint_file(path: str | Path) -> None:
    """Cheap structural check of a checkpoint (no tensors read): CheckpointError if it is empty,
    truncated or not a torch zip archive."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(_ckpt_msg(path, "it is empty (0 bytes)"))
    try:
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                raise CheckpointError(_ckpt_msg(path, "it is a zip file but not a torch checkpoint"))
    except zipfile.BadZipFile:
        raise CheckpointError(_ckpt_msg(path, f"it is truncated or corrupt ({size} bytes, no valid archive)")) from None


def _ckpt_msg(path: Path, why: str) -> str:
    return (f"checkpoint {path} cannot be read: {why}. Move it aside and restore a good copy, "
            f"or start the run anew (delete {path.parent.parent} or choose another name=...)")


def _tree_to(obj: Any, device: str | torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _tree_to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_tree_to(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_tree_to(v, device) for v in obj)
    return obj


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``).

    Tensors go to ``map_location``, except the RNG states (``rng``), which stay on the CPU
    where torch's RNG setters need them. An unreadable file raises :class:`CheckpointError`
    naming it."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(_ckpt_msg(path, f"refused as unsafe or corrupt ({str(e).splitlines()[0]})")) from None
    except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(_ckpt_msg(path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")) from None
    if not isinstance(state, dict):
        raise CheckpointError(_ckpt_msg(path, f"it holds a {type(state).__name__}, not a dict"))
    if torch.device(map_location).type != "cpu":
        state = {k: (v if k == "rng" else _tree_to(v, map_location)) for k, v in state.items()}
    return state
