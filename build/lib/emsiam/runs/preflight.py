"""Checks before any data is loaded: the device, the batch against the dataset size, the data
source, a writable out_dir. A bad setting fails in a second, not after the data is read."""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path

import torch

from ..config import Config, ConfigError, DeviceError

#: Training-set sizes known without loading the data (``synthetic`` generates this many
#: images when ``data.n_train`` is unset; the torchvision sources' train splits).
KNOWN_TRAIN_SIZES = {"synthetic": 10_000, "cifar10": 50_000, "cifar100": 50_000, "stl10": 5_000}


def check_device(name: str) -> None:
    """Refuse a device this machine does not have (:class:`DeviceError`)."""
    if name in ("auto", "cpu"):
        return
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
            raise DeviceError(f"device={name}: CUDA is not available on this machine (torch {torch.__version__}, "
                              f"built {built}); use device=cpu or device=auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                              "use device=cuda or a smaller index")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device={name}: MPS is not available on this machine; use device=cpu or device=auto")


def _npz_count(path: Path) -> int | None:
    """Number of images in an npz file, from the ``images`` array header only (None if unknown)."""
    import numpy as np

    try:
        with zipfile.ZipFile(path) as z, z.open("images.npy") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape = read(f)[0]  # header only, no data
            return int(shape[0]) if shape else None
    except Exception:  # noqa: BLE001 - the loader reports a malformed file properly later
        return None


def known_train_size(cfg: Config) -> int | None:
    """Training-set size from the source's metadata (None when only loading would tell)."""
    dc = cfg.data
    total = KNOWN_TRAIN_SIZES.get(dc.source)
    if dc.source == "synthetic" and dc.n_train is not None:
        return dc.n_train
    if dc.source == "npz" and dc.root:
        from ..data import npz_paths

        total = _npz_count(npz_paths(Path(os.path.expanduser(dc.root)))["train"])
    if dc.n_train is not None:
        return min(dc.n_train, total) if total is not None else dc.n_train
    return total


def check_writable(run_dir: Path) -> None:
    """Raise OSError (EACCES or EROFS) unless ``run_dir`` (or the folder that will hold it) is writable."""
    p = Path(run_dir).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise OSError(errno.ENOTDIR, f"Not a directory (out_dir={p})", str(p))
    for q in [p] + ([p / "checkpoints"] if (p / "checkpoints").is_dir() else []):
        if not os.access(q, os.W_OK | os.X_OK):
            rdonly = bool(os.statvfs(q).f_flag & os.ST_RDONLY)
            code = errno.EROFS if rdonly else errno.EACCES
            raise OSError(code, os.strerror(code), str(q))


def preflight(cfg: Config) -> None:
    """Everything that can be checked before loading data: the device, the batch against the
    dataset size (where the source's metadata tells it), the data source, a writable out_dir."""
    from ..data import check_source

    check_device(cfg.device)
    n = known_train_size(cfg)
    if n is not None and n < cfg.optim.batch_size:
        raise ConfigError(
            f"optim.batch_size={cfg.optim.batch_size} exceeds the training set ({n} images of "
            f"data.source={cfg.data.source}); lower optim.batch_size or raise data.n_train"
        )
    check_source(cfg.data.source, cfg.data.root, cfg.data.download)
    check_writable(cfg.run_dir)
