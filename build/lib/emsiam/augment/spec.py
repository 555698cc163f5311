"""The augmentation recipe (AugmentSpec) and SimSiam's CIFAR-10 and ImageNet recipes."""

from __future__ import annotations

from dataclasses import dataclass

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentSpec:
    """Augmentation recipe. Probabilities of 0 switch an op off entirely."""

    resolution: int  # output side length
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # b, c, s, h
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    # "fixed": brightness, contrast, saturation, hue (default; see docs/augment.md)
    # "random": per-sample random order, as torchvision's ColorJitter
    jitter_order: str = "fixed"

    def __post_init__(self):
        if self.jitter_order not in ("fixed", "random"):
            raise ValueError(f"jitter_order must be 'fixed' or 'random', got {self.jitter_order!r}")


def cifar_recipe(
    resolution: int = 32,
    mean: tuple[float, float, float] = CIFAR10_MEAN,
    std: tuple[float, float, float] = CIFAR10_STD,
) -> AugmentSpec:
    """SimSiam's CIFAR-10 recipe (Chen & He 2021, appendix): no blur."""
    return AugmentSpec(resolution=resolution, mean=tuple(mean), std=tuple(std))


def imagenet_recipe(
    resolution: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> AugmentSpec:
    """SimSiam's ImageNet recipe: the CIFAR one plus Gaussian blur (p=0.5,
    sigma ~ U(0.1, 2.0), kernel ~10% of the side, odd)."""
    return AugmentSpec(
        resolution=resolution, blur_p=0.5, blur_sigma=(0.1, 2.0), mean=tuple(mean), std=tuple(std)
    )


RECIPES = {"cifar": cifar_recipe, "imagenet": imagenet_recipe}
