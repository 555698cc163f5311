"""Export a trained backbone as a plain ``state_dict`` (CPU; torchvision's key names for the
ResNets, without ``fc``) and a ``.json`` build recipe beside it, for use outside emsiam
(``emsiam export RUN``). How to load each backbone, and the convnet in plain torch: docs/export.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Config, ConfigError, ModelConfig, from_dict
from .runs import CKPT, load_checkpoint

BACKBONE_PREFIX = "encoder.backbone."

#: Build lines for each backbone; ``{file}`` is the weights file.
_LOAD = {
    "resnet18": ["import torch, torchvision",
                 "net = torchvision.models.resnet18(); net.fc = torch.nn.Identity()",
                 "net.load_state_dict(torch.load('{file}', weights_only=True))"],
    "resnet50": ["import torch, torchvision",
                 "net = torchvision.models.resnet50(); net.fc = torch.nn.Identity()",
                 "net.load_state_dict(torch.load('{file}', weights_only=True))"],
    "resnet18_cifar": ["import torch, torchvision",
                       "net = torchvision.models.resnet18(); net.fc = torch.nn.Identity()",
                       "net.conv1 = torch.nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)",
                       "net.maxpool = torch.nn.Identity()",
                       "net.load_state_dict(torch.load('{file}', weights_only=True))"],
    "convnet": ["import json, torch, emsiam.export",
                "net = emsiam.export.build_backbone_from_recipe(json.load(open('{recipe}')))",
                "net.load_state_dict(torch.load('{file}', weights_only=True))"],
}

_STEMS = {
    "resnet18": "torchvision: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool",
    "resnet50": "torchvision: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool",
    "resnet18_cifar": "CIFAR: conv1 = Conv2d(3, 64, 3, stride=1, padding=1, bias=False), maxpool = Identity",
    "convnet": "none: the first block is Conv2d(3, w_0, 3, padding=1, bias=False), BN, ReLU",
}


class ExportError(ValueError):
    """The run or checkpoint cannot be exported; the message names the file."""

    exit_code = 5  # the CLI's "checkpoint cannot be read"


def resolve_checkpoint(run: str | Path, checkpoint: str | Path | None = None) -> Path:
    """The checkpoint file for ``run`` (a run directory or a ``.pt`` file); ``checkpoint`` wins."""
    if checkpoint is not None:
        path = Path(checkpoint)
    else:
        run = Path(run)
        path = run if run.is_file() else run / CKPT
    if not path.is_file():
        raise ExportError(f"no checkpoint at {path}; pass a run directory holding {CKPT} or --checkpoint FILE")
    return path


def checkpoint_config(ckpt: dict[str, Any], path: Path) -> Config:
    """The run's config as saved in its checkpoint."""
    if "config" not in ckpt or "model" not in ckpt:
        raise ExportError(f"{path} is not an emsiam checkpoint (no 'config'/'model' entry)")
    try:
        return from_dict(Config, ckpt["config"])
    except ConfigError as e:
        raise ExportError(f"{path}: saved config is not valid with this version: {e}") from None


def backbone_state_dict(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's entries of a SimSiam ``state_dict``, prefix dropped, on CPU and contiguous."""
    out = {k[len(BACKBONE_PREFIX):]: v.detach().cpu().contiguous()
           for k, v in model_state.items() if k.startswith(BACKBONE_PREFIX)}
    if not out:
        raise ExportError(f"no '{BACKBONE_PREFIX}*' entries in the model state")
    return out


def recipe(model: ModelConfig, feat_dim: int) -> dict[str, Any]:
    """How to build the network the weights belong to (JSON-ready)."""
    r: dict[str, Any] = {"backbone": model.backbone, "feature_dim": feat_dim, "stem": _STEMS[model.backbone],
                         "fc": "dropped: set net.fc = torch.nn.Identity() before loading"}
    if model.backbone == "convnet":
        r["convnet_widths"] = list(model.convnet_widths)
        r["fc"] = "none"
    return r


def build_backbone_from_recipe(r: dict[str, Any]) -> nn.Module:
    """An untrained network that the exported ``state_dict`` loads into with ``strict=True``."""
    return _build(r)[0]


def _build(r: dict[str, Any]) -> tuple[nn.Module, int]:
    from .models import build_backbone

    if r.get("backbone") not in _STEMS:
        raise ExportError(f"recipe: unknown backbone {r.get('backbone')!r}; expected one of {', '.join(_STEMS)}")
    cfg = ModelConfig(backbone=r["backbone"], convnet_widths=list(r.get("convnet_widths", [32, 64, 128, 256])),
                      channels_last=False)
    return build_backbone(cfg)


def export(run: str | Path, out: str | Path | None = None, checkpoint: str | Path | None = None) -> tuple[Path, Path]:
    """Write the backbone weights and their recipe; returns (weights path, recipe path)."""
    from .augment import RECIPES
    from .runs import git_sha

    ckpt_path = resolve_checkpoint(run, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    cfg = checkpoint_config(ckpt, ckpt_path)
    state = backbone_state_dict(ckpt["model"])
    # The weights must load into the documented network before anything is written.
    net, feat_dim = _build({"backbone": cfg.model.backbone, "convnet_widths": cfg.model.convnet_widths})
    net.load_state_dict(state, strict=True)
    if out is None:
        base = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
        out = base / "export" / "backbone.pt"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta_path = out.with_suffix(".json")
    if meta_path == out:
        raise ExportError(f"--out {out}: use a .pt name; the recipe goes beside it as .json")
    torch.save(state, out)
    spec = RECIPES[cfg.data.recipe](resolution=cfg.data.resolution)
    meta = {
        **recipe(cfg.model, feat_dim),
        "input": {"resolution": cfg.data.resolution, "range": "RGB float in [0, 1], then (x - mean) / std",
                  "mean": list(spec.mean), "std": list(spec.std)},
        "source": {"checkpoint": str(ckpt_path), "run": cfg.name, "epoch": ckpt.get("epoch"),
                   "step": ckpt.get("step"), "variant": cfg.method.variant, "data": cfg.data.source,
                   "exported_by": f"emsiam {_version()} ({git_sha()})"},
        "load": [line.format(file=out, recipe=meta_path) for line in _LOAD[cfg.model.backbone]],
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return out, meta_path


def _version() -> str:
    from . import __version__

    return __version__
