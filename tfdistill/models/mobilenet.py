"""MobileNet v1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018): depthwise-separable
and inverted-residual networks, (B, H, W, C) images -> (B, num_classes) logits.

Parameter counts equal `keras.applications.MobileNet` / `MobileNetV2` (weights=None) for the
same `alpha`; v1 uses the paper's ReLU where keras.applications uses ReLU6. The "cifar" stem
(inputs of at most 64 px unless `stem` says otherwise) makes the first convolution stride 1,
so the network downsamples 16× instead of 32×."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfdistill.models.blocks import (
    DEFAULT_BN_MOMENTUM,
    classifier,
    conv_bn,
    depthwise_bn,
    end_stage,
    resolve_stem,
)
from tfdistill.models.registry import register

# (filters, stride) of the 13 depthwise-separable blocks, paper Table 1.
V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)

# (expansion t, channels c, repeats n, first stride s) of the bottleneck groups, paper Table 2.
V2_GROUPS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
V2_LAST_CHANNELS = 1280


def _round_channels(value: float, divisor: int = 8) -> int:
    """Nearest multiple of `divisor` (at least `divisor`), bumped up one step if rounding would
    lose more than 10% of `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _stage_ends(strides: Sequence[int]) -> set[int]:
    """Indices of the blocks after which a resolution stage ends: each block followed by a
    stride-2 block, and the last block."""
    return {i for i in range(len(strides) - 1) if strides[i + 1] == 2} | {len(strides) - 1}


def _validate(
    family: str,
    input_shape: Sequence[int],
    num_classes: int,
    alpha: float,
    dropout: float,
    bn_momentum: float,
    stem: str | None,
) -> str:
    """Raises ValueError naming the first bad argument; returns the resolved stem."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    stem = resolve_stem(input_shape, stem)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}.")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}.")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    if not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}.")
    smallest = 32 if stem == "imagenet" else 16
    sides = [side for side in input_shape[:2] if side is not None]
    if any(side < smallest for side in sides):
        raise ValueError(
            f"{family} with the {stem!r} stem needs input_shape height and width >= {smallest} "
            f"(it downsamples {smallest}×), got {tuple(input_shape)}."
        )
    return stem


@register("mobilenet_v1")
def mobilenet_v1(
    *,
    input_shape: Sequence[int] = (224, 224, 3),
    num_classes: int = 1000,
    alpha: float = 1.0,
    depth_multiplier: int = 1,
    dropout: float = 1e-3,
    stem: str | None = None,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    name: str | None = None,
) -> keras.Model:
    """MobileNet v1: (B, H, W, C) -> (B, num_classes) logits.

    Conv 3×3/2 (/1 with the cifar stem) of int(32·alpha) channels, then 13 blocks of depthwise
    3×3 + BN + ReLU and pointwise 1×1 + BN + ReLU, global average pooling, dropout and a dense
    layer. `alpha` is the width multiplier, `depth_multiplier` the depthwise channel multiplier;
    the resolution multiplier is `input_shape`.

    Stage outputs (`stage1_out` .. `stage5_out`) follow the pointwise ReLU of blocks 1, 3, 5, 11
    and 13: at 224 px, 112², 56², 28², 14², 7² with 64, 128, 256, 512, 1024 ·alpha channels; at
    32 px with the cifar stem, 32², 16², 8², 4², 2².
    """
    stem = _validate("mobilenet_v1", input_shape, num_classes, alpha, dropout, bn_momentum, stem)
    if not isinstance(depth_multiplier, int) or depth_multiplier < 1:
        raise ValueError(f"depth_multiplier must be an integer >= 1, got {depth_multiplier!r}.")

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = conv_bn(
        inputs,
        int(32 * alpha),
        3,
        strides=2 if stem == "imagenet" else 1,
        bn_momentum=bn_momentum,
        name="stem",
    )
    strides = [s for _, s in V1_BLOCKS]
    ends = sorted(_stage_ends(strides))
    for i, (filters, stride) in enumerate(V1_BLOCKS):
        block = f"block{i + 1}"
        x = depthwise_bn(
            x,
            strides=stride,
            depth_multiplier=depth_multiplier,
            bn_momentum=bn_momentum,
            name=block,
        )
        x = conv_bn(x, int(filters * alpha), 1, bn_momentum=bn_momentum, name=f"{block}_pw")
        if i in ends:
            x = end_stage(x, ends.index(i) + 1)
    outputs = classifier(x, num_classes, dropout=dropout)
    default = f"mobilenet_v1_{alpha:g}_{input_shape[0]}"
    return keras.Model(inputs, outputs, name=name or default)


def _inverted_residual(
    x, *, expansion: int, filters: int, strides: int, bn_momentum: float, name: str
) -> keras.KerasTensor:
    """(B, H, W, C) -> (B, H/strides, W/strides, filters): 1×1 expansion to expansion·C + BN +
    ReLU6 (skipped when expansion is 1), depthwise 3×3 + BN + ReLU6, linear 1×1 projection + BN,
    plus the input when the shapes agree."""
    channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = conv_bn(
            y, expansion * channels, 1, relu6=True, bn_momentum=bn_momentum, name=f"{name}_expand"
        )
    y = depthwise_bn(y, strides=strides, relu6=True, bn_momentum=bn_momentum, name=name)
    y = conv_bn(y, filters, 1, relu=False, bn_momentum=bn_momentum, name=f"{name}_project")
    if strides == 1 and channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


@register("mobilenet_v2")
def mobilenet_v2(
    *,
    input_shape: Sequence[int] = (224, 224, 3),
    num_classes: int = 1000,
    alpha: float = 1.0,
    dropout: float = 0.0,
    stem: str | None = None,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    name: str | None = None,
) -> keras.Model:
    """MobileNetV2: (B, H, W, C) -> (B, num_classes) logits.

    Conv 3×3/2 (/1 with the cifar stem) + BN + ReLU6, 17 inverted-residual bottlenecks of
    Table 2, a 1×1 conv of 1280 channels (more only for alpha > 1) + BN + ReLU6, global average
    pooling, optional dropout and a dense layer. Channel counts are int(c·alpha) rounded to
    multiples of 8.

    Stage outputs (`stage1_out` .. `stage5_out`) follow the linear bottleneck outputs of blocks
    1, 3, 6 and 13 (16, 24, 32, 96 ·alpha channels) and the final 1×1 conv's ReLU6: at 224 px,
    112², 56², 28², 14², 7²; at 32 px with the cifar stem, 32², 16², 8², 4², 2².
    """
    stem = _validate("mobilenet_v2", input_shape, num_classes, alpha, dropout, bn_momentum, stem)

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = conv_bn(
        inputs,
        _round_channels(32 * alpha),
        3,
        strides=2 if stem == "imagenet" else 1,
        relu6=True,
        bn_momentum=bn_momentum,
        name="stem",
    )
    blocks = [
        (t, _round_channels(int(c * alpha)), s if r == 0 else 1)
        for t, c, n, s in V2_GROUPS
        for r in range(n)
    ]
    ends = sorted(_stage_ends([s for _, _, s in blocks]))
    for i, (expansion, filters, stride) in enumerate(blocks):
        x = _inverted_residual(
            x,
            expansion=expansion,
            filters=filters,
            strides=stride,
            bn_momentum=bn_momentum,
            name=f"block{i + 1}",
        )
        if i in ends[:-1]:
            x = end_stage(x, ends.index(i) + 1)
    last = _round_channels(V2_LAST_CHANNELS * alpha) if alpha > 1 else V2_LAST_CHANNELS
    x = conv_bn(x, last, 1, relu6=True, bn_momentum=bn_momentum, name="head")
    x = end_stage(x, len(ends))
    outputs = classifier(x, num_classes, dropout=dropout)
    default = f"mobilenet_v2_{alpha:g}_{input_shape[0]}"
    return keras.Model(inputs, outputs, name=name or default)
