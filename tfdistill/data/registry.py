"""The dataset names: ``load``, ``check_name``, ``available`` and the table of loaders behind
them (built-in, CIFAR, ``folder:PATH``, ``tfds:NAME``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from tfdistill.data import views
from tfdistill.data.builtin import load_digits, load_keras_dataset
from tfdistill.data.cifar import load_cifar10, load_cifar100
from tfdistill.data.dataset import Dataset
from tfdistill.data.folder import load_folder
from tfdistill.data.resized import in_store
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


def load(
    name: str,
    *,
    data_dir: str | None = None,
    image_size: int | str | tuple[int, int] | None = None,
    view_sizes: Sequence[tuple[int, int]] = (),
    cache_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load dataset ``name``: one of :func:`available`, ``folder:PATH`` (see
    :mod:`tfdistill.data.folder`) or ``tfds:NAME`` (with tensorflow-datasets installed).

    ``"cifar10"`` and ``"cifar100"`` read the python-pickle release (the extracted folder or the
    ``.tar.gz``) from ``data_dir`` if given, which must hold it; otherwise from
    ``$TFDISTILL_DATA_DIR``, ``~/.keras/datasets`` or the ``keras.datasets`` cache, and when none
    has it they download it through ``keras.datasets.<name>.load_data()`` into that cache.
    ``"mnist"`` and ``"fashion_mnist"`` come through ``keras.datasets``. A failed download
    raises FileNotFoundError naming the places tried and suggesting ``folder:PATH``.
    ``image_size`` ((H, W), H or "H,W"): the size models take. ``folder:`` and ``tfds:`` sets
    are decoded once into on-disk stores (``cache_dir``) and streamed; their photos are stored
    at ``views.stored_size`` of ``image_size`` and ``view_sizes`` (the sizes other models, a
    teacher, take) and seen through `views` (default 224, or their own size when all share one
    of at most 64 px). The in-memory sets keep their own size unless ``image_size`` differs
    (then they are stored like photos, `in_store`); ``"digits"`` is drawn at ``image_size``.
    Extra keyword arguments go to the loader: ``size``, ``test_fraction`` and ``seed`` for
    ``"digits"`` and ``folder:PATH``; ``label_mode`` ("fine" or "coarse") for ``"cifar100"``.
    """
    check_name(name)
    sized = {"image_size": image_size, "view_sizes": view_sizes, "cache_dir": cache_dir}
    if name.startswith("folder:"):
        return load_folder(name.split(":", 1)[1], **sized, **kwargs)
    if name.startswith("tfds:"):
        return load_tfds(name.split(":", 1)[1], data_dir, **sized)
    size = views.parse_size(image_size)
    if name == "digits" and size is not None:
        if size[0] != size[1]:
            raise ValueError(f"digits are drawn square; image_size {size[0]},{size[1]} is not.")
        kwargs["size"] = size[0]
    ds = _LOADERS[name](data_dir, **kwargs)
    if size is None or size == ds.input_shape[:2]:
        return ds
    return in_store(ds, size, [views.parse_size(s, "view_sizes") for s in view_sizes], cache_dir)
