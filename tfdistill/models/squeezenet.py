"""SqueezeNet v1.0 (Iandola et al. 2016) and v1.1 (the authors' reference repository):
fire modules, (B, H, W, C) images -> (B, num_classes) class scores.

A fire module squeezes its input with a 1×1 convolution, then expands it with a 1×1 and a 3×3
convolution whose outputs are concatenated, every convolution followed by a ReLU. Both
versions have the same eight fire modules, (squeeze, expand 1×1, expand 3×3) channels:

    fire2, fire3: (16, 64, 64)     fire4, fire5: (32, 128, 128)
    fire6, fire7: (48, 192, 192)   fire8, fire9: (64, 256, 256)

v1.0: conv1 96 7×7/2, pool1, fire2-4, pool4, fire5-8, pool8, fire9. v1.1: conv1 64 3×3/2,
pool1, fire2-3, pool3, fire4-5, pool5, fire6-9 (2.4× less computation). Then the classifier:
dropout 0.5, conv10 (1×1 to num_classes) + ReLU, global average pooling. As in the reference
definitions (torchvision's and Caffe's) the convolutions have biases and no BatchNorm, conv1 is
unpadded, and the max pools (3×3/2) round their output size up (PyTorch's `ceil_mode`): here
"valid" padding on odd sides, "same" (one row or column after, ignored by the max) on even
ones and a zero row or column where the two differ, which gives the same sizes and values:
224 px -> 109, 54, 27, 13 (v1.0); 111, 55, 27, 13 (v1.1). 1,000 classes: 1,248,424 and
1,235,496 parameters, the reference counts.

Class scores: the reference ends in a ReLU before the average pool, so the outputs are
non-negative. They are kept by default: the Distiller, the losses and the TFLite export treat
them as logits (a softmax of them is the model's prediction), as the reference's training does.
`final_relu=False` drops that ReLU (same weights), so the scores are unbounded logits. On the
embedded digits (v1.1, cifar stem, 8 epochs; `tools/squeezenet_final_relu.py`) the reference
stayed at chance, with cross-entropy and with KD alike, and `batch_norm=True, final_relu=False`
reached 99.7% and 99.4% (with the ReLU: 77.8% and 70.3%); see docs/models.md.

`batch_norm=True` puts a BatchNorm (momentum `bn_momentum`) between every convolution but
conv10 and its ReLU, and drops those convolutions' biases: a variant for training from scratch
on small data, not the reference. The "cifar" stem (inputs of at most 64 px unless `stem` says
otherwise) makes conv1 3×3/1 "same" and drops pool1, so the network downsamples 4× instead
of 16×: at 32 px the stages are 32², 16², 8².

Stage outputs (`stage1_out` .. `stage3_out`, for attention transfer and hints) follow the last
fire module before pool4 and pool8 (v1.0; pool3 and pool5 for v1.1) and fire9.

Channel pruning (`tfdistill.compress.prune_channels`) shrinks conv1, the squeezes and both
expands of every fire (the Concatenate lays the expands' channels end to end, and the next
squeeze takes the kept ones of both); conv10 gives the outputs and stays whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfdistill.models.blocks import DEFAULT_BN_MOMENTUM, bn, check_choice, end_stage, resolve_stem
from tfdistill.models.registry import register

VERSIONS = ("1.0", "1.1")
# (squeeze, expand 1×1, expand 3×3) channels of fire2 .. fire9, both versions.
FIRES: tuple[tuple[int, int, int], ...] = (
    (16, 64, 64),
    (16, 64, 64),
    (32, 128, 128),
    (32, 128, 128),
    (48, 192, 192),
    (48, 192, 192),
    (64, 256, 256),
    (64, 256, 256),
)
# version -> (conv1 channels, conv1 kernel, the fire modules followed by a max pool).
LAYOUT: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "1.0": (96, 7, (4, 8)),
    "1.1": (64, 3, (3, 5)),
}
DROPOUT = 0.5


def _version(version: str | float) -> str:
    """Returns the version as "1.0" or "1.1" (given so, or as the numbers 1.0 and 1.1, as JSON
    may give them); anything else is a ValueError naming the choices."""
    if isinstance(version, float):
        version = f"{version:.1f}"
    check_choice("version", version, VERSIONS)
    return version


def pooled_side(side: int | None) -> int | None:
    """Output side of a 3×3/2 max pool rounding up (PyTorch `ceil_mode`, no padding): 0 when
    the input is too small (a side of 1); None stays None."""
    if side is None:
        return None
    return 0 if side < 2 else -(-(side - 3) // 2) + 1


def stage_sides(side: int, version: str = "1.0", stem: str = "imagenet") -> tuple[int, ...]:
    """The sides of conv1's output and of the three stages for an input `side` px wide; a 0
    where the input is too small for the layers before it."""
    _, kernel, pools = LAYOUT[_version(version)]
    if stem == "cifar":
        sides = [side]
    else:
        sides = [max(0, (side - kernel) // 2 + 1)]
        sides.append(pooled_side(sides[-1]))
    stages = [sides[-1]]
    for _ in pools:
        stages.append(pooled_side(stages[-1]))
    return (sides[0], *stages)


def _check_size(input_shape: Sequence[int], version: str, stem: str) -> None:
    """A ValueError naming the smallest input side the layout allows (21 px for v1.0 with the
    imagenet stem, 17 for v1.1, as torchvision says; 4 with the cifar stem)."""
    for side in input_shape[:2]:
        if side is not None and min(stage_sides(side, version, stem)) < 1:
            smallest = next(s for s in range(1, 1024) if min(stage_sides(s, version, stem)) >= 1)
            raise ValueError(
                f"squeezenet version {version} with the {stem!r} stem needs input_shape height "
                f"and width >= {smallest}, got {tuple(input_shape)}."
            )


def _conv_relu(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: int,
    *,
    name: str,
    strides: int = 1,
    padding: str = "same",
    batch_norm: bool = False,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
) -> keras.KerasTensor:
    """(B, H, W, C) -> (B, H', W', filters): `{name}_conv` (He-uniform kernel as torchvision;
    a bias unless `batch_norm`), `{name}_bn` with `batch_norm`, `{name}_relu`."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=not batch_norm,
        kernel_initializer="he_uniform",
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = bn(x, f"{name}_bn", bn_momentum)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def fire(
    x: keras.KerasTensor,
    squeeze: int,
    expand1x1: int,
    expand3x3: int,
    *,
    name: str,
    batch_norm: bool = False,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
) -> keras.KerasTensor:
    """Fire module: (B, H, W, C) -> (B, H, W, expand1x1 + expand3x3). `{name}_squeeze` (1×1 to
    `squeeze` channels + ReLU) feeds `{name}_expand1x1` (1×1) and `{name}_expand3x3` (3×3,
    "same"), each + ReLU, concatenated in that order by `{name}_concat`."""
    kwargs = {"batch_norm": batch_norm, "bn_momentum": bn_momentum}
    s = _conv_relu(x, squeeze, 1, name=f"{name}_squeeze", **kwargs)
    e1 = _conv_relu(s, expand1x1, 1, name=f"{name}_expand1x1", **kwargs)
    e3 = _conv_relu(s, expand3x3, 3, name=f"{name}_expand3x3", **kwargs)
    return keras.layers.Concatenate(name=f"{name}_concat")([e1, e3])


