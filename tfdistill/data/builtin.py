"""The built-in loaders: ``"digits"`` (scikit-learn's 8×8 digits, resized) and ``"mnist"`` /
``"fashion_mnist"`` through ``keras.datasets``. Images float32 (N, H, W, 1) in [0, 1]."""

from __future__ import annotations

import numpy as np

from tfdistill.data.augment import resize_bilinear
from tfdistill.data.dataset import DIGITS_MAX, EIGHT_BIT, Dataset


def load_digits(
    data_dir: str | None = None, *, size: int = 32, test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    del data_dir
    digits = load_digits()
    images = resize_bilinear(digits.images / DIGITS_MAX, size)[..., np.newaxis]
    images = np.clip(images, 0.0, 1.0)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        pixel_max=DIGITS_MAX,
    )


_KERAS_DATASETS = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}


def load_keras_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """MNIST or Fashion-MNIST through ``keras.datasets`` (its cache in ~/.keras/datasets, or a
    download): uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    import keras

    del data_dir
    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as error:
        raise FileNotFoundError(
            f"keras.datasets could not load {name} ({type(error).__name__}: {error}). It "
            "downloads on first use; offline, put the file keras.datasets expects in "
            f"~/.keras/datasets, or use --dataset folder:PATH with one subfolder per class."
        ) from None

    def images(x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) / np.float32(EIGHT_BIT))[..., np.newaxis]

    class_names = _KERAS_DATASETS[name]
    return Dataset(
        name=name,
        x_train=images(x_train),
        y_train=np.asarray(y_train, np.int64).reshape(-1),
        x_test=images(x_test),
        y_test=np.asarray(y_test, np.int64).reshape(-1),
        num_classes=len(class_names),
        class_names=class_names,
        pixel_max=EIGHT_BIT,
    )
