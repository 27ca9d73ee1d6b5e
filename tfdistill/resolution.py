"""Teacher and student at different input resolutions: which size the teacher takes, resizing
a batch to it, and carrying an input gradient from one resolution to the other.

The better input is a batch with two views of each image, the student's and the teacher's,
each cropped once and resized from the original to its model's size (`tfdistill.batches`).
With one view, the Distiller resizes the student's batch to the teacher's size here: that
upsamples when the teacher is larger, so the teacher sees no detail the student did not.
Imports no other tfdistill module.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

AUTO = "auto"
TeacherSize = str | tuple[int, int] | None


def static_image_size(model: Any) -> tuple[int, int] | None:
    """(H, W) of a model's one (B, H, W, C) input when both are fixed, else None."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1 or len(inputs[0].shape) != 4:
        return None
    h, w = inputs[0].shape[1:3]
    return None if h is None or w is None else (int(h), int(w))


def check_size(size: Any, what: str = "teacher_input_size") -> tuple[int, int]:
    """A (H, W) pair of positive ints, as a tuple; a ValueError naming `what` otherwise."""
    if (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size
        )
    ):
        return int(size[0]), int(size[1])
    raise ValueError(f'{what} must be "auto", None or (H, W) positive ints, got {size!r}.')


def resolve_teacher_size(
    student: Any, teacher: Any, setting: TeacherSize = AUTO
) -> tuple[int, int] | None:
    """The (H, W) a one-view batch is resized to before the teacher sees it, or None (the
    teacher takes the student's batch as it is).

    "auto": the teacher's own static input size where it differs from the student's (None when
    they agree or either is unknown); (H, W): that size, which a teacher with a static input
    size must share; None: never resize."""
    if setting is None:
        return None
    teacher_hw, student_hw = static_image_size(teacher), static_image_size(student)
    if isinstance(setting, str):
        if setting != AUTO:
            raise ValueError(f'teacher_input_size must be "auto", None or (H, W), got {setting!r}.')
        return teacher_hw if teacher_hw is not None and teacher_hw != student_hw else None
    size = check_size(setting)
    if teacher_hw is not None and teacher_hw != size:
        raise ValueError(
            f"teacher_input_size={size} but the teacher takes {teacher_hw[0]}x{teacher_hw[1]} "
            'images; give its own size or "auto".'
        )
    return None if size == student_hw else size


def serialize_size(setting: TeacherSize) -> str | list[int] | None:
    """`teacher_input_size` for a config: "auto", None or [H, W]."""
    return setting if setting is None or isinstance(setting, str) else list(check_size(setting))


def deserialize_size(config: Any) -> TeacherSize:
    return config if config is None or isinstance(config, str) else check_size(config)


@functools.lru_cache(maxsize=64)
def _matrix(n_in: int, n_out: int, method: str, antialias: bool) -> np.ndarray:
    """(n_out, n_in) float32: `tf.image.resize` along one axis as a matrix, read off by resizing
    the identity. Every resize here is separable, so two such matrices make it an einsum, which
    XLA compiles (TensorFlow 2.21's XLA bridge has no area or antialiased resize; checked on
    CPU)."""
    with tf.init_scope():
        eye = tf.eye(n_in, dtype=tf.float64)[tf.newaxis, :, :, tf.newaxis]
        resized = tf.image.resize(eye, (n_out, n_in), method=method, antialias=antialias)
        return resized.numpy()[0, :, :, 0].astype(np.float32)


def _image_matrices(hw: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(H, h) and (W, w) matrices of `resize_images`: bilinear, antialiased where a side
    shrinks."""
    shrinks = hw[0] > size[0] or hw[1] > size[1]
    return (
        _matrix(hw[0], size[0], "bilinear", shrinks),
        _matrix(hw[1], size[1], "bilinear", shrinks),
    )


def _static_hw(tensor: tf.Tensor) -> tuple[int, int] | None:
    h, w = tensor.shape[1:3]
    return None if h is None or w is None else (int(h), int(w))


def resize_images(images: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """(B, h, w, C) -> (B, H, W, C): x' = R_h · x · R_wᵀ per image and channel, R the matrices of
    `tf.image.resize` bilinear (antialiased where a side shrinks), equal to it up to float32
    rounding. Floating images keep their dtype, others become float32; the same (h, w) is
    returned unchanged. Images of unknown (h, w) go through `tf.image.resize` itself (bilinear,
    antialiased), which XLA cannot compile."""
    images = tf.convert_to_tensor(images)
    hw = _static_hw(images)
    if hw == tuple(size):
        return images
    dtype = images.dtype if images.dtype.is_floating else tf.float32
    if hw is None:
        resized = tf.image.resize(images, size, method="bilinear", antialias=True)
        return tf.cast(resized, dtype)
    rows, cols = (tf.constant(m, dtype) for m in _image_matrices(hw, tuple(size)))
    return tf.einsum("Hh,bhwc,Ww->bHWc", rows, tf.cast(images, dtype), cols)


def pull_back(teacher_grad: tf.Tensor, student_x: tf.Tensor) -> tf.Tensor:
    """The teacher's input gradient J_t (B, H, W, C) carried to the student's pixels (B, h, w, C):
    R_hᵀ · J_t · R_w, the transpose of the resize `resize_images` applies from (h, w) to (H, W).
    It is the gradient w.r.t. the student's image that the teacher would have had on the resized
    student image; for an integer upsampling factor k it is about k² times the k×k block mean
    of J_t (a sum, as a gradient of a sum over k² pixels is). Unchanged where sizes agree."""
    size, hw = _static_hw(teacher_grad), _static_hw(student_x)
    if hw == size:
        return teacher_grad
    if size is None:
        raise ValueError(
            f"The teacher's view has an unknown size {teacher_grad.shape}; gradient attention "
            "across sizes needs it fixed."
        )
    if hw is None:  # the student's size is known only when run: the transpose by autodiff
        zeros = tf.zeros_like(tf.cast(student_x, teacher_grad.dtype))
        with tf.GradientTape() as tape:
            tape.watch(zeros)
            resized = resize_images(zeros, size)
        return tape.gradient(resized, zeros, output_gradients=teacher_grad)
    rows, cols = (tf.constant(m, teacher_grad.dtype) for m in _image_matrices(hw, size))
    return tf.einsum("Hh,bHWc,Ww->bhwc", rows, teacher_grad, cols)


def resample_attention(maps: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """(B, H, W) un-normalised attention maps -> (B, *size) at any ratio, m' = R_h · m · R_wᵀ:
    the area mean where both sides shrink (each output cell the mean of the input cells it
    covers, by overlap), bilinear (antialiased) otherwise."""
    hw = _static_hw(maps)
    if hw == tuple(size):
        return maps
    method = "area" if hw[0] >= size[0] and hw[1] >= size[1] else "bilinear"
    rows = tf.constant(_matrix(hw[0], size[0], method, True), maps.dtype)
    cols = tf.constant(_matrix(hw[1], size[1], method, True), maps.dtype)
    return tf.einsum("Hh,bhw,Ww->bHW", rows, maps, cols)


def input_shapes_differ(student: keras.Model, teacher: keras.Model) -> bool:
    """Whether both models take fixed-size images and their (H, W) differ."""
    s, t = static_image_size(student), static_image_size(teacher)
    return s is not None and t is not None and s != t
