"""Cached teacher views: the teacher labels K augmented views of every training image once,
and every later epoch draws one of them per image, rebuilding that exact crop from its stored
parameters, so the teacher does not run while the student trains (Shen & Xing, "A Fast
Knowledge Distillation Framework for Visual Recognition", ECCV 2022; Beyer et al., "Knowledge
distillation: A good teacher is patient and consistent", CVPR 2022: teacher and student always
see the same view).

A view is `views.PARAMS` numbers (`views.draw_params`): a crop box of a stored photo, or a
4-pixel shift and a mirror flag of an image held at the model's size. View k of image i is
drawn from the stateless seed (seed, k, batch of i), stored as float32 parameters (N, K, 4),
and labelled with the teacher's full logits, float16 (N, K, C): DKD and DIST need every logit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfdistill.artifacts import write_atomic
from tfdistill.batches import INPUTS, VIEW_LOGITS, VIEW_PARAMS
from tfdistill.data import views
from tfdistill.data.dataset import Dataset
from tfdistill.data.teacher_cache import logits_function

LABEL_SEED = 104729


@dataclasses.dataclass(frozen=True)
class TeacherViews:
    """`params` float32 (N, K, `views.PARAMS`) and the teacher's `logits` float16 (N, K, C)
    of K views of each of N images (arrays or read-only memory maps)."""

    params: np.ndarray
    logits: np.ndarray

    @property
    def count(self) -> int:
        return int(self.params.shape[1])

    def elements(self, images: Any) -> dict[str, Any]:
        """Stream rows: {INPUTS: images, VIEW_PARAMS: params, VIEW_LOGITS: logits}."""
        return {INPUTS: images, VIEW_PARAMS: self.params, VIEW_LOGITS: self.logits}

    def save(self, folder: Path, stem: str) -> None:
        """`stem`_params.npy and `stem`_logits.npy in `folder`, each written atomically."""
        for name, array in (("params", self.params), ("logits", self.logits)):
            write_atomic(folder / f"{stem}_{name}.npy", lambda f, a=array: np.save(f, a), "wb")

    @classmethod
    def load(cls, folder: Path, stem: str) -> TeacherViews | None:
        """The views saved in `folder` as `stem` (memory-mapped), or None."""
        paths = [folder / f"{stem}_{name}.npy" for name in ("params", "logits")]
        if not all(p.is_file() for p in paths):
            return None
        return cls(*(np.load(p, mmap_mode="r") for p in paths))


def label_views(
    ds: Dataset,
    teacher: Any,
    count: int,
    *,
    seed: int = 0,
    teacher_size: Sequence[int] | None = None,
    batch_size: int = 256,
    teacher_outputs: str = "auto",
) -> TeacherViews:
    """K = `count` augmented views of every training image of `ds`, labelled by `teacher` at
    its (H, W) `teacher_size` (default: the student's, `ds.input_shape`), in inference mode.
    The views are those `tfdistill run` trains on: random-resized crops of stored photos
    (`ds.image_size` set), else 4-pixel shifts and mirroring; `render` rebuilds them."""
    import tensorflow as tf

    if count < 1:
        raise ValueError(f"count (teacher views per image) must be >= 1, got {count}")
    boxes = ds.image_size is not None
    size = tuple(teacher_size or ds.input_shape[:2])
    scale = np.float32(getattr(ds.x_train, "scale", 1.0))
    logits_of = logits_function(teacher, teacher_outputs, None)
    params, logits = [], []
    for start in range(0, len(ds.x_train), batch_size):
        rows = np.arange(start, min(start + batch_size, len(ds.x_train)))
        images = _rows(ds.x_train, rows)
        batch_params, batch_logits = [], []
        for k in range(count):
            key = tf.constant([seed * LABEL_SEED + k, start], tf.int64)
            drawn = views.draw_params(tf.constant(len(rows)), key, boxes)
            seen = views.render(images, drawn, [size], boxes)[0] * scale
            batch_params.append(drawn.numpy())
            batch_logits.append(np.asarray(logits_of(seen), np.float16))
        params.append(np.stack(batch_params, axis=1))
        logits.append(np.stack(batch_logits, axis=1))
    return TeacherViews(np.concatenate(params), np.concatenate(logits))


def _rows(images: Any, rows: np.ndarray) -> Any:
    """Rows of an array, or uint8 rows of a store (as `render` takes them)."""
    return images.uint8(rows) if hasattr(images, "uint8") else np.asarray(images[rows], np.float32)


def render(images: Any, params: Any, sizes: Sequence[Sequence[int]], boxes: bool) -> list[Any]:
    """The stored views `params` (B, 4) of `images` (B, H, W, C) at each of `sizes`."""
    return views.render(images, params, [tuple(s) for s in sizes], boxes)


__all__ = ["TeacherViews", "label_views", "render"]
