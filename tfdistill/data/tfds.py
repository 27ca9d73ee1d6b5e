"""``tfds:NAME``: a TensorFlow Datasets image classification set (needs tensorflow-datasets),
streamed: each split is decoded once into an on-disk `ImageStore` in the cache folder (see
`folder.cache_root`), keyed by the set's name, version, split and stored size, at its own size
when every image has one of at most 64 pixels a side and `image_size` is not given, else at
`views.stored_size` of `image_size` (default 224) and `view_sizes` (see `tfdistill.data.folder`
for the same rule)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfdistill.data import store as store_lib
from tfdistill.data import views
from tfdistill.data.dataset import EIGHT_BIT, Dataset
from tfdistill.data.folder import STORE_VERSION, cache_root, store_shape
from tfdistill.errors import brief


def _builder(name: str, data_dir: str | None):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(
            f"tfds:{name} needs tensorflow-datasets: pip install tensorflow-datasets."
        ) from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
    except Exception as error:
        raise FileNotFoundError(
            f"tfds:{name} could not be loaded ({brief(error)}). Check the name against "
            "tensorflow_datasets.list_builders(); offline, prepare it once where it is online "
            "and pass its data_dir, or use --dataset folder:PATH with one subfolder of images "
            "per class."
        ) from None
    return builder


def _build(folder: Path, pipeline, shape: tuple[int, int, int], resize: bool) -> None:
    """Writes a split's images (uint8 `shape`) and `labels.npy` to the store in `folder`."""
    import tensorflow as tf

    labels: list[int] = []

    def convert(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if image.shape[-1] != shape[-1]:
            image = (
                tf.image.grayscale_to_rgb(image)
                if shape[-1] == 3
                else tf.image.rgb_to_grayscale(image)
            )
        return (views.fit_and_crop(image, shape[:2]) if resize else image), label

    def images():
        for image, label in pipeline.map(convert, num_parallel_calls=tf.data.AUTOTUNE).prefetch(8):
            labels.append(int(label))
            yield image.numpy()

    store_lib.write(folder, images(), shape)
    np.save(folder / "labels.npy", np.asarray(labels, np.int64))


def load_tfds(
    name: str,
    data_dir: str | None = None,
    *,
    image_size: int | str | tuple[int, int] | None = None,
    view_sizes: Sequence[tuple[int, int]] = (),
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """A TensorFlow Datasets image classification set with train and test (or validation)
    splits, as stores (see the module docstring)."""
    builder = _builder(name, data_dir)
    splits = builder.info.splits
    test_split = "test" if "test" in splits else "validation"
    own = tuple(builder.info.features["image"].shape)
    channels = own[-1] or 3
    sizes = [views.parse_size(s, "view_sizes") for s in view_sizes]
    known = None if None in own[:2] else tuple(own[:2])
    what = f"tfds:{name}'s images are " + (f"{known[0]}x{known[1]}" if known else "of any size")
    shape, model_size = store_shape(known, channels, views.parse_size(image_size), sizes, what)
    stores, labels = [], []
    for split in ("train", test_split):
        key = json.dumps([STORE_VERSION, name, str(builder.info.version), split, list(shape)])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        pipeline = builder.as_dataset(split=split, as_supervised=True)
        store = store_lib.cached(
            cache_root(cache_dir) / "images" / digest,
            lambda f, p=pipeline: _build(f, p, shape, model_size is not None),
        )
        stores.append(store)
        labels.append(np.load(store.folder / "labels.npy"))
    feature = builder.info.features["label"]
    return Dataset(
        name=f"tfds:{name}",
        x_train=stores[0],
        y_train=labels[0],
        x_test=stores[1],
        y_test=labels[1],
        num_classes=feature.num_classes,
        class_names=tuple(feature.names),
        pixel_max=EIGHT_BIT,
        image_size=model_size,
        files_digest=store_lib.stores_digest(*stores),
    )
