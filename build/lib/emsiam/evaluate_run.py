"""``emsiam eval RUN``: kNN, linear probe and collapse statistics of any checkpoint, on any data.

The model is rebuilt from the config saved in the checkpoint; ``data.*``, ``eval.*``
and ``device`` may be overridden (``data.source=cifar10 data.root=~/data``). The
result is one record whose metrics are namespaced by a tag (default ``posthoc``:
``posthoc/knn_top1``, ``posthoc/linear_top1``, ``posthoc/collapse/z_std_sqrt_d``, ...),
so it never mixes with the training curve's ``eval/*`` keys. It is appended to the
run's ``metrics.jsonl`` (and so to TensorBoard/W&B when the run logs there), or to
the JSON-lines file ``--out``. ``--features FILE`` (``.npz``, or ``.h5``/``.hdf5``)
also saves the backbone features and labels of both splits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config, ConfigError, from_dict, parse_overrides, to_dict, validate
from .export import ExportError, checkpoint_config, resolve_checkpoint
from .progress import progress_bar

#: Namespaces the training loop writes; a tag must not reuse them.
RESERVED_TAGS = {"eval", "collapse", "gap", "bank", "train", "time"}
FEATURE_SUFFIXES = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5"}


def eval_config(saved: Config, overrides: list[str]) -> Config:
    """The saved config with ``data.*``, ``eval.*`` and ``device`` overrides applied."""
    new = parse_overrides(overrides)
    bad = [k for k in new if k not in ("data", "eval", "device")]
    if bad:
        raise ConfigError(f"eval: only data.*, eval.* and device can be overridden, not {', '.join(bad)}")
    d = to_dict(saved)
    for key, value in new.items():
        d[key] = {**d[key], **value} if isinstance(value, dict) and isinstance(d.get(key), dict) else value
    cfg = from_dict(Config, d)
    validate(cfg)
    return cfg


def _extract(model, data, spec, batch_size: int, desc: str, enabled: bool):
    """Backbone and projector outputs, in chunks so a progress bar can follow."""
    from .data import ImageSet
    from .evaluate import extract

    hs, zs = [], []
    chunk = batch_size * 4
    with progress_bar(total=len(data), desc=desc, unit="img", enabled=enabled) as bar:
        for start in range(0, len(data), chunk):
            part = ImageSet(data.images[start:start + chunk], data.labels[start:start + chunk], data.classes,
                            data.name)
            f = extract(model, part, spec, batch_size)
            hs.append(f.h)
            zs.append(f.z)
            bar.update(len(part))
    return torch.cat(hs), torch.cat(zs)


def save_features(path: str | Path, train_h, train_y, test_h, test_y, classes: list[str],
                  meta: dict[str, Any]) -> Path:
    """Backbone features and labels of both splits as ``.npz`` or HDF5 (by suffix)."""
    path = Path(path)
    kind = FEATURE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"--features {path}: use a .npz, .h5 or .hdf5 file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"train_features": train_h.cpu().numpy(), "train_labels": train_y.cpu().numpy(),
              "test_features": test_h.cpu().numpy(), "test_labels": test_y.cpu().numpy()}
    if kind == "npz":
        np.savez(path, **arrays, classes=np.array(classes), meta=np.array(json.dumps(meta)))
    else:
        import h5py

        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v)
            f.create_dataset("classes", data=np.array(classes, dtype=object), dtype=h5py.string_dtype())
            f.attrs["meta"] = json.dumps(meta)
    return path


def evaluate_run(run: str | Path, checkpoint: str | Path | None = None, overrides: list[str] | None = None,
                 out: str | Path | None = None, features: str | Path | None = None, tag: str = "posthoc",
                 progress: bool | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a checkpoint; append the record to the run's metrics or ``out``; return it and that file."""
    from .data import check_source
    from .evaluate import collapse_stats, knn_top1, linear_probe
    from .models import build_model
    from .runs import Run, load_checkpoint
    from .setup import augment_spec, load_data, resolve_device
    from .variants import predictor_kind

    if not tag or "/" in tag or tag in RESERVED_TAGS:
        raise ConfigError(f"--tag {tag!r}: use a name without '/' other than {', '.join(sorted(RESERVED_TAGS))}")
    if features is not None and Path(features).suffix.lower() not in FEATURE_SUFFIXES:
        raise ConfigError(f"--features {features}: use a .npz, .h5 or .hdf5 file name")
    ckpt_path = resolve_checkpoint(run, checkpoint)
    run_dir = Path(run) if Path(run).is_dir() else None
    if run_dir is None and ckpt_path.parent.name == "checkpoints":
        run_dir = ckpt_path.parent.parent
    if out is None and run_dir is None:
        raise ExportError(f"{ckpt_path} is not inside a run directory; pass --out FILE for the record")
    ckpt = load_checkpoint(ckpt_path)
    cfg = eval_config(checkpoint_config(ckpt, ckpt_path), overrides or [])
    show = cfg.progress if progress is None else progress
    check_source(cfg.data.source, cfg.data.root, cfg.data.download)  # before any compute

    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    train, test = load_data(cfg.data, device)
    model = build_model(cfg.model, predictor_kind(cfg))
    model.load_state_dict(ckpt["model"])
    model.to(device)
    spec, e = augment_spec(cfg.data), cfg.eval
    tr_h, _ = _extract(model, train, spec, e.batch_size, f"{tag}: train features", show)
    te_h, te_z = _extract(model, test, spec, e.batch_size, f"{tag}: test features", show)
    n_classes = len(train.classes)
    metrics = {"knn_top1": knn_top1(tr_h, train.labels, te_h, test.labels, n_classes, e.knn_k, e.knn_t)}
    if e.linear:
        metrics["linear_top1"] = linear_probe(tr_h, train.labels, te_h, test.labels, n_classes, e.linear_epochs,
                                              e.linear_lr, seed=cfg.seed)
    metrics.update({f"collapse/{k}": v for k, v in collapse_stats(te_z).items()})
    record: dict[str, Any] = {
        "tag": tag, "epoch": ckpt.get("epoch"), "step": ckpt.get("step"),
        **{f"{tag}/{k}": v for k, v in metrics.items()},
        f"{tag}/checkpoint": str(ckpt_path), f"{tag}/data": cfg.data.source,
        f"{tag}/n_train": len(train), f"{tag}/n_test": len(test),
        f"{tag}/time_s": time.perf_counter() - t0,
    }
    if features is not None:
        meta = {"checkpoint": str(ckpt_path), "epoch": ckpt.get("epoch"), "step": ckpt.get("step"),
                "backbone": cfg.model.backbone, "data": to_dict(cfg.data)}
        record[f"{tag}/features"] = str(save_features(features, tr_h, train.labels, te_h, test.labels,
                                                      train.classes, meta))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record, out
    cfg.out_dir, cfg.name = str(run_dir.parent), run_dir.name
    run_obj = Run(cfg)
    run_obj.log(record)
    return record, run_obj.metrics_path
