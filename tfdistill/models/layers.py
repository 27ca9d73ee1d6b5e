"""Custom layers of the model zoo, each serializable."""

from __future__ import annotations

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