def max_pool(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """(B, H, W, C) -> (B, H', W', C), 3×3/2 rounding the size up as the reference's
    `ceil_mode`: "valid" where both sides are odd, "same" where both are even (its extra row and
    column, after, are ignored by the max); otherwise a `{name}_pad` zero row or column after
    each even side, then "valid" (exact: the inputs are ReLU outputs, never below 0). Unknown
    sides: "same"."""
    height, width = x.shape[1:3]
    if height is None or width is None or (height % 2 == 0 and width % 2 == 0):
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)
    if height % 2 == 0 or width % 2 == 0:
        x = keras.layers.ZeroPadding2D(
            ((0, 1 - height % 2), (0, 1 - width % 2)), name=f"{name}_pad"
        )(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def _classifier(
    x: keras.KerasTensor, num_classes: int, dropout: float, final_relu: bool
) -> keras.KerasTensor:
    """(B, H, W, 512) -> (B, num_classes): dropout, conv10 (1×1, N(0, 0.01) kernel as
    torchvision) + ReLU (`conv10_relu`, unless not `final_relu`), global average pooling named
    "logits"."""
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Conv2D(
        num_classes,
        1,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="conv10",
    )(x)
    if final_relu:
        x = keras.layers.ReLU(name="conv10_relu")(x)
    return keras.layers.GlobalAveragePooling2D(name="logits")(x)


def _check_arguments(
    num_classes: int, dropout: float, batch_norm: bool, bn_momentum: float | None
) -> float:
    """ValueError naming the first bad argument; returns the BatchNorm momentum to use."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}.")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    if bn_momentum is None:
        return DEFAULT_BN_MOMENTUM
    if not batch_norm:
        raise ValueError(
            "bn_momentum applies to SqueezeNet only with batch_norm=True (the reference has no "
            "BatchNorm)."
        )
    if not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}.")
    return bn_momentum


@register("squeezenet")
def squeezenet(
    *,
    version: str | float = "1.0",
    input_shape: Sequence[int] = (224, 224, 3),
    num_classes: int = 1000,
    dropout: float = DROPOUT,
    stem: str | None = None,
    batch_norm: bool = False,
    bn_momentum: float | None = None,
    final_relu: bool = True,
    name: str | None = None,
) -> keras.Model:
    """SqueezeNet `version` "1.0" or "1.1": (B, H, W, C) images -> (B, num_classes) class
    scores (non-negative: the reference's ReLU before the pool; used as logits).

    `dropout`: before conv10 (0.5 as the reference). `batch_norm`: BatchNorm after every
    convolution but conv10, without their biases (not the reference; `bn_momentum`, default
    0.9, applies only then). `final_relu=False`: no ReLU after conv10, the outputs are plain
    logits (not the reference). Both train much better on small data (module docstring).
    `stem`: see the module docstring."""
    version = _version(version)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    momentum = _check_arguments(num_classes, dropout, batch_norm, bn_momentum)
    stem_kind = resolve_stem(input_shape, stem)
    _check_size(input_shape, version, stem_kind)
    conv1, kernel, pools = LAYOUT[version]
    norm = {"batch_norm": batch_norm, "bn_momentum": momentum}
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    if stem_kind == "cifar":
        x = _conv_relu(inputs, conv1, 3, name="conv1", **norm)
    else:
        x = _conv_relu(inputs, conv1, kernel, strides=2, padding="valid", name="conv1", **norm)
        x = max_pool(x, name="pool1")
    for index, channels in enumerate(FIRES, start=2):
        x = fire(x, *channels, name=f"fire{index}", **norm)
        if index in pools:
            x = end_stage(x, pools.index(index) + 1)
            x = max_pool(x, name=f"pool{index}")
    x = end_stage(x, len(pools) + 1)
    outputs = _classifier(x, num_classes, dropout, final_relu)
    return keras.Model(inputs, outputs, name=name or f"squeezenet{version.replace('.', '_')}")
