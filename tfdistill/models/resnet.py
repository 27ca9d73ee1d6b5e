"""ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition").

CIFAR nets (depth 6n+2: 20, 32, 44, 56, 110, ...): 3×3 conv 16, three stages of n basic blocks
with 16, 32, 64 filters. ImageNet nets (depth 18, 34: basic blocks; 50, 101, 152: bottlenecks):
stages of 64, 128, 256, 512 filters (×4 out of a bottleneck). The stem follows the input size
(see `blocks.resolve_stem`), so ResNet-18 on 32×32 images is the usual CIFAR-adapted ResNet-18.

Convolutions carry no bias (BN follows each), as in the paper and torchvision; keras.applications'
ResNet50 has conv biases and so 26,560 parameters more. The bottleneck and stem helpers are shared
with WRN and ResNeXt.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfdistill.models.blocks import (
    DEFAULT_BN_MOMENTUM,
    check_choice,
    classifier,
    conv_bn,
    end_stage,
    resolve_stem,
)
from tfdistill.models.layers import SubsampleZeroPad
from tfdistill.models.registry import register

IMAGENET_BLOCKS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
SHORTCUTS = ("A", "B")


def stem_block(x, filters: int, kind: str, *, bn_momentum: float, plain: bool = False):
    """(B, H, W, 3) -> (B, H, W, filters) for "cifar" (3×3 conv-BN-ReLU; `plain`: the conv alone,
    for pre-activation nets) or (B, H/4, W/4, filters) for "imagenet" (7×7/2 conv-BN-ReLU, 3×3/2
    max pool)."""
    if kind == "cifar":
        if plain:
            return keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name="stem_conv"
            )(x)
        return conv_bn(x, filters, 3, name="stem", bn_momentum=bn_momentum)
    x = conv_bn(x, filters, 7, strides=2, name="stem", bn_momentum=bn_momentum)
    return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)


def shortcut_branch(x, filters: int, *, strides: int, kind: str, bn_momentum: float, name: str):
    """Identity when the shape is kept, else (B, H/s, W/s, filters) by option A (subsample and
    zero-pad) or B (1×1 conv-BN projection)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    if kind == "A":
        return SubsampleZeroPad(filters, strides, name=f"{name}_shortcut")(x)
    return conv_bn(
        x, filters, 1, strides=strides, relu=False, name=f"{name}_shortcut", bn_momentum=bn_momentum
    )


def basic_block(x, filters: int, *, strides: int, shortcut: str, bn_momentum: float, name: str):
    """(B, H, W, C) -> (B, H/s, W/s, filters): conv3×3-BN-ReLU-conv3×3-BN + shortcut, ReLU."""
    residual = conv_bn(x, filters, 3, strides=strides, name=f"{name}_1", bn_momentum=bn_momentum)
    residual = conv_bn(residual, filters, 3, relu=False, name=f"{name}_2", bn_momentum=bn_momentum)
    x = shortcut_branch(
        x, filters, strides=strides, kind=shortcut, bn_momentum=bn_momentum, name=name
    )
    x = keras.layers.Add(name=f"{name}_add")([x, residual])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def bottleneck_block(
    x,
    width: int,
    filters: int,
    *,
    strides: int,
    groups: int = 1,
    stride_in_1x1: bool = False,
    shortcut: str = "B",
    bn_momentum: float,
    grouped_conv: str = "native",
    name: str,
):
    """(B, H, W, C) -> (B, H/s, W/s, filters): 1×1 conv to `width` -> 3×3 conv (`groups` groups:
    ResNeXt form (c)) -> 1×1 conv to `filters`, BN after each, + shortcut, ReLU. The stride sits
    on the 3×3 conv (torchvision's "v1.5", ResNeXt) or with `stride_in_1x1` on the first 1×1
    (the original Caffe ResNet, keras.applications). `grouped_conv` lowers the grouped 3×3 (see
    `blocks.conv_bn`)."""
    s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
    residual = conv_bn(x, width, 1, strides=s1, name=f"{name}_1", bn_momentum=bn_momentum)
    residual = conv_bn(
        residual,
        width,
        3,
        strides=s3,
        groups=groups,
        name=f"{name}_2",
        bn_momentum=bn_momentum,
        grouped_conv=grouped_conv,
    )
    residual = conv_bn(residual, filters, 1, relu=False, name=f"{name}_3", bn_momentum=bn_momentum)
    x = shortcut_branch(
        x, filters, strides=strides, kind=shortcut, bn_momentum=bn_momentum, name=name
    )
    x = keras.layers.Add(name=f"{name}_add")([x, residual])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _architecture(depth: int) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """(block kind, blocks per stage, filters per stage) for `depth`."""
    if depth in IMAGENET_BLOCKS:
        kind, blocks = IMAGENET_BLOCKS[depth]
        return kind, blocks, (64, 128, 256, 512)
    if isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0:
        return "basic", ((depth - 2) // 6,) * 3, (16, 32, 64)
    raise ValueError(
        f"ResNet depth must be 6n+2 for the CIFAR nets (20, 32, 44, 56, 110, ...) or one of "
        f"{sorted(IMAGENET_BLOCKS)} for the ImageNet nets, got {depth!r}."
    )


@register("resnet")
def resnet(
    *,
    depth: int = 20,
    shortcut: str | None = None,
    stride_in_1x1: bool = False,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    stem: str | None = None,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    name: str | None = None,
) -> keras.Model:
    """(B, H, W, C) images -> (B, num_classes) logits.

    `depth` 18/34/50/101/152 selects the ImageNet net (so 50 and 152 are never the 6n+2 CIFAR
    nets), any other 6n+2 the CIFAR net. `shortcut` for the downsampling shortcuts: "A"
    (subsample + zero channels, no parameters; the paper's CIFAR nets, default there) or "B"
    (1×1 conv-BN projection; the paper's ImageNet nets, default there). `stride_in_1x1` moves a
    bottleneck's stride to its first 1×1 conv. Each stage's last block output is `stageN_out`.
    """
    kind, blocks, widths = _architecture(depth)
    shortcut = shortcut if shortcut is not None else ("B" if depth in IMAGENET_BLOCKS else "A")
    check_choice("shortcut", shortcut, SHORTCUTS)
    stem_kind = resolve_stem(input_shape, stem)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = stem_block(inputs, widths[0], stem_kind, bn_momentum=bn_momentum)
    for stage, (count, width) in enumerate(zip(blocks, widths, strict=True)):
        for block in range(count):
            strides = 2 if stage > 0 and block == 0 else 1
            block_name = f"s{stage + 1}b{block + 1}"
            if kind == "basic":
                x = basic_block(
                    x,
                    width,
                    strides=strides,
                    shortcut=shortcut,
                    bn_momentum=bn_momentum,
                    name=block_name,
                )
            else:
                x = bottleneck_block(
                    x,
                    width,
                    4 * width,
                    strides=strides,
                    stride_in_1x1=stride_in_1x1,
                    shortcut=shortcut,
                    bn_momentum=bn_momentum,
                    name=block_name,
                )
        x = end_stage(x, stage + 1)
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")
