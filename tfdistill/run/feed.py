"""What the training stages feed their models: each model's view of every training image.

The teacher may take another size than the student (`--teacher_image_size`, by default the
teacher's own: a `.keras` file's input size or a keras.applications model's ImageNet size).
From an `ImageStore` of photos (`Dataset.image_size` set), one crop per image is taken and
resized to each model's size (`data.views`): teacher and student see the same crop, each at its
own resolution. Images held at the models' size are randomly shifted and mirrored (4-pixel
padding, the CIFAR recipe) and resized for a teacher of another size.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfdistill import data, models
from tfdistill.batches import INPUTS, TEACHER_LOGITS, VIEW_LOGITS, VIEW_PARAMS, two_views
from tfdistill.data import views
from tfdistill.run.config import RunConfig

NATURAL_IMAGES = ("cifar10", "cifar100", "folder:", "tfds:")
View = Callable[[tuple, tf.Tensor], tuple]


def augments(config: RunConfig) -> bool:
    """`config.augment`, or by default whether the dataset holds natural images (CIFAR, an
    image folder, TFDS), which random crops and mirroring suit; digits do not mirror."""
    if config.augment is not None:
        return config.augment
    return config.dataset.startswith(NATURAL_IMAGES)


def keras_file_size(path: str | Path) -> views.Size | None:
    """(H, W) of the one image input in the config of `.keras` file `path`, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    shapes = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("batch_shape", "batch_input_shape") and isinstance(value, list):
                    shapes.append(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    if shapes and len(shapes[0]) == 4 and all(isinstance(v, int) for v in shapes[0][1:3]):
        return (shapes[0][1], shapes[0][2])
    return None


def teacher_size(config: RunConfig) -> views.Size | None:
    """The (H, W) the teacher takes: `--teacher_image_size`, else the teacher's own (its
    `.keras` file's, or a keras.applications model's ImageNet size), else None: the
    student's."""
    if config.teacher_image_size:
        return views.parse_size(config.teacher_image_size, "teacher_image_size")
    if config.teacher_files:
        return keras_file_size(config.teacher_files[0])
    if models.applications.is_application(config.teacher):
        return models.applications.own_size(config.teacher)
    return None


def _model_views(
    x: tf.Tensor, ds: data.Dataset, sizes: Sequence[views.Size], augment: bool, seed: tf.Tensor
) -> list[tf.Tensor]:
    """float32 (B, *size, C) per size of a batch x as gathered (uint8 from a store)."""
    scale = getattr(ds.x_train, "scale", 1.0)
    x = tf.cast(x, tf.float32)
    boxes = ds.image_size is not None
    if augment:
        params = views.draw_params(tf.shape(x)[0], seed, boxes)
        return [v * scale for v in views.render(x, params, sizes, boxes)]
    if boxes:
        return [views.center_view(x, size) * scale for size in sizes]
    own = tuple(x.shape[1:3])
    x = x * scale
    return [x if tuple(size) == own else tf.image.resize(x, size) for size in sizes]


def viewer(config: RunConfig, ds: data.Dataset, sizes: Sequence[views.Size]) -> View:
    """(batch, stateless seed (2,)) -> the batch each model takes: inputs at `sizes[0]` (the
    student's), two views with a second size (the teacher's); cached teacher logits kept."""
    augment = augments(config)

    def view(batch: tuple, seed: tf.Tensor) -> tuple:
        x, *rest = batch
        if isinstance(x, dict) and VIEW_LOGITS in x:
            return (stored_view(x, ds, sizes[0], seed), *rest)
        cached = isinstance(x, dict)
        images = x[INPUTS] if cached else x
        wanted = sizes[:1] if cached else sizes
        seen = _model_views(images, ds, wanted, augment, seed)
        if cached:
            inputs = {INPUTS: seen[0], TEACHER_LOGITS: x[TEACHER_LOGITS]}
        else:
            inputs = seen[0] if len(seen) == 1 else two_views(*seen)
        return (inputs, *rest)

    return view


def stored_view(x: dict, ds: data.Dataset, size: views.Size, seed: tf.Tensor) -> dict:
    """A cached-teacher batch from teacher-view rows (`data.teacher_views`): one of each
    image's K stored views, drawn from `seed`, rebuilt from its parameters at `size`, with the
    teacher's stored logits of that view."""
    images, params, logits = x[INPUTS], x[VIEW_PARAMS], x[VIEW_LOGITS]
    count = tf.shape(params)[1]
    pick_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    pick = tf.random.stateless_uniform(
        tf.shape(params)[:1], pick_seed, minval=0, maxval=count, dtype=tf.int32
    )
    chosen = tf.gather(params, pick, axis=1, batch_dims=1)
    boxes = ds.image_size is not None
    scale = getattr(ds.x_train, "scale", 1.0)
    student = data.teacher_views.render(tf.cast(images, tf.float32), chosen, [size], boxes)[0]
    targets = tf.cast(tf.gather(logits, pick, axis=1, batch_dims=1), tf.float32)
    return {INPUTS: student * scale, TEACHER_LOGITS: targets}


def sizes_of(ds: data.Dataset, teacher: views.Size | None, roles: str) -> list[views.Size]:
    """[student's (H, W)] for roles "student", [teacher's] for "teacher", [student's,
    teacher's] for "both" (one size when they agree)."""
    student = ds.input_shape[:2]
    teacher = tuple(teacher or student)
    chosen = {"student": [student], "teacher": [teacher], "both": [student, teacher]}[roles]
    return chosen[:1] if len(chosen) == 2 and chosen[0] == chosen[1] else chosen


Stream = Callable[[int], tf.data.Dataset]


def stream_of(
    config: RunConfig, ds: data.Dataset, elements: tuple, sizes: Sequence[views.Size]
) -> Stream:
    """skip -> the endless batches of `elements` ((x, y), x possibly a dict) from batch `skip`
    on, each model's view (`viewer`; see `data.shuffled_batches`)."""
    view = viewer(config, ds, sizes)

    def stream(skip: int) -> tf.data.Dataset:
        return data.shuffled_batches(
            elements, config.batch_size, seed=config.seed, skip=skip, augment=view
        )

    return stream


def epoch_batches(
    config: RunConfig, ds: data.Dataset, elements: tuple, sizes: Sequence[views.Size]
) -> tf.data.Dataset:
    """One epoch of batches of `elements` per pass, reshuffled every pass, each model's view
    (for the TFMOT stages, which count an epoch's batches)."""
    tensors = data.stream.as_tensors(elements)
    rows = data.stream.row_count(tensors)
    view = viewer(config, ds, sizes)

    def take(indices: tf.Tensor) -> tuple:
        seed = tf.random.uniform([2], 0, 2**31 - 1, tf.int64, seed=config.seed)
        return view(data.stream.gather_rows(tensors, indices), seed)

    batches = tf.data.Dataset.range(rows).shuffle(
        rows, seed=config.seed, reshuffle_each_iteration=True
    )
    batches = batches.batch(config.batch_size).map(take, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)
