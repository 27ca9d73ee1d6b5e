"""Teacher and student at different input resolutions: which size the teacher takes, resizing
a batch to it, and carrying an input gradient from one resolution to the other.

The better input is a batch with two views of each image, the student's and the teacher's,
each cropped once and resized from the original to its model's size (`tfdistill.batches`).
With one view, the Distiller resizes the student's batch to the teacher's size here: that
upsamples when the teacher is larger, so the teacher sees no detail the student did not.
Imports no other tfdistill module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
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
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
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


def resize_images(images: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """(B, h, w, C) -> (B, H, W, C) bilinear, antialiased where a side shrinks; floating
    images keep their dtype, others become float32. The same (h, w) is returned unchanged."""
    images = tf.convert_to_tensor(images)
    h, w = images.shape[1:3]
    if (h, w) == tuple(size):
        return images
    shrinks = h is None or w is None or h > size[0] or w > size[1]
    resized = tf.image.resize(images, size, method="bilinear", antialias=shrinks)
    return tf.cast(resized, images.dtype) if images.dtype.is_floating else resized


def pull_back(teacher_grad: tf.Tensor, student_x: tf.Tensor) -> tf.Tensor:
    """The teacher's input gradient J_t (B, H, W, C) carried to the student's pixels (B, h, w, C):
    Rᵀ J_t, R the resize `resize_images` applies from (h, w) to (H, W). It is the gradient w.r.t.
    the student's image that the teacher would have had on the resized student image; for an
    integer upsampling factor k it is about k² times the k×k block mean of J_t (a sum, as a
    gradient of a sum over k² pixels is). Unchanged where the sizes agree."""
    size = tuple(teacher_grad.shape[1:3])
    if tuple(student_x.shape[1:3]) == size:
        return teacher_grad
    zeros = tf.zeros_like(tf.cast(student_x, teacher_grad.dtype))
    with tf.GradientTape() as tape:
        tape.watch(zeros)
        resized = resize_images(zeros, size)
    return tape.gradient(resized, zeros, output_gradients=teacher_grad)


def resample_attention(maps: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """(B, H, W) un-normalised attention maps -> (B, *size), at any ratio: the area mean where
    both sides shrink (each output cell the mean of the input cells it covers), bilinear
    (antialiased) otherwise."""
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    h, w = maps.shape[1:3]
    method = "area" if h >= size[0] and w >= size[1] else "bilinear"
    resized = tf.image.resize(maps[..., tf.newaxis], size, method=method, antialias=True)
    return tf.cast(resized[..., 0], maps.dtype)


def describe(setting: TeacherSize) -> str:
    return repr(setting if setting is None or isinstance(setting, str) else tuple(setting))


def input_shapes_differ(student: keras.Model, teacher: keras.Model) -> bool:
    """Whether both models take fixed-size images and their (H, W) differ."""
    s, t = static_image_size(student), static_image_size(teacher)
    return s is not None and t is not None and s != t
