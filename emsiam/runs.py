"""Run directories: resolved config, metrics.jsonl, git sha, checkpoints, resume, lock.

Layout of ``<out_dir>/<name>/``::

    config.yaml        the resolved config (every key, after overrides)
    git.txt            one line per start: git sha of the code (plus "-dirty" if uncommitted
                       changes), UTC time, "start" or "resume" (the code version of every segment)
    metrics.jsonl      one JSON record per evaluation / epoch
    checkpoints/last.pt  model, optimizer, RNG states, step, epoch (and any extra state)
    run.lock           the writer's lock: pid, host and start time of the process holding it

Checkpoints and metrics are written atomically (temporary file + ``os.replace``),
so an interrupted run never leaves a half-written file behind.

The writing process (rank 0) holds an exclusive ``flock`` on ``run.lock`` from
:meth:`Run.open` until it exits, so a second run into the same directory is
refused with the holder's pid. The kernel drops the lock when its holder dies
(even by ``kill -9``); the next run then finds the lock file free, says whose
stale lock it takes over, and goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import pickle
import random
import re
import socket
import subprocess
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from . import distributed, loggers
from .config import Config, ConfigError, DeviceError, diff, from_dict, to_dict

CKPT = "checkpoints/last.pt"
LOCK = "run.lock"

#: Training-set sizes known without loading the data (``synthetic`` generates this many
#: images when ``data.n_train`` is unset; the torchvision sources' train splits).
KNOWN_TRAIN_SIZES = {"synthetic": 10_000, "cifar10": 50_000, "cifar100": 50_000, "stl10": 5_000}


class RunError(RuntimeError):
    """The run directory cannot be used as asked (exists, mismatched config, ...)."""

    exit_code = 4


class RunLocked(RunError):
    """Another live process holds the run directory's lock."""

    exit_code = 9


class CheckpointError(RunError):
    """A checkpoint file cannot be read: empty, truncated, corrupt, or refused as unsafe."""

    exit_code = 5


def code_versions(run_dir: str | Path) -> list[str]:
    """The distinct git shas a run was trained with, in order of first use (from git.txt)."""
    path = Path(run_dir) / "git.txt"
    shas = [line.split()[0] for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return list(dict.fromkeys(shas))


def git_sha() -> str:
    """Short git sha of the package's checkout, ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _named(e: OSError, path: Path) -> OSError:
    """``e`` with ``path`` as its file name (writes to an open file raise OSErrors without one)."""
    return e if e.filename else OSError(e.errno, e.strerror, str(path))


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically, on any
    failure it is removed (an OSError is re-raised naming the file) and ``path`` is untouched."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _named(e, path) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    with _replacing(path) as tmp:
        tmp.write_text(text)


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


# --------------------------------------------------------------------------
# the run-directory lock

_held: dict[Path, int] = {}  # resolved run dir -> fd of the lock this process holds


def _lock_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds")}


def _read_lock_record(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        rec = json.loads(raw.decode()) if raw.strip() else {}
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(rec: dict[str, Any]) -> str:
    if not rec or rec.get("pid") is None:
        return "another process (its lock record is not readable yet)"
    return f"pid {rec.get('pid', '?')} on host {rec.get('host', '?')} (started {rec.get('started', '?')})"


def lock_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """The lock record (pid, host, started) of the live process holding ``run_dir``'s lock,
    or None when no process holds it (a lock file left by a dead process is not held)."""
    run_dir = Path(run_dir)
    if run_dir.resolve() in _held:
        return _read_lock_record(_held[run_dir.resolve()])
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_lock_record(fd) or {"pid": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def acquire_lock(run_dir: str | Path, wait_s: float = 0.5) -> dict[str, Any] | None:
    """Take the exclusive lock of ``run_dir`` (created if needed) for the life of this process.

    Raises :class:`RunLocked` naming the holder if another live process keeps it for
    ``wait_s`` seconds. Returns the record of a stale lock taken over (its holder died
    without releasing it), else None. Re-entrant within one process."""
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _held:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _read_lock_record(fd)
                os.close(fd)
                raise _locked(run_dir, holder) from None
            time.sleep(0.05)
    try:
        stale = _read_lock_record(fd) or None
        data = (json.dumps(_lock_record()) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except BaseException:
        os.close(fd)
        raise
    _held[key] = fd
    return stale


def _locked(run_dir: Path, holder: dict[str, Any]) -> RunLocked:
    return RunLocked(f"run directory {run_dir} is in use by {_describe(holder)} (lock file {run_dir / LOCK}); "
                     "wait for that run to finish or stop it, or choose another name=...")


def release_lock(run_dir: str | Path) -> None:
    """Release this process's lock on ``run_dir`` (emptying the lock file); no-op if not held."""
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)  # an empty lock file: the run ended cleanly
    except OSError:
        pass
    finally:
        os.close(fd)  # closing the last descriptor drops the flock


