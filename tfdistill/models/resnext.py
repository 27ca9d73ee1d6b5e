"""ResNeXt (Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural Networks").

Form (c) bottlenecks: 1×1 conv -> 3×3 conv in `cardinality` groups -> 1×1 conv, BN after each,
projection shortcut when the shape changes, stride on the 3×3 conv. Stage i (0-based) has grouped
width cardinality · bottleneck_width · 2^i and outputs 256 · 2^i channels.
ResNeXt-29 (CIFAR): 3×3 conv 64, three stages of 3 blocks; default 8×64d.
ResNeXt-50 / 101 (ImageNet): stages of 3, 4, 6 (23), 3 blocks; default 32×4d.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfdistill.models.blocks import (
    DEFAULT_BN_MOMENTUM,
    GROUPED_CONV,
    check_choice,
    classifier,
    end_stage,
    resolve_stem,
)
from tfdistill.models.registry import register
from tfdistill.models.resnet import bottleneck_block, stem_block

ARCHITECTURES: dict[int, tuple[tuple[int, ...], int, int]] = {
    29: ((3, 3, 3), 8, 64),
    50: ((3, 4, 6, 3), 32, 4),
    101: ((3, 4, 23, 3), 32, 4),
}


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ResNeXt {name} must be a positive integer, got {value!r}.")


@register("resnext")
def resnext(
    *,
    depth: int = 29,
    cardinality: int | None = None,
    bottleneck_width: int | None = None,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    stem: str | None = None,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    grouped_conv: str = "native",
    name: str | None = None,
) -> keras.Model:
    """(B, H, W, C) images -> (B, num_classes) logits. `cardinality` and `bottleneck_width`
    default to the paper's 8 × 64d for depth 29 and 32 × 4d for depths 50 and 101.

    `grouped_conv`: "native" (default, grouped `Conv2D`; faster in LiteRT with XNNPACK) or
    "split" (`SplitGroupedConv2D`, same weights; for comparison and for runtimes without
    grouped-convolution kernels)."""
    if depth not in ARCHITECTURES:
        raise ValueError(f"ResNeXt depth must be one of {sorted(ARCHITECTURES)}, got {depth!r}.")
    blocks, default_cardinality, default_width = ARCHITECTURES[depth]
    cardinality = default_cardinality if cardinality is None else cardinality
    bottleneck_width = default_width if bottleneck_width is None else bottleneck_width
    _positive_int("cardinality", cardinality)
    _positive_int("bottleneck_width", bottleneck_width)
    check_choice("grouped_conv", grouped_conv, GROUPED_CONV)
    stem_kind = resolve_stem(input_shape, stem)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = stem_block(inputs, 64, stem_kind, bn_momentum=bn_momentum)
    for stage, count in enumerate(blocks):
        for block in range(count):
            x = bottleneck_block(
                x,
                cardinality * bottleneck_width * 2**stage,
                256 * 2**stage,
                strides=2 if stage > 0 and block == 0 else 1,
                groups=cardinality,
                bn_momentum=bn_momentum,
                grouped_conv=grouped_conv,
                name=f"s{stage + 1}b{block + 1}",
            )
        x = end_stage(x, stage + 1)
    outputs = classifier(x, num_classes)
    return keras.Model(
        inputs, outputs, name=name or f"resnext{depth}_{cardinality}x{bottleneck_width}d"
    )
