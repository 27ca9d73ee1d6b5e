"""Small building blocks shared by the model families: conv + BN (+ ReLU), the stem rule."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfdistill.models.layers import SplitGroupedConv2D
from tfdistill.models.registry import stage_name

DEFAULT_BN_MOMENTUM = 0.9
STEMS = ("cifar", "imagenet")
GROUPED_CONV = ("native", "split")


def resolve_stem(input_shape: Sequence[int], stem: str | None) -> str:
    """ "cifar" for inputs of at most 64 pixels a side (3×3 stride-1 stem, no early pooling),
    "imagenet" above; `stem` overrides."""
    if stem is None:
        return "cifar" if max(input_shape[0] or 0, input_shape[1] or 0) <= 64 else "imagenet"
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS} or None, got {stem!r}.")
    return stem


def check_choice(name: str, value: object, allowed: Sequence) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}.")


def bn(x, name: str, bn_momentum: float = DEFAULT_BN_MOMENTUM, **kwargs):
    return keras.layers.BatchNormalization(momentum=bn_momentum, name=name, **kwargs)(x)


def conv_bn(
    x,
    filters: int,
    kernel_size: int,
    *,
    name: str,
    strides: int = 1,
    groups: int = 1,
    relu: bool = True,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    relu6: bool = False,
    kernel_regularizer=None,
    grouped_conv: str = "native",
):
    """Conv (no bias, 'same' padding) -> BN -> optional ReLU/ReLU6. Layers `{name}_conv`, `_bn`,
    `_relu`. With groups > 1, `grouped_conv` "native" is one grouped `Conv2D`, "split" a
    `SplitGroupedConv2D` (same weights, lowered as split + per-group convs + concat)."""
    check_choice("grouped_conv", grouped_conv, GROUPED_CONV)
    conv = SplitGroupedConv2D if groups > 1 and grouped_conv == "split" else keras.layers.Conv2D
    x = conv(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        groups=groups,
        use_bias=False,
        kernel_regularizer=kernel_regularizer,
        name=f"{name}_conv",
    )(x)
    x = bn(x, f"{name}_bn", bn_momentum)
    if relu:
        x = keras.layers.ReLU(max_value=6.0 if relu6 else None, name=f"{name}_relu")(x)
    return x


def depthwise_bn(
    x,
    *,
    name: str,
    strides: int = 1,
    depth_multiplier: int = 1,
    relu: bool = True,
    relu6: bool = False,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
):
    """Depthwise 3×3 (no bias, 'same' padding) -> BN -> optional ReLU/ReLU6."""
    x = keras.layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same",
        depth_multiplier=depth_multiplier,
        use_bias=False,
        name=f"{name}_dw",
    )(x)
    x = bn(x, f"{name}_dw_bn", bn_momentum)
    if relu:
        x = keras.layers.ReLU(max_value=6.0 if relu6 else None, name=f"{name}_dw_relu")(x)
    return x


def classifier(x, num_classes: int, *, dropout: float = 0.0, name: str = "logits"):
    """Global average pool -> optional dropout -> Dense logits (B, num_classes)."""
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(num_classes, name=name)(x)


def end_stage(x, index: int):
    """Marks the output of resolution stage `index` (1-based) with an Identity layer named
    `stage{index}_out`, found again by `tfdistill.models.stage_outputs`."""
    return keras.layers.Identity(name=stage_name(index))(x)
