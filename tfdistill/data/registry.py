"""The dataset names: ``load``, ``check_name``, ``available`` and the table of loaders behind
them (built-in, CIFAR, ``folder:PATH``, ``tfds:NAME``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfdistill.data.builtin import load_digits, load_keras_dataset
from tfdistill.data.cifar import load_cifar10, load_cifar100
from tfdistill.data.dataset import Dataset
from tfdistill.data.folder import load_folder
from tfdistill.data.tfds import load_tfds

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": lambda data_dir=None: load_keras_dataset("mnist", data_dir),
    "fashion_mnist": lambda data_dir=None: load_keras_dataset("fashion_mnist", data_dir),
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}
PREFIXES = ("folder:", "tfds:")


def available() -> list[str]:
    """Names accepted by :func:`load`, besides ``folder:PATH`` and ``tfds:NAME``."""
    return list(_LOADERS)


def check_name(name: str) -> str:
    """``name`` if :func:`load` accepts it, else a ValueError naming the choices."""
    if name in _LOADERS or (name.startswith(PREFIXES) and name.split(":", 1)[1]):
        return name
    raise ValueError(
        f"unknown dataset {name!r}; available: {', '.join(available())}, folder:PATH "
        "(one subfolder of images per class) or tfds:NAME"
    )


def load(name: str, *, data_dir: str | None = None, **kwargs: Any) -> Dataset:
    """Load dataset ``name``: one of :func:`available`, ``folder:PATH`` (see
    :mod:`tfdistill.data.folder`) or ``tfds:NAME`` (with tensorflow-datasets installed).

    ``"cifar10"`` and ``"cifar100"`` read the python-pickle release (the extracted folder or the
    ``.tar.gz``) from ``data_dir`` if given, which must hold it; otherwise from
    ``$TFDISTILL_DATA_DIR``, ``~/.keras/datasets`` or the ``keras.datasets`` cache, and when none
    has it they download it through ``keras.datasets.<name>.load_data()`` into that cache.
    ``"mnist"`` and ``"fashion_mnist"`` come through ``keras.datasets``. A failed download
    raises FileNotFoundError naming the places tried and suggesting ``folder:PATH``.
    Extra keyword arguments go to the loader: ``size``, ``test_fraction`` and ``seed`` for
    ``"digits"`` and ``folder:PATH``; ``label_mode`` ("fine" or "coarse") for ``"cifar100"``.
    """
    check_name(name)
    if name.startswith("folder:"):
        return load_folder(name.split(":", 1)[1], **kwargs)
    if name.startswith("tfds:"):
        return load_tfds(name.split(":", 1)[1], data_dir)
    return _LOADERS[name](data_dir, **kwargs)
