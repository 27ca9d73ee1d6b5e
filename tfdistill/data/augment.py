"""Image operations: ``random_crop_flip`` (batches (B, H, W, C), in TensorFlow) and
``resize_bilinear`` ((N, H, W) arrays, in NumPy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


def random_crop_flip(images: Any, pad: int = 4, flip: bool = True, seed: Any = None) -> tf.Tensor:
    """Random translation and mirroring of a batch, for ``tf.data.Dataset.map`` or eager use.

    ``images``: float (B, H, W, C). Each image is zero-padded by ``pad`` pixels on every side,
    cropped back to H×W at a random offset, and (with ``flip``) mirrored left-right with
    probability 0.5; the result has the shape and dtype of ``images``. ``seed``: an int is the
    op seed of the random draws (``tf.random.uniform``); a pair, such as a (2,) int tensor, a
    stateless seed (``tf.random.stateless_uniform``): the same pair always draws the same.
    """
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0, got {pad!r}")
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    batch = tf.shape(images)[0]
    if seed is None or isinstance(seed, int | np.integer):
        draws = tf.random.uniform([batch, 3], seed=seed)
    else:
        draws = tf.random.stateless_uniform([batch, 3], seed=seed)
    return shift_crop(images, shift_params(draws, pad, flip), pad)


def shift_params(draws: Any, pad: int, flip: bool = True) -> tf.Tensor:
    """(B, 3) uniform draws -> float32 (B, 3) shifts (dy, dx in 0..2·pad) and mirror flags (0/1)."""
    import tensorflow as tf

    offsets = tf.minimum(tf.floor(draws[:, :2] * (2 * pad + 1)), 2.0 * pad)
    mirrored = tf.cast(draws[:, 2:] < 0.5, tf.float32) if flip else tf.zeros_like(draws[:, 2:])
    return tf.concat([offsets, mirrored], axis=1)


def shift_crop(images: Any, params: Any, pad: int) -> tf.Tensor:
    """`images` (B, H, W, C) zero-padded by `pad`, cropped back to H×W at offsets
    `params[:, :2]` and mirrored where `params[:, 2]` is 1 (see `shift_params`)."""
    import tensorflow as tf

    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.cast(params[:, :2], tf.int32)
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis]
    cols = tf.range(width)[tf.newaxis]
    cols = tf.where(params[:, 2:] > 0.5, width - 1 - cols, cols)
    cols = offsets[:, 1:] + cols
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 weights of 1-D bilinear resizing with half-pixel centers."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), lo), 1 - frac)
    np.add.at(weights, (np.arange(n_out), hi), frac)
    return weights


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize (N, H, W) images to float32 (N, size, size), like ``tf.image.resize``."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rows = _bilinear_matrix(images.shape[1], size)
    cols = _bilinear_matrix(images.shape[2], size)
    return np.einsum("ih,nhw,jw->nij", rows, images, cols).astype(np.float32)
