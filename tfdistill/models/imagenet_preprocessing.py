"""`ImageNetPreprocessing`: a `keras.applications` family's `preprocess_input` as one layer.

The applications expect their inputs prepared in one of four ways (Keras's
`imagenet_utils.preprocess_input` modes, and the families that rescale inside the model):

| mode | what `preprocess_input` does to RGB pixels in [0, 255] | families |
|---|---|---|
| "tf" | x / 127.5 - 1 | MobileNet, MobileNetV2, ResNet*V2, Inception*, Xception, NASNet |
| "torch" | (x / 255 - mean) / std, ImageNet's mean and std per channel | DenseNet |
| "caffe" | RGB -> BGR, then minus ImageNet's mean pixel (BGR) | ResNet50/101/152, VGG16/19 |
| "none" | nothing: the model rescales itself | EfficientNet*, MobileNetV3*, ConvNeXt* |

As a registered layer with a config (no `Lambda`), a teacher that starts with it saves and loads
in Keras's safe mode and takes raw pixels like every tfdistill model.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

MODES = ("tf", "torch", "caffe", "none")
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
EIGHT_BIT = 255.0


@keras.saving.register_keras_serializable(package="tfdistill")
class ImageNetPreprocessing(keras.layers.Layer):
    """Raw RGB pixels (B, H, W, 3) in [0, `pixel_max`] -> the same shape, prepared as
    `keras.applications` mode `mode` prepares 8-bit pixels (see the module's table). Pixels
    are first scaled to [0, 255] when `pixel_max` is not 255."""

    def __init__(self, mode: str, pixel_max: float = EIGHT_BIT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Unknown preprocessing mode {mode!r}; choose from {list(MODES)}.")
        if not pixel_max > 0:
            raise ValueError(f"pixel_max must be > 0, got {pixel_max!r}.")
        self.mode = mode
        self.pixel_max = float(pixel_max)

    def call(self, x: Any) -> Any:
        x = ops.cast(x, self.compute_dtype)
        if self.pixel_max != EIGHT_BIT:
            x = x * (EIGHT_BIT / self.pixel_max)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_MEAN, self.compute_dtype)
            std = ops.convert_to_tensor(TORCH_STD, self.compute_dtype)
            return (x / EIGHT_BIT - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(CAFFE_MEAN_BGR, self.compute_dtype)
            return ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode, "pixel_max": self.pixel_max}


__all__ = ["MODES", "ImageNetPreprocessing"]
