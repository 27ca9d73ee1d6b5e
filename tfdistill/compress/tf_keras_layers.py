"""tf_keras twins of the zoo's custom layers, for the TFMOT fine-tuning stages.

Imported only once `tfdistill.compress.require_tfmot` has found tf_keras. Each twin computes
what its Keras 3 layer computes, from the same config, and has no weights.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras


@tf_keras.saving.register_keras_serializable(package="tfdistill")
class ChannelShuffle(tf_keras.layers.Layer):
    """(B, H, W, g·n) -> (B, H, W, g, n) -> transpose -> (B, H, W, C), as
    `tfdistill.models.ChannelShuffle`."""

    def __init__(self, groups: int, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        if self.groups == 1:
            return inputs
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        x = tf.reshape(inputs, (-1, height, width, self.groups, channels // self.groups))
        x = tf.transpose(x, (0, 1, 2, 4, 3))
        return tf.reshape(x, (tf.shape(inputs)[0], height, width, channels))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "groups": self.groups}


@tf_keras.saving.register_keras_serializable(package="tfdistill")
class ChannelSplit(tf_keras.layers.Layer):
    """(B, H, W, C) -> [(B, H, W, C / n)] * n, as `tfdistill.models.ChannelSplit`."""

    def __init__(self, num_splits: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.num_splits = num_splits

    def call(self, inputs: tf.Tensor) -> list[tf.Tensor]:
        return tf.split(inputs, self.num_splits, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_splits": self.num_splits}


@tf_keras.saving.register_keras_serializable(package="tfdistill")
class SubsampleZeroPad(tf_keras.layers.Layer):
    """(B, H, W, C) -> (B, ⌈H/s⌉, ⌈W/s⌉, filters), as `tfdistill.models.SubsampleZeroPad`."""

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        return tf.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))) if extra else x

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


__all__ = ["ChannelShuffle", "ChannelSplit", "SubsampleZeroPad"]
