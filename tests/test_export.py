"""emsiam export: backbones load into torchvision (strict) or from their recipe, with equal outputs."""

import json

import pytest
import torch
import torchvision
from torch import nn

from emsiam.cli import main
from emsiam.config import ModelConfig, load_config, to_dict
from emsiam.export import build_backbone_from_recipe, export
from emsiam.models import build_model


def fake_run(tmp_path, backbone: str, **model) -> tuple:
    """A run directory whose checkpoint holds a freshly built (perturbed) model."""
    cfg = load_config(None, [f"model.backbone={backbone}", "name=r", f"out_dir={tmp_path}"]
                      + [f"model.{k}={v}" for k, v in model.items()])
    net = build_model(cfg.model)
    with torch.no_grad():  # non-default weights and BN statistics, so a wrong mapping shows
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.01)
    (cfg.run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"model": net.state_dict(), "config": to_dict(cfg), "epoch": 3, "step": 30},
               cfg.run_dir / "checkpoints" / "last.pt")
    return cfg.run_dir, net.eval()


def same_features(ours: nn.Module, theirs: nn.Module, side: int) -> None:
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(x), ours.encoder.backbone(x))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_loads_strict_into_torchvision_with_fc_dropped(tmp_path, name):
    run, model = fake_run(tmp_path, name)
    weights, recipe = export(run)
    state = torch.load(weights, weights_only=True)
    assert "conv1.weight" in state and "layer1.0.bn1.running_mean" in state
    assert not any(k.startswith("fc.") for k in state)
    net = getattr(torchvision.models, name)()
    net.fc = nn.Identity()
    net.load_state_dict(state, strict=True)
    same_features(model, net, 32)
    meta = json.loads(recipe.read_text())
    assert meta["feature_dim"] == (512 if name == "resnet18" else 2048) and "fc" in meta


def test_resnet18_cifar_loads_into_torchvision_with_its_stem(tmp_path):
    run, model = fake_run(tmp_path, "resnet18_cifar")
    weights, recipe = export(run, tmp_path / "out" / "r18c.pt")
    net = torchvision.models.resnet18()
    net.fc = nn.Identity()
    net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    same_features(model, net, 32)
    meta = json.loads(recipe.read_text())
    assert "stride=1" in meta["stem"] and "Identity" in meta["stem"]
    assert any("maxpool = torch.nn.Identity()" in line for line in meta["load"])


def test_convnet_cli_export_and_recipe(tmp_path, capsys):
    run, model = fake_run(tmp_path, "convnet", convnet_widths="[8,16]")
    assert main(["export", str(run)]) == 0
    out = capsys.readouterr().out
    weights = run / "export" / "backbone.pt"
    assert str(weights) in out and "load with:" in out
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["convnet_widths"] == [8, 16] and meta["source"]["epoch"] == 3
    net = build_backbone_from_recipe(meta)
    net.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    same_features(model, net, 32)
    # the printed load lines run as they are
    scope: dict = {}
    exec("\n".join(meta["load"]), scope)
    same_features(model, scope["net"], 32)


def test_export_without_checkpoint_names_the_file(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing")]) == 5
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing" / "checkpoints" / "last.pt") in err


def test_recipe_refuses_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone_from_recipe({"backbone": "vit"})
    assert isinstance(build_backbone_from_recipe({"backbone": "resnet18"}), nn.Module)
    ModelConfig()  # the recipe's defaults come from here
