"""Backbones, projector and predictor (Chen & He 2021, Sec. 3 and Appendix).

F_θ = projector ∘ backbone is the encoder whose output z the loss compares;
h is the predictor. The loss normalises, so F_θ's l2 normalisation lives in
:mod:`emsiam.losses`.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .predictors import CLOSED_FORM, CorrelationEMA, build_predictor


class ConvNet(nn.Module):
    """Small VGG-style net for CPU runs: [conv3x3-BN-ReLU] per width, 2x2 max-pool
    after every block but the last, then global average pooling."""

    def __init__(self, widths: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = w
        self.features = nn.Sequential(*layers)
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))  # (B, C)


def _torchvision_resnet(name: str, cifar_stem: bool) -> tuple[nn.Module, int]:
    import torchvision  # here, not at the top: it pulls in torch._dynamo (~3 s at every start)

    net = getattr(torchvision.models, name)(weights=None, zero_init_residual=True)
    if cifar_stem:  # 3x3 stride-1 stem, no max-pool (SimSiam appendix, CIFAR)
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    out_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, out_dim


def build_backbone(cfg: ModelConfig) -> tuple[nn.Module, int]:
    """Returns (backbone, feature dimension)."""
    if cfg.backbone == "convnet":
        net = ConvNet(cfg.convnet_widths)
        return net, net.out_dim
    if cfg.backbone == "resnet18_cifar":
        return _torchvision_resnet("resnet18", cifar_stem=True)
    if cfg.backbone in ("resnet18", "resnet50"):
        return _torchvision_resnet(cfg.backbone, cifar_stem=False)
    raise ValueError(f"unknown backbone {cfg.backbone!r}")


def _hidden(d_in: int, d_out: int, bn: bool) -> list[nn.Module]:
    if bn:
        return [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    return [nn.Linear(d_in, d_out), nn.ReLU(inplace=True)]


def projector(in_dim: int, hidden: int, dim: int, n_layers: int, bn: bool = True) -> nn.Sequential:
    """Projection MLP: (Linear-BN-ReLU) x (n-1), Linear, then BN on the output (Sec. 4.4, Table 3).

    ``bn=False`` is the "no BN in the MLP heads" ablation of Table 3.
    """
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_layers - 1):
        layers += _hidden(d, hidden, bn)
        d = hidden
    if bn:  # the output BN has no affine parameters, as in the official code
        layers += [nn.Linear(d, dim, bias=False), nn.BatchNorm1d(dim, affine=False)]
    else:
        layers += [nn.Linear(d, dim)]
    return nn.Sequential(*layers)


def predictor(dim: int, hidden: int, bn: bool = True) -> nn.Sequential:
    """Prediction MLP h: bottleneck d -> hidden (BN, ReLU) -> d, no BN on the output (Sec. 3)."""
    return nn.Sequential(*_hidden(dim, hidden, bn), nn.Linear(hidden, dim))


class Encoder(nn.Module):
    """F_θ before normalisation: backbone then projector."""

    def __init__(self, backbone: nn.Module, head: nn.Module, feat_dim: int):
        super().__init__()
        self.backbone = backbone
        self.projector = head
        self.feat_dim = feat_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))  # (B, d)


class SimSiam(nn.Module):
    """Encoder f and predictor h. ``forward(x1, x2)`` returns p1, p2, z1, z2; the
    caller applies stop-gradient to z where the method needs it. Each view goes
    through the network on its own, so BN statistics are per view (as in the paper).

    ``correlation`` tracks F̂, the EMA of mean(z zᵀ) over the views of training forwards
    (DirectPred; :mod:`emsiam.predictors`), for every predictor kind: a closed-form predictor is
    set from it, and the spectral diagnostics compare any predictor with it. A training forward
    (train mode, autograd on) records its detached z; :func:`emsiam.predictors.step_hook`, after
    the optimizer step, folds them in. Target computations (no_grad) and evaluation record nothing.
    """

    def __init__(self, encoder: Encoder, head: nn.Module, rho: float = 0.3, dim: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.predictor = head
        if dim is None:  # the projector's output width
            dim = [m for m in encoder.projector.modules() if isinstance(m, nn.Linear)][-1].out_features
        self.correlation = CorrelationEMA(dim, rho)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        if self.training and torch.is_grad_enabled():
            self.correlation.record(z1)
            self.correlation.record(z2)
        return self.predictor(z1), self.predictor(z2), z1, z2


def build_model(cfg: ModelConfig, head: str = "learned", *, rho: float = 0.3, eps: float = 0.1,
                freq: int = 1) -> SimSiam:
    """SimSiam network; ``head`` picks the predictor: ``learned``, ``none`` (identity),
    ``fixed_random`` (random init, never trained; Table 1), or a closed form set from F̂
    (``directpred``, ``directcopy``; ε = ``eps``, every ``freq`` steps). ρ (``rho``) is F̂'s EMA
    coefficient, tracked for every head."""
    backbone, feat_dim = build_backbone(cfg)
    enc = Encoder(backbone, projector(feat_dim, cfg.proj_hidden, cfg.dim, cfg.proj_layers, cfg.head_bn), feat_dim)
    if head == "none":
        h: nn.Module = nn.Identity()
    elif head in CLOSED_FORM:
        h = build_predictor(head, cfg.dim, eps=eps, freq=freq)
    else:
        h = predictor(cfg.dim, cfg.pred_hidden or max(cfg.dim // 4, 1), cfg.head_bn)
        if head == "fixed_random":
            h.requires_grad_(False)
    model = SimSiam(enc, h, rho, cfg.dim)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's conv weights are channels_last (its inputs should be too)."""
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False
