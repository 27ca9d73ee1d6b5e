"""ShuffleNet v1 (Zhang et al. 2018) and v2 (Ma et al. 2018): pointwise group convolutions with
channel shuffle, and channel split + shuffle units, for ImageNet (224 px) or CIFAR-size inputs.

Layout (paper stage numbers): conv1 3×3/2 and max pool 3×3/2, then stages 2, 3, 4
of 4, 8, 4 units whose first unit halves the resolution; v2 adds conv5 (1×1). The output of the
paper's stages 2, 3, 4 is marked `stage1_out`, `stage2_out`, `stage3_out` (`end_stage`). With the
CIFAR stem conv1 has stride 1 and there is no max pool.

v1's conv1 width follows the authors' reference code (megvii ShuffleNet-Series): 24·s, except
24 at 1.5×; that reproduces the paper's 38M (0.5×), 292M (1.5×) and 524M (2×) Mult-Adds. The
paper leaves 0.25× open; 12 channels there gives its 13M. v2's conv1 has 24 channels (Table 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfdistill.models.blocks import (
    DEFAULT_BN_MOMENTUM,
    GROUPED_CONV,
    check_choice,
    classifier,
    conv_bn,
    depthwise_bn,
    end_stage,
    resolve_stem,
)
from tfdistill.models.layers import ChannelShuffle, ChannelSplit
from tfdistill.models.registry import register

STEM_CHANNELS = 24
UNITS = (4, 8, 4)
V1_GROUPS = (1, 2, 3, 4, 8)
V1_SCALES = (0.25, 0.5, 1.0, 1.5, 2.0)
V1_STEM_CHANNELS = {0.25: 12, 0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
V1_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
V2_CHANNELS = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


def v1_channels(groups: int, scale: float) -> tuple[int, int, int]:
    """Output channels of stages 2-4: Table 1's 1× widths times `scale`, rounded half up to a
    multiple of 4·groups so that the bottleneck (a quarter) splits evenly into the groups."""
    quantum = 4 * groups
    return tuple(
        max(quantum, int(c * scale / quantum + 0.5) * quantum) for c in V1_CHANNELS[groups]
    )


def v1_stem_channels(groups: int, scale: float) -> int:
    """conv1's width, rounded up to a multiple of `groups` (16 for g = 8 below 1×)."""
    return -(-V1_STEM_CHANNELS[scale] // groups) * groups


def _stem(x, channels: int, stem_kind: str, bn_momentum: float):
    """conv1 3×3 (stride 2, or 1 for "cifar") + BN + ReLU, then max pool 3×3/2 ("imagenet")."""
    cifar = stem_kind == "cifar"
    x = conv_bn(x, channels, 3, strides=1 if cifar else 2, bn_momentum=bn_momentum, name="conv1")
    if not cifar:
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="maxpool")(x)
    return x


def v1_unit(
    x,
    out_channels: int,
    *,
    groups: int,
    strides: int,
    group_first: bool = True,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    grouped_conv: str = "native",
    name: str,
):
    """(B, H, W, C_in) -> (B, H / strides, W / strides, out_channels). Stride 1 adds the identity
    (C_in = out_channels); stride 2 concatenates an average-pooled shortcut to a residual branch of
    out_channels - C_in channels. `group_first=False` makes the first 1×1 dense (stage 2's first
    unit), which also drops its no-op shuffle. `grouped_conv` lowers the grouped 1×1s (see
    `blocks.conv_bn`)."""
    in_channels = x.shape[-1]
    bottleneck = out_channels // 4
    branch = out_channels - in_channels if strides == 2 else out_channels
    if strides == 1 and in_channels != out_channels:
        raise ValueError(
            f"{name}: a stride-1 unit needs C_in = C_out, got {in_channels}, {out_channels}."
        )
    if out_channels % 4 or bottleneck % groups or branch <= 0 or branch % groups:
        raise ValueError(
            f"{name}: groups={groups} must divide the bottleneck ({out_channels} / 4) and branch "
            f"({branch}) channels of a unit with {in_channels} -> {out_channels} channels."
        )
    first_groups = groups if group_first else 1
    y = conv_bn(
        x,
        bottleneck,
        1,
        groups=first_groups,
        bn_momentum=bn_momentum,
        grouped_conv=grouped_conv,
        name=f"{name}_pw1",
    )
    if first_groups > 1:
        y = ChannelShuffle(groups, name=f"{name}_shuffle")(y)
    y = depthwise_bn(y, strides=strides, relu=False, bn_momentum=bn_momentum, name=name)
    y = conv_bn(
        y,
        branch,
        1,
        groups=groups,
        relu=False,
        bn_momentum=bn_momentum,
        grouped_conv=grouped_conv,
        name=f"{name}_pw2",
    )
    if strides == 1:
        x = keras.layers.Add(name=f"{name}_add")([x, y])
    else:
        x = keras.layers.AveragePooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
        x = keras.layers.Concatenate(name=f"{name}_concat")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@register("shufflenet_v1")
