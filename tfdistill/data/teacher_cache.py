"""The teacher-output cache: ``teacher_logits`` (the frozen teacher's (N, C) logits of
(N, ...) images) and ``cache_teacher_outputs`` (batches the Distiller trains on without the
teacher, in the format of :mod:`tfdistill.batches`).

A teacher taking another image size than the student runs on its own view of each image (a
two-view batch, or ``teacher_x``), or else on the student's images resized to its size
(``teacher_input_size``, as in the Distiller), so the cached logits are those the Distiller
would compute online."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from tfdistill.batches import INPUTS, TEACHER_LOGITS, split_views

if TYPE_CHECKING:
    import tensorflow as tf


def logits_function(
    teacher: Any, teacher_outputs: str, teacher_input_size: Any = "auto"
) -> Callable[[Any], tf.Tensor]:
    """x (B, ...) -> the frozen teacher's (B, C) float32 logits, BatchNorm folded; of a list
    of K teachers or a `teacher_ensemble` model, every teacher's, (B, K, C). Images
    (B, h, w, C) are first resized (``resolution.resize_images``) to ``teacher_input_size``:
    "auto" the teacher's own static (H, W), (H, W) that size, None never."""
    import tensorflow as tf

    from tfdistill import outputs, resolution
    from tfdistill.ensemble import members_of
    from tfdistill.folding import folded_forward

    unpacked = None if isinstance(teacher, (list, tuple)) else members_of(teacher)
    teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    teachers = teachers if unpacked is None else unpacked[0]
    kinds = [outputs.resolve_output_kind(t, teacher_outputs, "teacher_outputs") for t in teachers]
    forwards = [folded_forward(t) for t in teachers]
    size = resolution.resolve_teacher_size(None, teachers[0], teacher_input_size)

    @tf.function(reduce_retracing=True)
    def logits_of(x: tf.Tensor) -> tf.Tensor:
        if size is not None and len(x.shape) == 4:
            x = resolution.resize_images(x, size)
        logits = [outputs.as_logits(f(x), k) for f, k in zip(forwards, kinds, strict=True)]
        return logits[0] if len(logits) == 1 else tf.stack(logits, axis=1)

    return logits_of


def teacher_logits(
    images: np.ndarray,
    teacher: Any,
    *,
    teacher_outputs: str = "auto",
    batch_size: int = 256,
    teacher_input_size: Any = "auto",
    path: str | os.PathLike | None = None,
) -> np.ndarray:
    """The frozen teacher's float32 logits (N, C) of ``images`` (N, ...), in inference mode;
    ``teacher`` a list of K models (an ensemble): every teacher's, (N, K, C).

    ``images`` are the teacher's own view, or images of another size resized to the teacher's
    (bilinear, antialiased when shrinking; upsampling a small image gives the teacher no
    detail): ``teacher_input_size`` "auto" (its own static input size), (H, W), or None.
    ``images`` may be any sequence read by slices (an `ImageStore`, `ModelInputs`). With
    ``path`` the logits go to that ``.npy`` file as float16 and come back as a read-only memory
    map (N, C), for sets whose logits are too many to hold (`shuffled_batches` reads it a batch
    at a time)."""
    if len(images) == 0:
        raise ValueError("teacher_logits got no images.")
    logits_of = logits_function(teacher, teacher_outputs, teacher_input_size)
    starts = range(0, len(images), batch_size)
    if path is None:
        return np.concatenate(
            [np.asarray(logits_of(images[start : start + batch_size])) for start in starts]
        )
    first = np.asarray(logits_of(images[:batch_size]))
    stored = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float16, shape=(len(images), *first.shape[1:])
    )
    stored[: len(first)] = first
    for start in starts[1:]:
        stored[start : start + batch_size] = np.asarray(
            logits_of(images[start : start + batch_size])
        )
    stored.flush()
    del stored
    return np.load(path, mmap_mode="r")


def cache_teacher_outputs(
    data: tf.data.Dataset | tuple[np.ndarray, ...],
    teacher: Any,
    *,
    teacher_outputs: str = "auto",
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    teacher_x: np.ndarray | None = None,
    teacher_input_size: Any = "auto",
) -> tf.data.Dataset:
    """Runs the frozen teacher once and returns batches the Distiller trains on without it.

    ``data``: a batched ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, sample_weight)``, or a tuple
    of arrays ``(x, y[, sample_weight])``. The result yields ``({"inputs": x, "teacher_logits":
    t}, y[, sample_weight])`` with t float32 (B, C) (or (B, K, C) of a list of K teachers, an
    ensemble's, which its Distiller combines), in the original order and batch size (or
    ``batch_size``). For data without random augmentation only: the logits belong to the images
    seen here. Everything is held in memory.

    The teacher's view: where ``x`` is a two-view dict ``{"inputs": x_s, "teacher_inputs":
    x_t}`` (``tfdistill.batches.two_views``), or with the arrays ``teacher_x`` (N, H, W, C) the
    same images at the teacher's size, the teacher runs on x_t and only x_s is kept; otherwise
    on x resized as ``teacher_input_size`` says (see ``teacher_logits``).
    """
    import tensorflow as tf

    from tfdistill.batches import two_views

    logits_of = logits_function(teacher, teacher_outputs, teacher_input_size)
    if isinstance(data, tf.data.Dataset):
        if teacher_x is not None:
            raise ValueError("teacher_x goes with arrays; a dataset carries two-view batches.")
        batches = data
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        data = tuple(data)
        if teacher_x is not None:
            data = (two_views(data[0], teacher_x), *data[1:])
        batches = tf.data.Dataset.from_tensor_slices(data).batch(batch_size or 32)
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
        views = split_views(element[0])
        teacher_view = views.student if views.teacher is None else views.teacher
        parts = [views.student, logits_of(teacher_view), *element[1:]]
        if not columns:
            columns = [[] for _ in parts]
            first_batch = int(tf.shape(views.student)[0])
        for column, part in zip(columns, parts, strict=True):
            column.append(np.asarray(part))
    if not columns:
        raise ValueError("cache_teacher_outputs got an empty dataset.")
    x, t, *rest = (np.concatenate(column) for column in columns)
    cached = tf.data.Dataset.from_tensor_slices(({INPUTS: x, TEACHER_LOGITS: t}, *rest))
    if shuffle:
        cached = cached.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return cached.batch(batch_size or first_batch).prefetch(tf.data.AUTOTUNE)
