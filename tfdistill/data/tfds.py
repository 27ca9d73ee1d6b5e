"""``tfds:NAME``: a TensorFlow Datasets image classification set (needs tensorflow-datasets),
images float32 (N, H, W, C) in [0, 1]."""

from __future__ import annotations

import numpy as np

from tfdistill.data.dataset import EIGHT_BIT, Dataset
from tfdistill.errors import brief


def load_tfds(name: str, data_dir: str | None = None) -> Dataset:
    """A TensorFlow Datasets image classification set with train and test splits."""
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
    splits = builder.info.splits
    test_split = "test" if "test" in splits else "validation"
    arrays = tfds.as_numpy(
        builder.as_dataset(split=["train", test_split], as_supervised=True, batch_size=-1)
    )
    (x_train, y_train), (x_test, y_test) = arrays
    labels = builder.info.features["label"]
    return Dataset(
        name=f"tfds:{name}",
        x_train=np.asarray(x_train, np.float32) / np.float32(EIGHT_BIT),
        y_train=np.asarray(y_train, np.int64),
        x_test=np.asarray(x_test, np.float32) / np.float32(EIGHT_BIT),
        y_test=np.asarray(y_test, np.int64),
        num_classes=labels.num_classes,
        class_names=tuple(labels.names),
        pixel_max=EIGHT_BIT,
    )
