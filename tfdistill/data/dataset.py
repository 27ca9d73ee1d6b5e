"""`Dataset`: an image classification dataset, what every loader of `tfdistill.data` returns,
and its constants. A module of its own so that the loaders import it without importing each
other."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from tfdistill.data.store import ImageStore
from tfdistill.data.views import ModelInputs, Size, center_view

if TYPE_CHECKING:
    import tensorflow as tf

SPLITS = ("train", "test")
EIGHT_BIT = 255.0
DIGITS_MAX = 16.0


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An image classification dataset, in memory or streamed from disk.

    ``x_train``/``x_test``: float32, shape (N, H, W, C), values in [0, 1]: NumPy arrays (small
    sets: digits, MNIST, CIFAR) or `ImageStore`s, uint8 files on disk that read like such
    arrays a slice at a time (``folder:``, ``tfds:``). ``image_size``: None when the images are
    what the models take; (H, W) when the stores hold photos at a larger `views.stored_size`
    and models see views of them (`inputs`, `views.random_views`). ``files_digest``: a digest
    of the source files (names, sizes, times) and the stored size, when there are files.
    ``y_train``/``y_test``: int64, shape (N,), values in [0, num_classes); -1 marks an
    unlabeled example (see :func:`mask_labels`). ``skipped``: image files that did not decode
    (``folder:PATH``); ``skipped_reasons``: their count by reason (`decode.REASONS`: empty,
    not_an_image, truncated, too_large), reasons with none left out. ``pixel_max``: the raw
    pixel value that 1.0 stands for (> 0; 255 for 8-bit images, 16 for ``"digits"``), see
    :meth:`raw_pixels`.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    skipped: int = 0
    skipped_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    pixel_max: float = 1.0
    image_size: Size | None = None
    files_digest: str | None = None

    def __post_init__(self) -> None:
        value = self.pixel_max
        real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        if not (real and np.isfinite(value) and value > 0):
            raise ValueError(f"pixel_max must be a finite number > 0, got {value!r}")
        for split in SPLITS:
            x, y = self._arrays(split)
            if x.ndim != 4:
                raise ValueError(f"x_{split} must have shape (N, H, W, C), got {x.shape}")
            if y.shape != (x.shape[0],):
                raise ValueError(f"y_{split} must have shape ({x.shape[0]},), got {y.shape}")
        if self.image_size is not None and not isinstance(self.x_train, ImageStore):
            raise ValueError("image_size goes with images in an ImageStore (see views)")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train and test images differ in shape: {self.x_train.shape[1:]} "
                f"vs {self.x_test.shape[1:]}"
            )
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for {self.num_classes} classes"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one image as the student takes it, (H, W, C)."""
        h, w, c = self.x_train.shape[1:]
        if self.image_size is not None:
            h, w = self.image_size
        return (int(h), int(w), int(c))

    @property
    def streamed(self) -> bool:
        """Whether the images are read from disk (`ImageStore`) rather than held in memory."""
        return isinstance(self.x_train, ImageStore)

    def inputs(self, split: str, size: Size | None = None) -> np.ndarray | ModelInputs:
        """The images of `split` as a model of input (H, W) = `size` (default `input_shape`)
        takes them: float32 (N, H, W, C), an array in memory or `ModelInputs` (test views of a
        store, read a slice at a time). In-memory images of another size are resized."""
        x, _ = self._arrays(split)
        size = tuple(size or self.input_shape[:2])
        if isinstance(x, ImageStore):
            if self.image_size is None and size == tuple(x.image_shape[:2]):
                return x
            return ModelInputs(x, size)
        return x if size == tuple(x.shape[1:3]) else ModelInputs(x, size)

    def raw_pixels(self) -> Dataset:
        """A copy with images as the source stored them: float32 (N, H, W, C) in [0, pixel_max].

        For 8-bit sources (``pixel_max`` 255) the values are rounded to whole numbers, so they
        are exactly the uint8 values a camera or an image file gives (resized images: rounded
        to the nearest such value). ``pixel_max`` and everything else are kept; the result is
        on the raw scale, so call this once.
        """

        def raw(x: np.ndarray | ImageStore) -> np.ndarray | ImageStore:
            if isinstance(x, ImageStore):
                return x.scaled(x.scale * self.pixel_max)
            scaled = np.asarray(x, np.float32) * np.float32(self.pixel_max)
            return np.rint(scaled) if self.pixel_max == EIGHT_BIT else scaled

        return dataclasses.replace(self, x_train=raw(self.x_train), x_test=raw(self.x_test))

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            return self.x_train, self.y_train
        if split == "test":
            return self.x_test, self.y_test
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLITS)}")

    def as_tf_dataset(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Batches ``(x, y)`` of one split: x float32 (B, H, W, C), y int64 (B,), prefetched.

        With ``shuffle`` the order is reshuffled every epoch; ``seed`` makes it reproducible.
        Images in a store are read a batch at a time and given as `inputs` gives them.
        """
        x, y = self._arrays(split)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        import tensorflow as tf

        if not isinstance(x, ImageStore):
            ds = tf.data.Dataset.from_tensor_slices((x, y))
        else:
            ds = tf.data.Dataset.range(len(x))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if isinstance(x, ImageStore):
            ds = ds.map(
                lambda rows: self._read_batch(x, y, rows), num_parallel_calls=tf.data.AUTOTUNE
            )
        return ds.prefetch(tf.data.AUTOTUNE)

    def _read_batch(self, x: ImageStore, y: np.ndarray, rows: tf.Tensor) -> tuple:
        """(x float32 (B, H, W, C) as `inputs` gives them, y int64 (B,)) of store rows (B,)."""
        import tensorflow as tf

        images = x.gather(rows)
        if self.image_size is not None:
            images = center_view(images, self.image_size)
        return tf.cast(images, tf.float32) * x.scale, tf.gather(tf.constant(y), rows)
