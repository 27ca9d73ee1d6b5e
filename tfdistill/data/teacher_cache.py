"""The teacher-output cache: ``teacher_logits`` (the frozen teacher's (N, C) logits of
(N, ...) images) and ``cache_teacher_outputs`` (batches the Distiller trains on without the
teacher, in the format of :mod:`tfdistill.batches`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from tfdistill.batches import INPUTS, TEACHER_LOGITS

if TYPE_CHECKING:
    import tensorflow as tf


def _logits_function(teacher: Any, teacher_outputs: str) -> Callable[[Any], tf.Tensor]:
    """x (B, ...) -> the frozen teacher's (B, C) float32 logits, BatchNorm folded."""
    import tensorflow as tf

    from tfdistill import outputs
    from tfdistill.folding import folded_forward

    kind = outputs.resolve_output_kind(teacher, teacher_outputs, "teacher_outputs")
    forward = folded_forward(teacher)

    @tf.function(reduce_retracing=True)
    def logits_of(x: tf.Tensor) -> tf.Tensor:
        return outputs.as_logits(forward(x), kind)

    return logits_of


def teacher_logits(
    images: np.ndarray, teacher: Any, *, teacher_outputs: str = "auto", batch_size: int = 256
) -> np.ndarray:
    """The frozen teacher's float32 logits (N, C) of ``images`` (N, ...), in inference mode."""
    if len(images) == 0:
        raise ValueError("teacher_logits got no images.")
    logits_of = _logits_function(teacher, teacher_outputs)
    parts = [
        np.asarray(logits_of(images[start : start + batch_size]))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts)


def cache_teacher_outputs(
    data: tf.data.Dataset | tuple[np.ndarray, ...],
    teacher: Any,
    *,
    teacher_outputs: str = "auto",
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Runs the frozen teacher once and returns batches the Distiller trains on without it.

    ``data``: a batched ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, sample_weight)``, or a tuple
    of arrays ``(x, y[, sample_weight])``. The result yields ``({"inputs": x, "teacher_logits":
    t}, y[, sample_weight])`` with t float32 (B, C), in the original order and batch size (or
    ``batch_size``). For data without random augmentation only: the logits belong to the images
    seen here. Everything is held in memory.
    """
    import tensorflow as tf

    logits_of = _logits_function(teacher, teacher_outputs)
    if isinstance(data, tf.data.Dataset):
        batches = data
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        batches = tf.data.Dataset.from_tensor_slices(tuple(data)).batch(batch_size or 32)
    else:
        raise ValueError(
            "cache_teacher_outputs takes a batched tf.data.Dataset of (x, y[, sample_weight]) or "
            f"a tuple of arrays (x, y[, sample_weight]), not {type(data).__name__}."
        )

    columns: list[list[np.ndarray]] = []
    first_batch = None
    for element in batches:
        if not isinstance(element, tuple) or len(element) not in (2, 3):
            raise ValueError(
                "cache_teacher_outputs needs batches of (x, y) or (x, y, sample_weight), got a "
                f"batch of type {type(element).__name__}."
            )
        parts = [element[0], logits_of(element[0]), *element[1:]]
        if not columns:
            columns = [[] for _ in parts]
            first_batch = int(tf.shape(element[0])[0])
        for column, part in zip(columns, parts, strict=True):
            column.append(np.asarray(part))
    if not columns:
        raise ValueError("cache_teacher_outputs got an empty dataset.")
    x, t, *rest = (np.concatenate(column) for column in columns)
    cached = tf.data.Dataset.from_tensor_slices(({INPUTS: x, TEACHER_LOGITS: t}, *rest))
    if shuffle:
        cached = cached.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return cached.batch(batch_size or first_batch).prefetch(tf.data.AUTOTUNE)
