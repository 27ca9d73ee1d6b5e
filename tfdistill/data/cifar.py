"""CIFAR-10 and CIFAR-100 from the python-pickle release: the extracted folder or the
``.tar.gz``, searched for in ``data_dir``, ``$TFDISTILL_DATA_DIR``, ``~/.keras/datasets`` and
the ``keras.datasets`` cache, extracted in place, downloaded through ``keras.datasets`` only when
no ``data_dir`` is given; offline, a FileNotFoundError names every place tried. Images float32
(N, 32, 32, 3) in [0, 1]."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tfdistill.data.dataset import EIGHT_BIT, Dataset
from tfdistill.errors import brief

DATA_DIR_ENV = "TFDISTILL_DATA_DIR"


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


def load_cifar10(data_dir: str | None = None) -> Dataset:
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


def load_cifar100(data_dir: str | None = None, *, label_mode: str = "fine") -> Dataset:
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
