"""Every private name of Keras and TensorFlow that tfdistill touches, in one place.

Each function says why it needs the private name and the versions it was checked on. A Keras
or TensorFlow release that renames one breaks this module alone, and `tests/test_internals.py`
says which name moved.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
from keras.src.backend.tensorflow import nn as _tf_nn

_rows = threading.local()
_original_sync_moments = _tf_nn._compute_moments_sync


def _masked_sync_moments(x: tf.Tensor, axes: Any, keepdims: bool) -> tuple[tf.Tensor, tf.Tensor]:
    rows = getattr(_rows, "count", None)
    if rows is not None:
        x = x[:rows]
    return _original_sync_moments(x, axes, keepdims)


@contextlib.contextmanager
def batch_norm_rows(rows: tf.Tensor) -> Iterator[None]:
    """Inside, synchronized BatchNormalization layers traced on this thread compute their
    batch statistics from the first `rows` rows of their (B, ..., C) inputs alone, so rows
    appended as padding change neither the mean, the variance nor the count all-reduced over
    the replicas. Each replica traces on a thread of its own under `MirroredStrategy`.

    Keras 3.12-3.15.1: `BatchNormalization(synchronized=True)` reaches the module function
    `keras.src.backend.tensorflow.nn._compute_moments_sync(x, axes, keepdims)` (the batch axis 0
    is among `axes`), which is replaced once, on first use, by one that slices `x`."""
    if _tf_nn._compute_moments_sync is not _masked_sync_moments:
        _tf_nn._compute_moments_sync = _masked_sync_moments
    previous = getattr(_rows, "count", None)
    _rows.count = rows
    try:
        yield
    finally:
        _rows.count = previous


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs oneDNN kernels: `TF_ENABLE_ONEDNN_OPTS` as read
    at import, else TensorFlow's default for this CPU (on with AVX-512 VNNI/BF16 or AMX).
    TensorFlow 2.21: `tensorflow.python.util._pywrap_util_port.IsMklEnabled`."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())
