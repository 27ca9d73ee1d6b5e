"""`in_store`: an in-memory `Dataset` (digits, MNIST, CIFAR) at another image size, as stores:
what `load(..., image_size=)` gives for them when the size differs from their own."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfdistill.data import store as store_lib
from tfdistill.data import views
from tfdistill.data.dataset import Dataset
from tfdistill.data.folder import STORE_VERSION, cache_root


def _digest(x: np.ndarray, shape: tuple[int, int, int]) -> str:
    digest = hashlib.sha256(str((STORE_VERSION, x.shape, shape)).encode())
    digest.update(memoryview(np.ascontiguousarray(x)).cast("B"))
    return digest.hexdigest()[:20]


def _build(folder: Path, raw: np.ndarray, shape: tuple[int, int, int]) -> None:
    import tensorflow as tf

    pipeline = tf.data.Dataset.from_tensor_slices(raw).map(
        lambda image: views.fit_and_crop(image, shape[:2]), num_parallel_calls=tf.data.AUTOTUNE
    )
    store_lib.write(folder, (image.numpy() for image in pipeline.prefetch(8)), shape)


def in_store(
    ds: Dataset,
    image_size: views.Size,
    view_sizes: Sequence[views.Size] = (),
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """`ds` (arrays in [0, 1], `pixel_max` ≤ 255) with both splits stored at
    `views.stored_size` of `image_size` and `view_sizes`, models seeing views at `image_size`."""
    if ds.pixel_max > 255:
        raise ValueError(f"in_store keeps 8-bit pixels; {ds.name} has pixel_max {ds.pixel_max:g}")
    shape = (*views.stored_size([image_size, *view_sizes]), ds.input_shape[-1])
    stores = []
    for x in (ds.x_train, ds.x_test):
        raw = np.rint(np.asarray(x) * ds.pixel_max).astype(np.uint8)
        key = _digest(raw, shape)
        folder = cache_root(cache_dir) / "images" / key
        store = store_lib.cached(folder, lambda f, r=raw: _build(f, r, shape))
        stores.append(store.scaled(1.0 / ds.pixel_max))
    return dataclasses.replace(
        ds,
        x_train=stores[0],
        x_test=stores[1],
        image_size=image_size,
        files_digest=store_lib.stores_digest(*stores),
    )
