"""Dataset loading: the first stage of the pipeline (data -> models -> distiller).

Every loader returns a :class:`Dataset` holding images as float32 arrays of shape (N, H, W, C)
with values in [0, 1] and integer labels of shape (N,) and dtype int64; ``Dataset.pixel_max`` is
the raw pixel value that 1.0 stands for (16 for ``"digits"``, 255 for the 8-bit sources), and
:meth:`Dataset.raw_pixels` gives the images back on that scale, for models that preprocess
their own input (:func:`tfdistill.models.with_preprocessing`). ``"digits"`` ships with
scikit-learn; ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` and ``"cifar100"`` come through
``keras.datasets`` (downloaded once into its cache, ``~/.keras/datasets`` or
``$KERAS_HOME/datasets``); the CIFAR loaders read the python-pickle release (the folder or the
``.tar.gz``) from ``data_dir``, ``$TFDISTILL_DATA_DIR``, ``~/.keras/datasets`` or that cache, and
only download when none of them has it and no ``data_dir`` is given. ``folder:PATH`` reads an
image folder and ``tfds:NAME`` TensorFlow Datasets.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfdistill import image_folder
from tfdistill.batches import INPUTS, TEACHER_LOGITS
from tfdistill.dataset import DIGITS_MAX, EIGHT_BIT, Dataset
from tfdistill.errors import brief

if TYPE_CHECKING:
    import tensorflow as tf

DATA_DIR_ENV = "TFDISTILL_DATA_DIR"


def shuffled_batches(
    elements: Any,
    batch_size: int,
    *,
    seed: int,
    skip: int = 0,
    augment: Callable[[Any, tf.Tensor], Any] | None = None,
) -> tf.data.Dataset:
    """An endless stream of batches of ``elements``, a structure (tuple, dict) of arrays that
    share their first dimension N. Pass p over the rows is the permutation drawn from
    ``(seed, p)``; batch i of a pass (ceil(N / batch_size) batches, the last one short) goes
    through ``augment(batch, stateless seed (2,) made of (seed, p, i))`` when given. Batch k of
    the stream is thus the same in every process, on every worker and after any restart: the
    stream that starts at batch ``skip`` continues exactly where an interrupted one stopped.
    Feed it to ``fit`` with ``steps_per_epoch``.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    tensors = tf.nest.map_structure(tf.convert_to_tensor, elements)
    rows = int(tf.nest.flatten(tensors)[0].shape[0])
    if rows == 0:
        raise ValueError("shuffled_batches got no rows.")
    per_pass = -(-rows // batch_size)

    def one_pass(p: tf.Tensor) -> tf.data.Dataset:
        pass_seed = tf.stack([tf.constant(seed, tf.int64), p])
        order = tf.random.experimental.stateless_shuffle(tf.range(rows), seed=pass_seed)

        def take(i: tf.Tensor, indices: tf.Tensor) -> Any:
            batch = tf.nest.map_structure(lambda t: tf.gather(t, indices), tensors)
            if augment is None:
                return batch
            return augment(batch, tf.random.experimental.stateless_fold_in(pass_seed, i))

        indices = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()
        return indices.map(take, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    first_pass, within = divmod(skip, per_pass)
    stream = tf.data.Dataset.range(first_pass, 2**62).flat_map(one_pass).skip(within)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return stream.with_options(options).prefetch(tf.data.AUTOTUNE)


def label_subset(y: np.ndarray, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of a class-balanced random subset of ``y`` (shape (N,)).

    Draws ``per_class`` indices of every class present in ``y``; negative (unlabeled) entries
    are never drawn. The same ``y``, ``per_class`` and ``seed`` give the same indices.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must have shape (N,), got {y.shape}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    classes, counts = np.unique(y[y >= 0], return_counts=True)
    short = {int(c): int(n) for c, n in zip(classes, counts, strict=True) if n < per_class}
    if short:
        listed = ", ".join(f"class {c} has {n}" for c, n in short.items())
        raise ValueError(f"per_class={per_class} exceeds the examples available: {listed}")
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def mask_labels(y: np.ndarray, keep_indices: np.ndarray | Sequence[int]) -> np.ndarray:
    """A copy of ``y`` (int64, shape (N,)) with -1 everywhere except at ``keep_indices``."""
    y = np.asarray(y)
    masked = np.full(y.shape, -1, dtype=np.int64)
    keep = np.asarray(keep_indices, dtype=np.int64)
    masked[keep] = y[keep]
    return masked


def random_crop_flip(images: Any, pad: int = 4, flip: bool = True, seed: Any = None) -> tf.Tensor:
    """Random translation and mirroring of a batch, for ``tf.data.Dataset.map`` or eager use.

    ``images``: float (B, H, W, C). Each image is zero-padded by ``pad`` pixels on every side,
    cropped back to H×W at a random offset, and (with ``flip``) mirrored left-right with
    probability 0.5; the result has the shape and dtype of ``images``. ``seed``: an int is the
    op seed of the random draws (``tf.random.uniform``); a pair, such as a (2,) int tensor, a
    stateless seed (``tf.random.stateless_uniform``): the same pair always draws the same.
    """
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0, got {pad!r}")
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    if seed is None or isinstance(seed, int | np.integer):
        draws = tf.random.uniform([batch, 3], seed=seed)
    else:
        draws = tf.random.stateless_uniform([batch, 3], seed=seed)
    offsets = tf.minimum(tf.cast(draws[:, :2] * (2 * pad + 1), tf.int32), 2 * pad)
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis]
    cols = tf.range(width)[tf.newaxis]
    if flip:
        cols = tf.where(draws[:, 2:] < 0.5, width - 1 - cols, cols)
    cols = offsets[:, 1:] + cols
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 weights of 1-D bilinear resizing with half-pixel centers."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), lo), 1 - frac)
    np.add.at(weights, (np.arange(n_out), hi), frac)
    return weights


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize (N, H, W) images to float32 (N, size, size), like ``tf.image.resize``."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rows = _bilinear_matrix(images.shape[1], size)
    cols = _bilinear_matrix(images.shape[2], size)
    return np.einsum("ih,nhw,jw->nij", rows, images, cols).astype(np.float32)


def _load_digits(
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


@dataclasses.dataclass(frozen=True)
class _CifarRelease:
    name: str
    folder: str
    tarball: str
    files: tuple[str, ...]
    keras_cache: str


_CIFAR10 = _CifarRelease(
    name="cifar10",
    folder="cifar-10-batches-py",
    tarball="cifar-10-python.tar.gz",
    files=(*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
    keras_cache="cifar-10-batches-py-target",
)
_CIFAR100 = _CifarRelease(
    name="cifar100",
    folder="cifar-100-python",
    tarball="cifar-100-python.tar.gz",
    files=("train", "test", "meta"),
    keras_cache="cifar-100-python-target",
)


def _keras_datasets_dir() -> Path:
    """Where ``keras.utils.get_file`` puts ``keras.datasets`` downloads, resolved as Keras
    does: ``$KERAS_HOME`` or else ``~/.keras``, replaced by ``/tmp/.keras`` when not writable,
    then ``datasets/``. Keras reads ``KERAS_HOME`` once, when it is imported."""
    tmp = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        user = os.path.expanduser("~")
        home = os.path.join(user, ".keras") if os.access(user, os.W_OK) else tmp
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):
        home = tmp
    return Path(home) / "datasets"


def _search_roots(data_dir: str | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    roots = []
    if os.environ.get(DATA_DIR_ENV):
        roots.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    roots.append(Path("~/.keras/datasets").expanduser())
    keras_dir = _keras_datasets_dir()
    if keras_dir not in roots:
        roots.append(keras_dir)
    return roots


def _is_complete(folder: Path, release: _CifarRelease) -> bool:
    return all((folder / f).is_file() for f in release.files)


def _extract(tarball: Path, release: _CifarRelease, into: Path) -> Path:
    """Extract ``tarball`` into a temporary folder under ``into``, then rename it into place."""
    target = into / release.folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{release.folder}.partial-", dir=into))
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - Python without tarfile extraction filters
                for member in tar.getmembers():
                    if member.name.startswith(("/", "..")) or "/../" in member.name:
                        raise ValueError(f"unsafe path {member.name!r} in {tarball}")
                tar.extractall(tmp)
        extracted = tmp / release.folder
        if not _is_complete(extracted, release):
            raise ValueError(
                f"{tarball} does not contain {release.folder}/ with {', '.join(release.files)}"
            )
        try:
            extracted.rename(target)
        except OSError:
            if not _is_complete(target, release):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _find_on_disk(release: _CifarRelease, data_dir: str | None, tried: list[Path]) -> Path | None:
    """The folder holding ``release.files`` under one of the search roots, extracting the
    tarball when only it is found; every place looked at is appended to ``tried``."""
    for root in _search_roots(data_dir):
        for folder in (root / release.folder, root, root / release.keras_cache / release.folder):
            tried.append(folder)
            if _is_complete(folder, release):
                return folder
        tarball = root / release.tarball
        tried.append(tarball)
        if tarball.is_file():
            return _extract(tarball, release, root)
    return None


def _find_release(release: _CifarRelease, data_dir: str | None) -> Path:
    """The folder holding ``release.files``: found on disk, or (without ``data_dir``)
    downloaded by ``keras.datasets.<name>.load_data()`` into its cache and found there."""
    tried: list[Path] = []
    found = _find_on_disk(release, data_dir, tried)
    if found is not None:
        return found
    what = (
        f"either {release.tarball} or the extracted folder {release.folder}/ "
        f"(containing {', '.join(release.files)})"
    )
    places = "".join(f"  {p}\n" for p in tried)
    if data_dir is not None:
        raise FileNotFoundError(
            f"{release.folder} not found; tried:\n{places}Put {what} in {data_dir}, or leave "
            f"data_dir unset to look in ${DATA_DIR_ENV} and ~/.keras/datasets and to download "
            "it through keras.datasets. Nothing is downloaded when data_dir is given."
        )
    loader = f"keras.datasets.{release.name}.load_data()"
    try:
        import keras

        getattr(keras.datasets, release.name).load_data()
    except Exception as error:
        raise FileNotFoundError(
            f"{release.name}: {release.folder} not found on disk and {loader} could not "
            f"download it ({brief(error)}). Tried:\n{places}Offline, put {what} in "
            f"{_keras_datasets_dir()} (or in a folder passed as data_dir= / --data_dir, or "
            f"named by ${DATA_DIR_ENV}), or use --dataset folder:PATH with one subfolder of "
            "images per class."
        ) from None
    tried = []
    found = _find_on_disk(release, None, tried)
    if found is None:
        raise FileNotFoundError(
            f"{loader} finished, but {release.folder} is not in any of:\n"
            + "".join(f"  {p}\n" for p in tried)
            + "Was KERAS_HOME changed after keras was imported?"
        )
    return found


def _unpickle(path: Path) -> dict[bytes, Any]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) uint8 channel-major rows -> float32 (N, 32, 32, 3) in [0, 1]."""
    rows = np.asarray(rows, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return rows.astype(np.float32) / np.float32(EIGHT_BIT)


def _names(meta: dict[bytes, Any], key: bytes) -> tuple[str, ...]:
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[key])


def _load_cifar10(data_dir: str | None = None) -> Dataset:
    folder = _find_release(_CIFAR10, data_dir)
    train = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(folder / "test_batch")
    class_names = _names(_unpickle(folder / "batches.meta"), b"label_names")
    return Dataset(
        name="cifar10",
        x_train=_images(np.concatenate([b[b"data"] for b in train])),
        y_train=np.concatenate([b[b"labels"] for b in train]).astype(np.int64),
        x_test=_images(test[b"data"]),
        y_test=np.asarray(test[b"labels"], dtype=np.int64),
        num_classes=len(class_names),
        class_names=class_names,
        pixel_max=EIGHT_BIT,
    )


def _load_cifar100(data_dir: str | None = None, *, label_mode: str = "fine") -> Dataset:
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    folder = _find_release(_CIFAR100, data_dir)
    train = _unpickle(folder / "train")
    test = _unpickle(folder / "test")
    labels_key = f"{label_mode}_labels".encode()
    class_names = _names(_unpickle(folder / "meta"), f"{label_mode}_label_names".encode())
    return Dataset(
        name="cifar100",
        x_train=_images(train[b"data"]),
        y_train=np.asarray(train[labels_key], dtype=np.int64),
        x_test=_images(test[b"data"]),
        y_test=np.asarray(test[labels_key], dtype=np.int64),
        num_classes=len(class_names),
        class_names=class_names,
        pixel_max=EIGHT_BIT,
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


def _load_keras_dataset(name: str, data_dir: str | None = None) -> Dataset:
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


def _load_tfds(name: str, data_dir: str | None = None) -> Dataset:
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


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _load_digits,
    "mnist": lambda data_dir=None: _load_keras_dataset("mnist", data_dir),
    "fashion_mnist": lambda data_dir=None: _load_keras_dataset("fashion_mnist", data_dir),
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
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
    :mod:`tfdistill.image_folder`) or ``tfds:NAME`` (with tensorflow-datasets installed).

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
        return image_folder.load_folder(name.split(":", 1)[1], **kwargs)
    if name.startswith("tfds:"):
        return _load_tfds(name.split(":", 1)[1], data_dir)
    return _LOADERS[name](data_dir, **kwargs)


def _logits_function(teacher: Any, teacher_outputs: str) -> Callable[[Any], tf.Tensor]:
    """x (B, ...) -> the frozen teacher's (B, C) float32 logits, BatchNorm folded."""
    import tensorflow as tf

    from tfdistill import outputs
    from tfdistill.folding import folded_forward

    kind = outputs.resolve_output_kind(teacher, teacher_outputs, "teacher_outputs")
    forward = folded_forward(teacher)

    @tf.function(reduce_retracing=True)
    def logits_of(x: tf.Tensor) -> tf.Tensor:
        return outputs.as_logits(forward(x), kind)

    return logits_of


def teacher_logits(
    images: np.ndarray, teacher: Any, *, teacher_outputs: str = "auto", batch_size: int = 256
) -> np.ndarray:
    """The frozen teacher's float32 logits (N, C) of ``images`` (N, ...), in inference mode."""
    if len(images) == 0:
        raise ValueError("teacher_logits got no images.")
    logits_of = _logits_function(teacher, teacher_outputs)
    parts = [
        np.asarray(logits_of(images[start : start + batch_size]))
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts)


def cache_teacher_outputs(
    data: tf.data.Dataset | tuple[np.ndarray, ...],
    teacher: Any,
    *,
    teacher_outputs: str = "auto",
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Runs the frozen teacher once and returns batches the Distiller trains on without it.

    ``data``: a batched ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, sample_weight)``, or a tuple
    of arrays ``(x, y[, sample_weight])``. The result yields ``({"inputs": x, "teacher_logits":
    t}, y[, sample_weight])`` with t float32 (B, C), in the original order and batch size (or
    ``batch_size``). For data without random augmentation only: the logits belong to the images
    seen here. Everything is held in memory.
    """
    import tensorflow as tf

    logits_of = _logits_function(teacher, teacher_outputs)
    if isinstance(data, tf.data.Dataset):
        batches = data
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        batches = tf.data.Dataset.from_tensor_slices(tuple(data)).batch(batch_size or 32)
    else:
        raise ValueError(
            "cache_teacher_outputs takes a batched tf.data.Dataset of (x, y[, sample_weight]) or "
            f"a tuple of arrays (x, y[, sample_weight]), not {type(data).__name__}."
        )

    columns: list[list[np.ndarray]] = []
    first_batch = None
    for element in batches:
        if not isinstance(element, tuple) or len(element) not in (2, 3):
            raise ValueError(
                "cache_teacher_outputs needs batches of (x, y) or (x, y, sample_weight), got a "
                f"batch of type {type(element).__name__}."
            )
        parts = [element[0], logits_of(element[0]), *element[1:]]
        if not columns:
            columns = [[] for _ in parts]
            first_batch = int(tf.shape(element[0])[0])
        for column, part in zip(columns, parts, strict=True):
            column.append(np.asarray(part))
    if not columns:
        raise ValueError("cache_teacher_outputs got an empty dataset.")
    x, t, *rest = (np.concatenate(column) for column in columns)
    cached = tf.data.Dataset.from_tensor_slices(({INPUTS: x, TEACHER_LOGITS: t}, *rest))
    if shuffle:
        cached = cached.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return cached.batch(batch_size or first_batch).prefetch(tf.data.AUTOTUNE)
