import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from emsiam.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    RECIPES,
    AugmentSpec,
    augment,
    blur_kernel_size,
    cifar_recipe,
    imagenet_recipe,
    prepare,
    sample_params,
    uniforms,
    view_seeds,
)


def _images(b, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish random images (low-res noise upsampled) plus some pixel noise
    base = torch.rand(b, 3, max(h // 4, 1), max(w // 4, 1), generator=g)
    img = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    img = img + 0.1 * torch.rand(b, 3, h, w, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def _seeds(b, step=0, view=0, seed=0):
    return view_seeds(seed, step, torch.arange(b), view)


def _unnorm():
    """No crop, flip, jitter, gray; identity normalisation."""
    return AugmentSpec(
        resolution=32,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        gray_p=0.0,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )


# ---------------------------------------------------------------- basics


def test_shape_dtype_finite_and_nonsquare_input():
    spec = cifar_recipe()
    for h, w in [(32, 32), (40, 56)]:
        x = _images(16, h, w)
        y = augment(x, _seeds(16), spec)
        assert y.shape == (16, 3, 32, 32) and y.dtype == torch.float32
        assert torch.isfinite(y).all()
    assert RECIPES["cifar"]() == spec and RECIPES["imagenet"]().blur_p == 0.5


def test_identity_params_normalisation():
    x = _images(8)
    spec = replace(_unnorm(), mean=CIFAR10_MEAN, std=CIFAR10_STD)
    y = augment(x, _seeds(8), spec)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    ref = (x.float() / 255 - mean) / std
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)
    # and normalised stats of the views are in a sane range for real-ish images
    z = augment(x, _seeds(8), cifar_recipe())
    assert z.mean().abs() < 1.5 and 0.3 < z.std() < 3.0


def test_flip_only_equals_flipped_input():
    x = _images(8)
    spec = replace(_unnorm(), flip_p=1.0, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    y = augment(x, _seeds(8), spec)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    ref = (x.float().flip(-1) / 255 - mean) / std
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


def test_resized_crop_matches_torchvision_resized_crop():
    # The fused grid_sample equals torchvision's crop-then-bilinear-resize
    # (no antialias needed: CIFAR crops are upscaled) away from the outermost
    # output pixels, where we read outside the crop instead of clamping to its
    # edge (documented deviation).
    x = _images(64)
    spec = replace(cifar_recipe(), jitter_p=0.0, gray_p=0.0, flip_p=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    seeds = _seeds(64)
    y = augment(x, seeds, spec)
    p = sample_params(seeds, spec, image_size=(32, 32))
    xf = x.float() / 255
    for i in range(64):
        t, l, h, w = (int(p[k][i]) for k in ("crop_top", "crop_left", "crop_h", "crop_w"))
        ref = TF.resized_crop(xf[i], t, l, h, w, [32, 32], antialias=False)
        torch.testing.assert_close(y[i, :, 2:-2, 2:-2], ref[:, 2:-2, 2:-2], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- replay


def test_replay_same_seeds_bit_identical():
    x = _images(32)
    for spec in (cifar_recipe(), replace(cifar_recipe(), jitter_order="random")):
        a = augment(x, _seeds(32, step=3), spec)
        b = augment(x.clone(), _seeds(32, step=3), spec)
        assert torch.equal(a, b)


def test_different_seeds_give_different_views():
    x = _images(32)
    spec = cifar_recipe()
    a = augment(x, _seeds(32, view=0), spec)
    b = augment(x, _seeds(32, view=1), spec)
    diff = (a - b).flatten(1).abs().amax(1)
    assert (diff > 1e-3).all()


@pytest.mark.parametrize("recipe", ["cifar", "cifar_random", "imagenet"])
def test_sample_independent_of_batch(recipe):
    if recipe == "imagenet":
        spec, size = imagenet_recipe(64), 80
    else:
        spec, size = cifar_recipe(), 32
        if recipe == "cifar_random":
            spec = replace(spec, jitter_order="random")
    x = _images(48, size, size)
    seeds = _seeds(48, step=7)
    full = augment(x, seeds, spec)
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(1))
    permuted = augment(x[perm], seeds[perm], spec)
    assert torch.equal(permuted, full[perm])
    for i in (0, 17, 47):
        alone = augment(x[i : i + 1], seeds[i : i + 1], spec)
        assert torch.equal(alone[0], full[i])
    # inside a bigger batch with other images
    big = torch.cat([_images(100, size, size, seed=5), x[5:6]])
    big_seeds = torch.cat([_seeds(100, step=99), seeds[5:6]])
    assert torch.equal(augment(big, big_seeds, spec)[-1], full[5])


# ---------------------------------------------------------------- params


def test_params_vary_and_rates():
    n = 4096
    spec = cifar_recipe()
    p = sample_params(_seeds(n), spec)
    assert abs(p["flip"].float().mean().item() - 0.5) < 0.04
    assert abs(p["jitter"].float().mean().item() - 0.8) < 0.03
    assert abs(p["gray"].float().mean().item() - 0.2) < 0.03
    assert not p["blur"].any()
    boxes = torch.stack([p[k] for k in ("crop_top", "crop_left", "crop_h", "crop_w")], 1)
    assert torch.unique(boxes, dim=0).shape[0] > n // 4
    jit = p["jitter"]
    for k, lo, hi, ident in [
        ("brightness", 0.6, 1.4, 1.0),
        ("contrast", 0.6, 1.4, 1.0),
        ("saturation", 0.6, 1.4, 1.0),
        ("hue", -0.1, 0.1, 0.0),
    ]:
        v = p[k]
        assert (v[~jit] == ident).all()
        assert v[jit].min() >= lo and v[jit].max() <= hi
        assert v[jit].min() < lo + 0.05 and v[jit].max() > hi - 0.05  # spread
        assert torch.unique(v[jit]).numel() > 0.9 * jit.sum()
    orders = p["jitter_order"]
    assert (orders.sort(1).values == torch.arange(4)).all()
    assert torch.unique(orders, dim=0).shape[0] == 24


@pytest.mark.parametrize("size", [(32, 32), (224, 224), (40, 64)])
def test_crop_boxes_valid(size):
    hh, ww = size
    n = 4096
    spec = cifar_recipe()
    p = sample_params(_seeds(n), spec, image_size=size)
    t, l, h, w = (p[k] for k in ("crop_top", "crop_left", "crop_h", "crop_w"))
    assert (t >= 0).all() and (l >= 0).all() and (t + h <= hh).all() and (l + w <= ww).all()
    ok = ~p["crop_fallback"]
    assert ok.float().mean() > 0.95
    t, l, h, w = t[ok], l[ok], h[ok], w[ok]
    area = hh * ww
    # boxes are rounded to whole pixels, so allow half a pixel per side
    assert ((w - 0.5) * (h - 0.5) <= 1.0 * area).all()
    assert ((w + 0.5) * (h + 0.5) >= 0.2 * area).all()
    assert ((w - 0.5) / (h + 0.5) <= 4 / 3).all() and ((w + 0.5) / (h - 0.5) >= 3 / 4).all()
    frac = (w * h) / area
    assert frac.min() < 0.25 and frac.max() > 0.8
    assert (t > 0).any() and (l > 0).any()


def _torchvision_crop_reference(u, spec, height, width):
    """torchvision RandomResizedCrop.get_params, scalar, fed our uniforms."""
    area = height * width
    lr = (math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1]))
    for k in range(10):
        target = area * (spec.crop_scale[0] + (spec.crop_scale[1] - spec.crop_scale[0]) * u[k])
        ar = math.exp(lr[0] + (lr[1] - lr[0]) * u[10 + k])
        w = int(round(math.sqrt(target * ar)))
        h = int(round(math.sqrt(target / ar)))
        if 0 < w <= width and 0 < h <= height:
            i = int(math.floor(u[20 + k] * (height - h + 1)))
            j = int(math.floor(u[30 + k] * (width - w + 1)))
            return i, j, h, w, False
    in_ratio = width / height
    if in_ratio < min(spec.crop_ratio):
        w, h = width, int(round(width / min(spec.crop_ratio)))
    elif in_ratio > max(spec.crop_ratio):
        h, w = height, int(round(height * max(spec.crop_ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w, True


@pytest.mark.parametrize(
    "spec,size",
    [
        (cifar_recipe(), (32, 32)),
        (cifar_recipe(), (30, 70)),
        (replace(cifar_recipe(), crop_scale=(0.9, 1.0), crop_ratio=(2.0, 3.0)), (32, 32)),
        (replace(cifar_recipe(), crop_scale=(0.9, 1.0), crop_ratio=(0.2, 0.3)), (32, 32)),
    ],
)
def test_crop_sampler_matches_scalar_torchvision_logic(spec, size):
    n = 512
    seeds = _seeds(n, step=11)
    p = sample_params(seeds, spec, image_size=size)
    u = uniforms(seeds, 40).tolist()
    n_fallback = 0
    for b in range(n):
        ref = _torchvision_crop_reference(u[b], spec, *size)
        got = tuple(int(p[k][b]) for k in ("crop_top", "crop_left", "crop_h", "crop_w"))
        assert got == ref[:4], (b, got, ref)
        assert bool(p["crop_fallback"][b]) == ref[4]
        n_fallback += ref[4]
    if spec.crop_ratio[0] >= 2.0 or spec.crop_ratio[1] <= 0.3:
        assert n_fallback == n  # impossible aspect for a square image -> centre crop


# ---------------------------------------------------------------- seeds


def test_view_seeds_pure_distinct_no_collisions():
    idx = torch.arange(1024)
    a = view_seeds(0, 5, idx, 0)
    assert a.dtype == torch.int64 and a.device == idx.device and a.shape == idx.shape
    assert torch.equal(a, view_seeds(0, 5, idx.clone(), 0))
    others = [view_seeds(0, 5, idx, 1), view_seeds(0, 6, idx, 0), view_seeds(1, 5, idx, 0)]
    for o in others:
        assert (o != a).all()
    assert (view_seeds(0, 5, idx + 1, 0) != a).all()
    allseeds = torch.cat([view_seeds(s, st, idx, v) for s in (0, 1) for st in (0, 1, 2) for v in (0, 1)])
    assert torch.unique(allseeds).numel() == allseeds.numel()  # 12288, no collisions
    u = uniforms(a, 8)
    assert (u >= 0).all() and (u < 1).all() and abs(u.mean().item() - 0.5) < 0.02


# ---------------------------------------------------------------- op semantics


def test_gray_p_one_gives_equal_channels():
    x = _images(16)
    spec = replace(cifar_recipe(), gray_p=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    y = augment(x, _seeds(16), spec)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    spec0 = replace(spec, gray_p=0.0, jitter_p=0.0)
    z = augment(x, _seeds(16), spec0)
    lum = 0.299 * z[:, 0] + 0.587 * z[:, 1] + 0.114 * z[:, 2]
    torch.testing.assert_close(augment(x, _seeds(16), replace(spec, jitter_p=0.0))[:, 0], lum, atol=1e-6, rtol=0)
    assert not torch.equal(z[:, 0], z[:, 1])


def _tv_ops(img, b, c, s, h):
    return {
        0: lambda t: TF.adjust_brightness(t, b),
        1: lambda t: TF.adjust_contrast(t, c),
        2: lambda t: TF.adjust_saturation(t, s),
        3: lambda t: TF.adjust_hue(t, h),
    }


@pytest.mark.parametrize(
    "jitter,atol",
    [
        ((0.4, 0.0, 0.0, 0.0), 1e-5),  # brightness
        ((0.0, 0.4, 0.0, 0.0), 1e-3),  # contrast (luma 0.299 vs torchvision's 0.2989)
        ((0.0, 0.0, 0.4, 0.0), 1e-3),  # saturation (same)
        ((0.0, 0.0, 0.0, 0.1), 1e-5),  # hue: exact HSV rotation
        ((0.0, 0.0, 0.0, 0.5), 1e-5),
    ],
)
def test_single_jitter_op_matches_torchvision(jitter, atol):
    x = _images(32)
    spec = replace(_unnorm(), jitter=jitter, jitter_p=1.0)
    seeds = _seeds(32)
    y = augment(x, seeds, spec)
    p = sample_params(seeds, spec)
    xf = x.float() / 255
    worst = 0.0
    for i in range(32):
        ops = _tv_ops(xf[i], *(p[k][i].item() for k in ("brightness", "contrast", "saturation", "hue")))
        which = [k for k, a in enumerate(jitter) if a > 0][0]
        ref = ops[which](xf[i])
        worst = max(worst, (y[i] - ref).abs().max().item())
    assert worst <= atol
    assert (y - xf).abs().amax() > 0.05  # the op really changed the images


@pytest.mark.parametrize("order", ["fixed", "random"])
def test_full_jitter_matches_torchvision_sequence(order):
    x = _images(32)
    spec = replace(_unnorm(), jitter_p=1.0, jitter_order=order)
    seeds = _seeds(32, step=2)
    y = augment(x, seeds, spec)
    p = sample_params(seeds, spec)
    xf = x.float() / 255
    for i in range(32):
        ops = _tv_ops(xf[i], *(p[k][i].item() for k in ("brightness", "contrast", "saturation", "hue")))
        perm = p["jitter_order"][i].tolist() if order == "random" else [0, 1, 2, 3]
        ref = xf[i]
        for k in perm:
            ref = ops[k](ref)
        torch.testing.assert_close(y[i], ref, atol=2e-3, rtol=0)


def test_jitter_p_zero_samples_untouched():
    x = _images(64)
    spec = replace(_unnorm(), jitter_p=0.5)
    seeds = _seeds(64)
    y = augment(x, seeds, spec)
    jit = sample_params(seeds, spec)["jitter"]
    assert jit.any() and (~jit).any()
    xf = x.float() / 255
    assert torch.equal(y[~jit], xf[~jit])
    assert ((y[jit] - xf[jit]).flatten(1).abs().amax(1) > 1e-3).all()


def _hf_energy(z):
    return ((z[..., 1:, :] - z[..., :-1, :]) ** 2).mean() + ((z[..., :, 1:] - z[..., :, :-1]) ** 2).mean()


def test_imagenet_blur_runs_and_smooths():
    assert blur_kernel_size(224) == 23 and blur_kernel_size(32) == 3
    x = _images(16, 80, 80)
    spec = imagenet_recipe(64)
    seeds = _seeds(16)
    y = augment(x, seeds, spec)
    assert y.shape == (16, 3, 64, 64) and torch.isfinite(y).all()
    p = sample_params(seeds, spec, image_size=(80, 80))
    assert p["blur"].any() and (~p["blur"]).any()
    sharp = augment(x, seeds, replace(spec, blur_p=0.0))
    # blur only changes the blurred samples (same seeds -> same other params)
    assert torch.equal(sharp[~p["blur"]], y[~p["blur"]])
    blurred = augment(x, seeds, replace(spec, blur_p=1.0))
    assert _hf_energy(blurred) < 0.8 * _hf_energy(sharp)
    for i in range(16):
        assert _hf_energy(blurred[i]) < _hf_energy(sharp[i])


def test_blur_matches_torchvision_gaussian_blur():
    x = _images(8, 64, 64)
    base = replace(_unnorm(), resolution=64, blur_sigma=(0.1, 2.0))
    seeds = _seeds(8)
    sharp = augment(x, seeds, base)
    y = augment(x, seeds, replace(base, blur_p=1.0))
    sig = sample_params(seeds, replace(base, blur_p=1.0))["blur_sigma"]
    k = blur_kernel_size(64)
    for i in range(8):
        s = sig[i].item()
        ref = TF.gaussian_blur(sharp[i], kernel_size=[k, k], sigma=[s, s])
        torch.testing.assert_close(y[i], ref, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- prepare


def test_prepare():
    spec = cifar_recipe()
    x = _images(4)
    a = prepare(x, spec)
    assert torch.equal(a, prepare(x, spec)) and a.shape == (4, 3, 32, 32)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    torch.testing.assert_close(a, (x.float() / 255 - mean) / std, atol=1e-5, rtol=0)
    big = _images(4, 64, 64)
    b = prepare(big, spec)
    assert b.shape == (4, 3, 32, 32)
    ref = F.interpolate(big.float() / 255, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(b, (ref - mean) / std, atol=1e-5, rtol=0)
    rect = prepare(_images(2, 48, 64), spec)
    assert rect.shape == (2, 3, 32, 32)
