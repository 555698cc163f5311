"""Optional metric sinks beside ``metrics.jsonl``: TensorBoard and Weights & Biases.

Switched on by ``log.tensorboard=true`` / ``log.wandb=true``. Both packages are
optional (``pip install 'emsiam[tensorboard]'`` or ``'emsiam[wandb]'``) and only
imported when asked for. :meth:`emsiam.runs.Run.log`, the one place metrics are
written, calls :func:`publish` with every record; numeric entries are logged as
scalars at the record's ``step``. The sinks live on the :class:`~emsiam.runs.Run`
object (no module state). TensorBoard events go to ``<run>/tensorboard``; W&B
runs in ``<run>/wandb`` under the run's name (offline unless you are logged in).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

from .config import Config, ConfigError

_ATTR = "_metric_sinks"


class Sink(Protocol):
    def write(self, scalars: dict[str, float], step: int) -> None: ...


class TensorBoardSink:
    """Scalars to TensorBoard event files (torch.utils.tensorboard)."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(
                f"log.tensorboard=true needs the tensorboard package ({e}); pip install 'emsiam[tensorboard]' "
                "or drop log.tensorboard=true"
            ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, scalars: dict[str, float], step: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()


class WandbSink:
    """Scalars to Weights & Biases; the run config goes along."""

    def __init__(self, cfg: Config, run_dir: Path):
        wandb = _import_wandb()
        from .config import to_dict

        run_dir.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.run = wandb.init(project=cfg.log.wandb_project, name=cfg.name, dir=str(run_dir),
                              config=to_dict(cfg), resume="allow" if cfg.resume else None)

    def write(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)


def _import_wandb():
    try:
        import wandb
    except ImportError as e:
        raise ConfigError(f"log.wandb=true needs the wandb package ({e}); pip install 'emsiam[wandb]' "
                          "or drop log.wandb=true") from None
    return wandb


def check_available(cfg: Config) -> None:
    """Raise :class:`ConfigError` before any compute if a requested sink's package is missing."""
    import importlib.util

    if cfg.log.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("log.tensorboard=true needs the tensorboard package; pip install 'emsiam[tensorboard]' "
                          "or drop log.tensorboard=true")
    if cfg.log.wandb and importlib.util.find_spec("wandb") is None:
        raise ConfigError("log.wandb=true needs the wandb package; pip install 'emsiam[wandb]' or drop log.wandb=true")


def open_sinks(cfg: Config, run_dir: Path) -> list[Sink]:
    sinks: list[Sink] = []
    if cfg.log.tensorboard:
        sinks.append(TensorBoardSink(Path(run_dir) / "tensorboard"))
    if cfg.log.wandb:
        sinks.append(WandbSink(cfg, Path(run_dir)))
    return sinks


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a record, except ``epoch``/``step`` (bools and strings dropped)."""
    return {k: float(v) for k, v in record.items()
            if k not in ("epoch", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def publish(run: Any, record: dict[str, Any]) -> None:
    """Send ``record`` to the sinks the run's config asks for (opened on first use)."""
    cfg = run.cfg
    if not (cfg.log.tensorboard or cfg.log.wandb):
        return
    sinks = getattr(run, _ATTR, None)
    if sinks is None:
        sinks = open_sinks(cfg, Path(run.dir))
        setattr(run, _ATTR, sinks)
    values = scalars(record)
    step = int(record.get("step") or 0)
    for sink in sinks:
        sink.write(values, step)
