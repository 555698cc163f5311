import pytest
import torch

from emsiam.config import ModelConfig
from emsiam.models import build_backbone, build_model


@pytest.mark.parametrize("backbone,dim", [("convnet", 256), ("resnet18_cifar", 512), ("resnet18", 512), ("resnet50", 2048)])
def test_backbone_dims(backbone, dim):
    net, out = build_backbone(ModelConfig(backbone=backbone))
    assert out == dim
    res = 32 if backbone != "resnet50" else 64
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 3, res, res)).shape == (2, dim)


def test_resnet18_cifar_stem_keeps_resolution():
    net, _ = build_backbone(ModelConfig(backbone="resnet18_cifar"))
    assert net.conv1.stride == (1, 1) and net.conv1.kernel_size == (3, 3)
    assert isinstance(net.maxpool, torch.nn.Identity)


@pytest.mark.parametrize("layers", [2, 3])
def test_heads_follow_the_paper(layers):
    m = build_model(ModelConfig(dim=64, proj_hidden=32, proj_layers=layers, channels_last=False))
    proj = m.encoder.projector
    linears = [l for l in proj if isinstance(l, torch.nn.Linear)]
    assert len(linears) == layers
    assert isinstance(proj[-1], torch.nn.BatchNorm1d) and not proj[-1].affine  # BN on projector output
    pred = m.predictor
    assert pred[0].out_features == 16  # bottleneck d/4
    assert isinstance(pred[-1], torch.nn.Linear)  # no BN on predictor output
    p1, p2, z1, z2 = m(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
    assert p1.shape == z1.shape == (4, 64)


def test_pred_hidden_configurable():
    m = build_model(ModelConfig(dim=64, pred_hidden=40))
    assert m.predictor[0].out_features == 40