@atexit.register
def _release_all() -> None:
    for d in list(_held):
        release_lock(d)


# --------------------------------------------------------------------------
# checks before any data is loaded


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
        from .data import _npz_paths

        total = _npz_count(_npz_paths(Path(os.path.expanduser(dc.root)))["train"])
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
    from .data import check_source

    check_device(cfg.device)
    n = known_train_size(cfg)
    if n is not None and n < cfg.optim.batch_size:
        raise ConfigError(
            f"optim.batch_size={cfg.optim.batch_size} exceeds the training set ({n} images of "
            f"data.source={cfg.data.source}); lower optim.batch_size or raise data.n_train"
        )
    check_source(cfg.data.source, cfg.data.root, cfg.data.download)
    check_writable(cfg.run_dir)


# --------------------------------------------------------------------------
# the run directory


class Run:
    """A run directory. Use :meth:`open` to create it or to resume it."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dir = cfg.run_dir
        self.ckpt_path = self.dir / CKPT
        self.metrics_path = self.dir / "metrics.jsonl"

    @property
    def writer(self) -> bool:
        """With several processes only rank 0 writes (config, git sha, metrics, checkpoints); all read."""
        return distributed.is_main()

    @classmethod
    def open(cls, cfg: Config) -> "Run":
        """Check everything cheap (:func:`preflight`), validate the directory against ``cfg``,
        and (rank 0) take the directory's lock, all before any data is loaded.

        - new run: the directory must not hold a checkpoint or metrics (nothing is overwritten);
        - ``resume=true``: the saved config must equal ``cfg`` up to resume-free keys,
          otherwise the diff is reported and nothing is touched;
        - ``resume=true`` on a run that died before its first checkpoint: the same config
          starts again from scratch (``cfg.resume`` is cleared), with a warning; the dead
          attempt's metrics are moved aside to ``metrics.jsonl.stale-<time>``.
        """
        run = cls(cfg)
        preflight(cfg)
        writer = distributed.env_rank() == 0  # the process group does not exist yet
        holder = lock_holder(run.dir) if writer and run.dir.resolve() not in _held else None
        if holder is not None:  # a live writer: say so, whatever the directory holds so far
            raise _locked(run.dir, holder)
        restart = run._validate()  # refuse before writing anything (not even the lock file)
        if writer:
            stale = acquire_lock(run.dir)
            if stale:
                warnings.warn(f"{run.dir}: taking over the lock left by {_describe(stale)}, which "
                              "is no longer running", stacklevel=2)
            restart = run._validate()  # again under the lock: the directory may have changed meanwhile
            if restart:
                run._move_metrics_aside()
        if restart:
            warnings.warn(f"{run.dir} holds no checkpoint (the run stopped before its first one): "
                          f"starting it again from scratch with the saved config (seed {cfg.seed})",
                          stacklevel=2)
            cfg.resume = False
        return run

    def _saved_config(self) -> dict[str, Any]:
        """The saved config.yaml as a dict; RunError naming the file if missing or unreadable."""
        saved = self.dir / "config.yaml"
        fix = f"restore it, or start a new run with another name=... (or delete {self.dir})"
        if not saved.is_file():
            raise RunError(f"resume=true but the saved config {saved} is missing; {fix}")
        try:
            old = yaml.safe_load(saved.read_text())
            from_dict(Config, old)
        except yaml.YAMLError as e:
            raise RunError(f"saved config {saved} is not valid YAML ({_yaml_where(e)}); {fix}") from None
        except ConfigError as e:
            raise RunError(f"saved config {saved} is not valid with this version: {e}; {fix}") from None
        return old

    def _validate(self) -> bool:
        """Refuse what cannot be done; True when a ``resume=true`` run must restart from scratch."""
        cfg = self.cfg
        if cfg.resume:
            has_ckpt = self.ckpt_path.exists()
            if not has_ckpt and not (self.dir / "config.yaml").exists():
                hint = ("; name= was not given, so it defaulted to a new timestamp: pass the run's name=..."
                        if re.fullmatch(r"\d{8}-\d{6}", cfg.name) else "")
                raise RunError(f"resume=true but {self.dir} holds no run (no config.yaml, no checkpoint at "
                               f"{self.ckpt_path}); drop resume=true to start anew{hint}")
            old = self._saved_config()
            changed = diff(old, to_dict(cfg))
            if changed:
                raise RunError(
                    f"refusing to resume {self.dir}: the config differs from the saved one:\n  "
                    + "\n  ".join(changed)
                    + "\nResume with the original settings, or start a new run with another name=..."
                )
            if has_ckpt:
                check_checkpoint_file(self.ckpt_path)
            return not has_ckpt
        if self.ckpt_path.exists():
            raise RunError(
                f"run directory {self.dir} already holds a run; pass resume=true to continue it, "
                f"or choose another name=... (nothing was changed)"
            )
        if self.metrics_path.exists():
            raise RunError(
                f"run directory {self.dir} already holds a run that stopped before its first checkpoint; "
                f"pass resume=true to restart it from scratch with its saved config, or choose another "
                f"name=... (nothing was changed)"
            )
        return False

    def _move_metrics_aside(self) -> None:
        if self.metrics_path.exists():
            os.replace(self.metrics_path, self.dir / f"metrics.jsonl.stale-{int(time.time())}")

    def close(self) -> None:
        """Release the directory's lock (also done at process exit)."""
        release_lock(self.dir)

    def initialise(self) -> None:
        """Write the config (new run) and append the code version of this start to git.txt."""
        if not self.writer:
            return
        acquire_lock(self.dir)  # no-op when Run.open took it
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not self.cfg.resume:
            _atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
        git = self.dir / "git.txt"
        earlier = git.read_text() if self.cfg.resume and git.exists() else ""
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        line = f"{git_sha()} {stamp} {'resume' if self.cfg.resume else 'start'}\n"
        _atomic_write_text(git, earlier + line)

    # ---- metrics ------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        try:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
        except OSError as e:
            raise _named(e, self.metrics_path) from e
        loggers.publish(self, record)  # TensorBoard / W&B when log.* asks for them

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.dir)

    def truncate_metrics(self, step: int) -> None:
        """Keep the records up to ``step`` (the checkpoint's): drop those of a run that died before
        checkpointing, torn lines, and all but the last record of any epoch written twice
        (:func:`dedupe_records`)."""
        if not self.writer:
            return
        if self.metrics_path.exists():
            keep = dedupe_records(r for r in self.metrics() if r.get("step", 0) <= step)
            _atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))

    # ---- checkpoints ----------------------------------------------------------
    def save(self, state: dict[str, Any]) -> None:
        """Save ``state`` (tensors, numbers, strings, containers of them) atomically.

        A failed write (disk full, read-only) raises the OSError and leaves the previous
        checkpoint in place."""
        if not self.writer:
            return
        state = {**state, "rng": rng_state(), "config": to_dict(self.cfg)}
        with _replacing(self.ckpt_path) as tmp, open(tmp, "wb") as f:
            w = _Writer(f)
            try:
                torch.save(state, w)
            except RuntimeError:
                if w.error is not None:  # torch hides the OSError of the write behind a RuntimeError
                    raise w.error from None
                raise

    def load(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.ckpt_path, map_location)

    def save_state(self, *, epoch: int, step: int, **objs: Any) -> None:
        """Checkpoint every stateful object by name (``model=..., optimizer=..., variant=...``):
        ``{name: obj.state_dict()}`` plus ``epoch`` and ``step``, written by :meth:`save`."""
        self.save({**{name: obj.state_dict() for name, obj in objs.items()}, "epoch": epoch, "step": step})

    def restore_state(self, device: str | torch.device, **objs: Any) -> tuple[int, int]:
        """The inverse of :meth:`save_state`: load the checkpoint onto ``device``, give each object
        its state (in the order given), restore the RNGs, keep the metrics up to the checkpoint's
        step; return ``(epoch, step)``. A name the checkpoint lacks raises :class:`CheckpointError`."""
        ckpt = self.load(device)
        for name in (*objs, "rng", "epoch", "step"):
            if name not in ckpt:
                raise CheckpointError(f"checkpoint {self.ckpt_path} has no {name!r} entry (it holds "
                                      f"{', '.join(sorted(ckpt))}); it was not written by this run's code")
        for name, obj in objs.items():
            obj.load_state_dict(ckpt[name])
        set_rng_state(ckpt["rng"])
        self.truncate_metrics(ckpt["step"])
        return ckpt["epoch"], ckpt["step"]


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


def _yaml_where(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


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


def _parse_lines(text: str, path: Path) -> list[dict[str, Any]]:
    out, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            out.append(rec)
    if bad:
        warnings.warn(f"{path}: skipped {bad} unreadable line(s) (a write cut short)", stacklevel=3)
    return out


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (torn lines from an interrupted write are skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return _parse_lines(path.read_text(), path)


def dedupe_records(records) -> list[dict[str, Any]]:
    """One record per (tag, epoch): the last one written, in order of first appearance.
    Training records have no ``tag``; post-hoc evaluations carry theirs, so they never
    replace the training record of their epoch."""
    out: dict[Any, dict[str, Any]] = {}
    for r in records:
        out[(r.get("tag"), r.get("epoch"))] = r
    return list(out.values())