def shufflenet_v1(
    *,
    input_shape: Sequence[int] = (224, 224, 3),
    num_classes: int = 1000,
    groups: int = 3,
    scale: float = 1.0,
    stem: str | None = None,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    grouped_conv: str = "native",
    name: str | None = None,
) -> keras.Model:
    """ShuffleNet s× with g groups: (B, H, W, C) images -> (B, num_classes) logits.

    `grouped_conv`: "native" (default, grouped `Conv2D`; faster in LiteRT with XNNPACK) or
    "split" (`SplitGroupedConv2D`, same weights; for comparison and for runtimes without
    grouped-convolution kernels)."""
    check_choice("groups", groups, V1_GROUPS)
    check_choice("grouped_conv", grouped_conv, GROUPED_CONV)
    check_choice("scale", scale, V1_SCALES)
    stem_kind = resolve_stem(input_shape, stem)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = _stem(inputs, v1_stem_channels(groups, scale), stem_kind, bn_momentum)
    for index, (units, channels) in enumerate(
        zip(UNITS, v1_channels(groups, scale), strict=True), start=1
    ):
        for unit in range(units):
            x = v1_unit(
                x,
                channels,
                groups=groups,
                strides=2 if unit == 0 else 1,
                group_first=index > 1 or unit > 0,
                bn_momentum=bn_momentum,
                grouped_conv=grouped_conv,
                name=f"s{index + 1}u{unit + 1}",
            )
        x = end_stage(x, index)
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"shufflenet_v1_g{groups}_{scale}x")


def v2_unit(
    x,
    out_channels: int,
    *,
    strides: int,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    name: str,
):
    """(B, H, W, C_in) -> (B, H / strides, W / strides, out_channels), two branches of
    out_channels / 2 concatenated and shuffled with 2 groups. Stride 1 splits the input in half and
    passes the left half through (C_in = out_channels); stride 2 feeds the whole input to both."""
    half = out_channels // 2
    if out_channels % 2 or (strides == 1 and x.shape[-1] != out_channels):
        raise ValueError(f"{name}: cannot build a unit {x.shape[-1]} -> {out_channels} channels.")
    if strides == 1:
        left, right = ChannelSplit(2, name=f"{name}_split")(x)
    else:
        left = depthwise_bn(x, strides=2, relu=False, bn_momentum=bn_momentum, name=f"{name}_l")
        left = conv_bn(left, half, 1, bn_momentum=bn_momentum, name=f"{name}_l_pw")
        right = x
    right = conv_bn(right, half, 1, bn_momentum=bn_momentum, name=f"{name}_pw1")
    right = depthwise_bn(right, strides=strides, relu=False, bn_momentum=bn_momentum, name=name)
    right = conv_bn(right, half, 1, bn_momentum=bn_momentum, name=f"{name}_pw2")
    x = keras.layers.Concatenate(name=f"{name}_concat")([left, right])
    return ChannelShuffle(2, name=f"{name}_shuffle")(x)


@register("shufflenet_v2")
def shufflenet_v2(
    *,
    input_shape: Sequence[int] = (224, 224, 3),
    num_classes: int = 1000,
    scale: float = 1.0,
    stem: str | None = None,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    name: str | None = None,
) -> keras.Model:
    """ShuffleNet v2 s×: (B, H, W, C) images -> (B, num_classes) logits."""
    check_choice("scale", scale, tuple(V2_CHANNELS))
    *stage_channels, conv5 = V2_CHANNELS[scale]
    stem_kind = resolve_stem(input_shape, stem)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = _stem(inputs, STEM_CHANNELS, stem_kind, bn_momentum)
    for index, (units, channels) in enumerate(zip(UNITS, stage_channels, strict=True), start=1):
        for unit in range(units):
            x = v2_unit(
                x,
                channels,
                strides=2 if unit == 0 else 1,
                bn_momentum=bn_momentum,
                name=f"s{index + 1}u{unit + 1}",
            )
        x = end_stage(x, index)
    x = conv_bn(x, conv5, 1, bn_momentum=bn_momentum, name="conv5")
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"shufflenet_v2_{scale}x")
