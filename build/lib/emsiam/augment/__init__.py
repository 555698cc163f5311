"""Batched, per-sample-random, replayable SimSiam augmentation.

Every random number used to augment a sample is a pure function of that sample's
64-bit seed, never of the global torch RNG: ``augment(images, seeds, spec)`` is a
pure function, a sample's view depends only on its own image and seed, and
``view_seeds(seed, step, idx, view)`` makes any view seen in training
regenerable later. Batched tensor code, on CPU or CUDA. The pipeline, its
deviations from torchvision and the measurements behind them: docs/augment.md.
"""

from .blur import blur_kernel_size
from .params import sample_params
from .pipeline import augment, prepare
from .seeds import uniforms, view_seeds
from .spec import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LUMA,
    RECIPES,
    AugmentSpec,
    cifar_recipe,
    imagenet_recipe,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LUMA",
    "AugmentSpec",
    "cifar_recipe",
    "imagenet_recipe",
    "RECIPES",
    "view_seeds",
    "uniforms",
    "sample_params",
    "augment",
    "prepare",
    "blur_kernel_size",
]
