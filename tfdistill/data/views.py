"""What a model sees of a stored image: the ImageNet recipe at any size, one crop for several.

Photos are stored once, at `stored_size` of the largest size a model takes: resized with the
aspect ratio kept until they cover it, then centre-cropped (`fit_and_crop`). From there:

- test view (`center_view`): the centre `CROP_FRACTION` (0.875) of the stored image resized to
  the model's size, the usual "resize to 256, centre-crop 224" of ImageNet evaluation;
- training view (`random_views`): a random-resized crop (area `CROP_SCALE` of the stored
  image, aspect ratio 3/4..4/3) mirrored left-right half the time, the same box resized to each
  size asked for, so teacher and student see the same crop, each at its own resolution, both
  taken from the stored pixels (the student's small image is never upsampled for the teacher).

Sizes are (H, W) pairs; `parse_size` reads "H" or "H,W". All ops take batches (B, H, W, C).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

CROP_FRACTION = 0.875
CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
SMALL_IMAGES = 64
DEFAULT_SIZE = (224, 224)
Size = tuple[int, int]


def parse_size(value: Any, what: str = "image_size") -> Size | None:
    """(H, W) from an int, "H", "H,W", or a pair of ints; None stays None. A ValueError names
    `what` and the accepted forms."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",")]
        value = [int(p) for p in parts] if all(p.isdigit() for p in parts) else value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) in (1, 2)
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
        and all(v >= 1 for v in value)
    ):
        return (int(value[0]), int(value[-1]))
    raise ValueError(
        f"{what} must be H or H,W with positive integers (e.g. 224 or 96,128), got {value!r}."
    )


def stored_size(sizes: Sequence[Size]) -> Size:
    """The (H, W) photos are stored at for models taking `sizes`: the largest, over
    `CROP_FRACTION`, so the test view of the largest is a centre crop without resizing up."""
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    return (math.ceil(h / CROP_FRACTION), math.ceil(w / CROP_FRACTION))


def fit_and_crop(image: tf.Tensor, size: Size) -> tf.Tensor:
    """One uint8 image (h, w, C) resized (area-averaging when it shrinks) with its aspect ratio
    kept until it covers `size`, then centre-cropped to it: uint8 (H, W, C)."""
    import tensorflow as tf

    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.maximum(size[0] / h, size[1] / w)
    new_h = tf.maximum(tf.cast(tf.math.ceil(h * scale - 1e-3), tf.int32), size[0])
    new_w = tf.maximum(tf.cast(tf.math.ceil(w * scale - 1e-3), tf.int32), size[1])
    resized = tf.image.resize(image, tf.stack([new_h, new_w]), antialias=True)
    top, left = (new_h - size[0]) // 2, (new_w - size[1]) // 2
    cropped = resized[top : top + size[0], left : left + size[1]]
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0.0, 255.0), tf.uint8)


def _crop(images: tf.Tensor, boxes: tf.Tensor, size: Size) -> tf.Tensor:
    import tensorflow as tf

    count = tf.shape(images)[0]
    return tf.image.crop_and_resize(
        tf.cast(images, tf.float32), boxes, tf.range(count), size, method="bilinear"
    )


def center_view(images: tf.Tensor, size: Size) -> tf.Tensor:
    """float32 (B, *size, C): the centre `CROP_FRACTION` of each stored image at `size`."""
    import tensorflow as tf

    margin = (1.0 - CROP_FRACTION) / 2.0
    box = tf.constant([[margin, margin, 1.0 - margin, 1.0 - margin]], tf.float32)
    return _crop(images, tf.tile(box, [tf.shape(images)[0], 1]), size)


