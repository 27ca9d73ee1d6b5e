"""Wide ResNet (Zagoruyko & Komodakis 2016, "Wide Residual Networks"): WRN-depth-width.

depth = 6n+4: a 3×3 conv of 16 filters, three groups of n pre-activation basic blocks with 16k,
32k, 64k filters (k = width), the second and third starting with stride 2, then BN-ReLU, global
average pooling and a linear classifier. Each group's output is tapped as `stageN_out` before any
BN-ReLU, as attention transfer (Zagoruyko & Komodakis 2017) taps its group outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfdistill.models.blocks import (
    DEFAULT_BN_MOMENTUM,
    bn,
    classifier,
    conv_bn,
    end_stage,
    resolve_stem,
)
from tfdistill.models.registry import register
from tfdistill.models.resnet import stem_block


def preact_block(x, filters: int, *, strides: int, dropout: float, bn_momentum: float, name: str):
    """(B, H, W, C) -> (B, H/s, W/s, filters): BN-ReLU-conv3×3-BN-ReLU-(dropout)-conv3×3 + x,
    or + a 1×1 conv of the activated input when the shape changes."""
    act = bn(x, f"{name}_bn", bn_momentum)
    act = keras.layers.ReLU(name=f"{name}_relu")(act)
    if strides != 1 or x.shape[-1] != filters:
        x = keras.layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, name=f"{name}_shortcut_conv"
        )(act)
    residual = conv_bn(act, filters, 3, strides=strides, name=f"{name}_1", bn_momentum=bn_momentum)
    if dropout:
        residual = keras.layers.Dropout(dropout, name=f"{name}_dropout")(residual)
    residual = keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv"
    )(residual)
    return keras.layers.Add(name=f"{name}_add")([x, residual])


@register("wide_resnet")
def wide_resnet(
    *,
    depth: int = 16,
    width: int = 2,
    dropout: float = 0.0,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    stem: str | None = None,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    name: str | None = None,
) -> keras.Model:
    """(B, H, W, C) images -> (B, num_classes) logits; `dropout` between a block's convs."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"Wide ResNet depth must be 6n+4 with n >= 1 (e.g. 16, 22, 28, 40), got {depth!r}."
        )
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"Wide ResNet width must be a positive integer, got {width!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    stem_kind = resolve_stem(input_shape, stem)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = stem_block(inputs, 16, stem_kind, bn_momentum=bn_momentum, plain=True)
    for stage, filters in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range((depth - 4) // 6):
            x = preact_block(
                x,
                filters,
                strides=2 if stage > 0 and block == 0 else 1,
                dropout=dropout,
                bn_momentum=bn_momentum,
                name=f"s{stage + 1}b{block + 1}",
            )
        x = end_stage(x, stage + 1)
    x = bn(x, "final_bn", bn_momentum)
    x = keras.layers.ReLU(name="final_relu")(x)
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"wrn_{depth}_{width}")
