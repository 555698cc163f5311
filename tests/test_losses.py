import torch

from emsiam.losses import negative_cosine, normalized_mse, symmetric_simsiam


def test_negative_cosine_range_and_value():
    p = torch.randn(16, 8)
    assert torch.isclose(negative_cosine(p, p), torch.tensor(-1.0), atol=1e-6)
    assert torch.isclose(negative_cosine(p, -p), torch.tensor(1.0), atol=1e-6)
    # scale invariance
    assert torch.isclose(negative_cosine(3 * p, p), negative_cosine(p, 0.5 * p), atol=1e-6)


def test_symmetric_loss_is_symmetric_in_views():
    g = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(32, 16, generator=g) for _ in range(4))
    a = symmetric_simsiam(p1, p2, z1, z2)
    b = symmetric_simsiam(p2, p1, z2, z1)
    assert torch.allclose(a, b, atol=1e-7)
    expected = 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
    assert torch.allclose(a, expected)


def test_stop_gradient_blocks_target_branch():
    p1, p2, z1, z2 = (torch.randn(8, 4, requires_grad=True) for _ in range(4))
    symmetric_simsiam(p1, p2, z1, z2).backward()
    assert p1.grad is not None and p1.grad.abs().sum() > 0
    assert p2.grad is not None and p2.grad.abs().sum() > 0
    assert z1.grad is None and z2.grad is None


def test_stop_gradient_through_shared_encoder():
    # z feeds both the predictor (gradient) and the target (no gradient): only the
    # predictor path may contribute. Compare with an explicit detached computation.
    w = torch.randn(4, 4, requires_grad=True)
    x1, x2 = torch.randn(8, 4), torch.randn(8, 4)
    z1, z2 = x1 @ w, x2 @ w
    symmetric_simsiam(z1, z2, z1, z2).backward()
    g = w.grad.clone()
    w.grad = None
    z1c, z2c = (x1 @ w).detach(), (x2 @ w).detach()
    (0.5 * negative_cosine(x1 @ w, z2c) + 0.5 * negative_cosine(x2 @ w, z1c)).backward()
    assert torch.allclose(g, w.grad)
    w.grad = None
    z1, z2 = x1 @ w, x2 @ w
    (0.5 * negative_cosine(z1, z2) + 0.5 * negative_cosine(z2, z1)).backward()  # no stop-grad
    assert not torch.allclose(g, w.grad)


def test_normalized_mse_equals_2_plus_2D():
    p, z = torch.randn(32, 8), torch.randn(32, 8)
    assert torch.allclose(normalized_mse(p, z), 2 + 2 * negative_cosine(p, z), atol=1e-5)
