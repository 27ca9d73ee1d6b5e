"""Plain conv-BN-ReLU networks: stages of 3×3 convolutions, each stage after the first halving
the resolution, then global average pooling and a linear classifier giving logits."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfdistill.models.blocks import DEFAULT_BN_MOMENTUM, conv_bn, end_stage
from tfdistill.models.registry import register


@register("convnet")
def convnet(
    *,
    num_classes: int = 10,
    input_shape: Sequence[int] = (32, 32, 1),
    widths: Sequence[int] = (16, 32, 64),
    depth: int = 1,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    dropout: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """(B, H, W, C) images -> (B, num_classes) logits; `depth` convolutions per stage."""
    if not widths or depth < 1:
        raise ValueError(f"convnet needs at least one stage and depth >= 1, got {widths}, {depth}.")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    for stage, width in enumerate(widths):
        for block in range(depth):
            strides = 2 if stage > 0 and block == 0 else 1
            x = conv_bn(
                x, width, 3, strides=strides, bn_momentum=bn_momentum, name=f"s{stage}b{block}"
            )
        x = end_stage(x, stage + 1)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"convnet_{'_'.join(map(str, widths))}")
