import math

import torch

from emsiam.augment import cifar_recipe
from emsiam.config import ModelConfig
from emsiam.data import ImageSet
from emsiam.evaluate import collapse_stats, evaluate, knn_predict, knn_top1, linear_probe
from emsiam.models import build_model


def test_knn_known_answer():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    q = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    # k=2: nearest two of each query share its label
    assert knn_predict(bank, labels, q, 2, k=2).tolist() == [0, 1]
    # k=5 with a large temperature: plain majority vote -> class 1 wins for both
    assert knn_predict(bank, labels, q, 2, k=5, t=100.0).tolist() == [1, 1]
    # k=5 with a small temperature: similarity weighting recovers the right answer
    assert knn_predict(bank, labels, q, 2, k=5, t=0.01).tolist() == [0, 1]


def test_knn_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 16, generator=g) * 3
    y = torch.arange(500) % 5
    x = centers[y] + torch.randn(500, 16, generator=g) * 0.3
    assert knn_top1(x[:400], y[:400], x[400:], y[400:], 5, k=20) == 100.0
    assert knn_top1(x[:400], y[:400][torch.randperm(400, generator=g)], x[400:], y[400:], 5, k=20) < 50.0


def test_collapse_stats():
    g = torch.Generator().manual_seed(0)
    d = 64
    healthy = collapse_stats(torch.randn(4096, d, generator=g))
    assert abs(healthy["z_std_sqrt_d"] - 1.0) < 0.05
    assert math.isclose(healthy["inv_sqrt_d"], 1 / 8)
    assert healthy["eff_rank"] > 0.9 * d
    collapsed = collapse_stats(torch.ones(4096, d) + 1e-3 * torch.randn(4096, d, generator=g))
    assert collapsed["z_std_sqrt_d"] < 0.05
    assert collapsed["eff_rank"] < 2.0


def test_linear_probe_separable():
    torch.manual_seed(0)  # the classifier's init draws from the global RNG: independent of test order
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 3, generator=g)
    x = torch.randn(600, 8, generator=g)
    y = (x @ w).argmax(1)
    assert linear_probe(x[:500], y[:500], x[500:], y[500:], 3, epochs=20) > 90.0


def test_evaluate_leaves_backbone_unchanged():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    data = ImageSet(images, torch.arange(64) % 4, ["a", "b", "c", "d"], "toy")
    model = build_model(ModelConfig(dim=32, proj_hidden=32, convnet_widths=[8, 16]))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = evaluate(model, data, data, cifar_recipe(), knn_k=5, linear=True, linear_epochs=2)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN running stats
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    assert {"eval/knn_top1", "eval/linear_top1", "collapse/z_std_sqrt_d", "collapse/eff_rank"} <= set(out)


def test_ema_bank_gap_compares_like_with_like(tmp_path):
    """Right after the EMA bank's init pass (η_x = F_θ0(T(x)), train-mode BN), η is one
    sample of the average Ē that the probe estimates, so cos(η, Ē) is high, and it does
    not depend on the BN running statistics (still the defaults at init), which an
    eval-mode Ē would."""
    from emsiam.config import load_config
    from emsiam.evaluate import expectation_gap
    from emsiam.setup import setup

    from .conftest import TINY

    s = setup(load_config(None, TINY + [f"out_dir={tmp_path}", "method.variant=ema", "name=gap"]))
    s.variant.start(s.train.images, 256)
    gap = expectation_gap(s.model, s.train, s.spec, 64, 4, bank=s.variant.expectation_bank())
    assert gap["gap/cos_eta_E"] > 0.5, gap
    for m in s.model.modules():  # running statistics far from the batch statistics: no effect
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
    again = expectation_gap(s.model, s.train, s.spec, 64, 4, bank=s.variant.expectation_bank())
    assert abs(again["gap/cos_eta_E"] - gap["gap/cos_eta_E"]) < 1e-6
