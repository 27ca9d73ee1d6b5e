"""Custom layers of the model zoo, each serializable."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tfdistill")
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet's channel shuffle: (B, H, W, g·n) -> (B, H, W, g, n) -> transpose -> (B, H, W, C).

    Channel j·n + i moves to i·g + j, so each group of the next grouped convolution sees channels
    from every group of the previous one. Lowers to TFLite builtin RESHAPE and TRANSPOSE.
    """

    def __init__(self, groups: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"ChannelShuffle groups must be a positive integer, got {groups!r}.")
        self.groups = groups

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        if channels is not None and channels % self.groups:
            raise ValueError(
                f"ChannelShuffle groups={self.groups} does not divide the {channels} channels."
            )
        self.built = True

    def call(self, inputs):
        if self.groups == 1:
            return inputs
        shape = keras.ops.shape(inputs)
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        per_group = channels // self.groups
        x = keras.ops.reshape(inputs, (-1, height, width, self.groups, per_group))
        x = keras.ops.transpose(x, (0, 1, 2, 4, 3))
        return keras.ops.reshape(x, (shape[0], height, width, channels))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="tfdistill")
class ChannelSplit(keras.layers.Layer):
    """(B, H, W, C) -> [(B, H, W, C / n)] * n along channels; lowers to the TFLite builtin SPLIT."""

    def __init__(self, num_splits: int = 2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1:
            raise ValueError(
                f"ChannelSplit num_splits must be a positive integer, got {num_splits!r}."
            )
        self.num_splits = num_splits

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        if channels is not None and channels % self.num_splits:
            raise ValueError(
                f"ChannelSplit num_splits={self.num_splits} does not divide {channels} channels."
            )
        self.built = True

    def call(self, inputs):
        return keras.ops.split(inputs, self.num_splits, axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> list[tuple]:
        channels = input_shape[-1]
        part = None if channels is None else channels // self.num_splits
        return [(*input_shape[:-1], part) for _ in range(self.num_splits)]

    def get_config(self) -> dict:
        return {**super().get_config(), "num_splits": self.num_splits}


@keras.saving.register_keras_serializable(package="tfdistill")
class SplitGroupedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` with `groups` lowered as split -> one convolution per group ->
    concatenate, which TFLite keeps as builtin SPLIT, `groups` × CONV_2D and CONCATENATION.

    Same arguments, config and variables as Conv2D: kernel (kh, kw, C_in / groups, filters),
    bias (filters,), so weights move freely between the two. Input slice i, (B, H, W, C_in /
    groups), meets kernel[..., i·f:(i + 1)·f] with f = filters / groups; the outputs (B, H', W',
    f) are concatenated to (B, H', W', filters), then bias and activation as in Conv2D. With
    groups = 1 it is Conv2D. It exists for runtimes without grouped-convolution kernels and for
    comparison: in LiteRT 2.3 with XNNPACK it ran 1.01-1.77× slower than the native grouped
    CONV_2D on ShuffleNet v1 and ResNeXt-29 (`benchmarks/inference.py`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups > 1 and self.data_format != "channels_last":
            raise ValueError(
                "SplitGroupedConv2D lowers grouped convolutions for TFLite, whose tensors are "
                f"channels_last; got data_format={self.data_format!r}. Use Conv2D(groups=...)."
            )

    def split_convolution(self, inputs: Any, kernel: Any, bias: Any = None) -> Any:
        """(B, H, W, C_in) -> (B, H', W', filters): one convolution per group, each adding its
        slice of `bias` (so TFLite fuses it into that CONV_2D), then concatenated."""
        conv = super().convolution_op
        slices = keras.ops.split(inputs, self.groups, axis=-1)
        kernels = keras.ops.split(kernel, self.groups, axis=-1)
        biases = [None] * self.groups if bias is None else keras.ops.split(bias, self.groups)
        outputs = []
        for x, k, b in zip(slices, kernels, biases, strict=True):
            y = conv(x, k)
            outputs.append(y if b is None else y + b)
        return keras.ops.concatenate(outputs, axis=-1)

    def call(self, inputs: Any) -> Any:
        if self.groups == 1:
            return super().call(inputs)
        outputs = self.split_convolution(inputs, self.kernel, self.bias if self.use_bias else None)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="tfdistill")
class SubsampleZeroPad(keras.layers.Layer):
    """The paper's option-A shortcut, free of parameters: (B, H, W, C) -> (B, ⌈H/s⌉, ⌈W/s⌉,
    filters), keeping every s-th pixel and appending filters - C zero channels. Lowers to TFLite
    builtin STRIDED_SLICE and PAD."""

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        return keras.ops.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))) if extra else x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        def sub(n):
            return None if n is None else -(-n // self.strides)

        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), self.filters)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}
