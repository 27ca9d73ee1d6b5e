"""Static size of a model: parameter counts and the bytes its weights take."""

from __future__ import annotations

import keras
import numpy as np


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """{"params", "trainable", "non_trainable"}; BatchNorm moving statistics are non-trainable."""
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    non_trainable = int(sum(np.prod(v.shape) for v in model.non_trainable_weights))
    return {
        "params": trainable + non_trainable,
        "trainable": trainable,
        "non_trainable": non_trainable,
    }


def weight_bytes(model: keras.Model) -> int:
    """Bytes of all weights at their stored dtypes (float32 weights take 4 bytes each)."""
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.weights))