def random_boxes(count: tf.Tensor, seed: tf.Tensor, flip: bool = True) -> tf.Tensor:
    """(count, 4) normalized boxes (y1, x1, y2, x2) of random-resized crops drawn from the
    stateless `seed` (2,); a mirrored crop has x1 > x2 (`tf.image.crop_and_resize` flips it)."""
    import tensorflow as tf

    draws = tf.random.stateless_uniform(tf.stack([count, 5]), seed=seed)
    area = CROP_SCALE[0] + draws[:, 0] * (CROP_SCALE[1] - CROP_SCALE[0])
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = tf.exp(log_lo + draws[:, 1] * (log_hi - log_lo))
    height = tf.minimum(tf.sqrt(area / ratio), 1.0)
    width = tf.minimum(tf.sqrt(area * ratio), 1.0)
    top = draws[:, 2] * (1.0 - height)
    left = draws[:, 3] * (1.0 - width)
    x1, x2 = left, left + width
    if flip:
        mirrored = draws[:, 4] < 0.5
        x1, x2 = tf.where(mirrored, x2, x1), tf.where(mirrored, x1, x2)
    return tf.stack([top, x1, top + height, x2], axis=1)


def random_views(images: tf.Tensor, sizes: Sequence[Size], seed: tf.Tensor) -> list[tf.Tensor]:
    """One random-resized, randomly mirrored crop per stored image (from the stateless
    `seed`), resized to each of `sizes`: float32 (B, *size, C) per size, same crops."""
    import tensorflow as tf

    boxes = random_boxes(tf.shape(images)[0], seed)
    return [_crop(images, boxes, size) for size in sizes]


PARAMS = 4
SHIFT_PAD = 4


def draw_params(count: tf.Tensor, seed: tf.Tensor, boxes: bool) -> tf.Tensor:
    """float32 (count, `PARAMS`) parameters of random training views from the stateless
    `seed` (2,): crop boxes (y1, x1, y2, x2; `random_boxes`) for stored photos (`boxes`), else
    4-pixel shifts and mirror flags (dy, dx, flip, 0; `augment.shift_params`) for images held
    at the model's size. The same seed always draws the same views."""
    import tensorflow as tf

    from tfdistill.data.augment import shift_params

    if boxes:
        return random_boxes(count, seed)
    draws = tf.random.stateless_uniform(tf.stack([count, 3]), seed=seed)
    shifts = shift_params(draws, SHIFT_PAD)
    return tf.concat([shifts, tf.zeros_like(shifts[:, :1])], axis=1)


def render(
    images: tf.Tensor, params: tf.Tensor, sizes: Sequence[Size], boxes: bool
) -> list[tf.Tensor]:
    """The views `params` (B, `PARAMS`) (see `draw_params`) of float `images` (B, H, W, C),
    float32 (B, *size, C) at each of `sizes`: one crop, resized to each size."""
    import tensorflow as tf

    from tfdistill.data.augment import shift_crop

    if boxes:
        return [_crop(images, params, size) for size in sizes]
    shifted = shift_crop(tf.cast(images, tf.float32), params[:, :3], SHIFT_PAD)
    own = tuple(shifted.shape[1:3])
    return [shifted if tuple(size) == own else tf.image.resize(shifted, size) for size in sizes]


class ModelInputs:
    """A read-only sequence of `images` as a model of input `size` takes them: `len`, `shape`
    and slices `inputs[a:b]` (float32 (k, *size, C)), read a slice at a time; what evaluation,
    `evaluate_tflite` and calibration read. From an `ImageStore`: its test views (values × its
    `scale`); from an array: its images resized (bilinear) to `size`."""

    def __init__(self, images: Any, size: Size) -> None:
        self.images, self.size = images, (int(size[0]), int(size[1]))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.images), *self.size, self.images.shape[-1])

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[key : key + 1 or None][0]
        if not hasattr(self.images, "uint8"):
            import tensorflow as tf

            batch = np.asarray(self.images[key], np.float32)
            return tf.image.resize(batch, self.size).numpy() if len(batch) else batch
        images = self.images.uint8(key)
        if not len(images):
            return np.zeros((0, *self.shape[1:]), np.float32)
        return center_view(images, self.size).numpy() * np.float32(self.images.scale)

    def batches(self, batch_size: int) -> Any:
        """Batches (k, *size, C) in order, for `to_tflite`'s `representative_data`."""
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]


__all__ = [
    "CROP_FRACTION",
    "CROP_SCALE",
    "DEFAULT_SIZE",
    "SMALL_IMAGES",
    "ModelInputs",
    "PARAMS",
    "center_view",
    "draw_params",
    "render",
    "fit_and_crop",
    "parse_size",
    "random_boxes",
    "random_views",
    "stored_size",
]
