"""A folder of images, one subfolder per class, as a `tfdistill.data.Dataset` (`folder:PATH`).

    PATH/cat/001.png, PATH/dog/002.jpg, ...          split here (seeded, stratified by file)
    PATH/train/cat/..., PATH/test/cat/... (or val/)  the folder's own splits

Images are decoded by TensorFlow in a parallel `tf.data` pipeline (PNG, JPEG, BMP, GIF, WebP),
converted to the channel count of the first readable image (grayscale, or RGB with alpha
dropped), resized and written once to an on-disk uint8 `ImageStore` in the cache folder
(`cache_dir`, else `$TFDISTILL_CACHE_DIR`, else `~/.cache/tfdistill`), keyed by the files
(relative names, sizes, modification times), the size and the channels: later loads, stages
and runs read that store, and nothing holds the whole set in memory.

The size (`image_size`): when every image has one size of at most `views.SMALL_IMAGES` (64)
pixels a side (CIFAR-like), it is by default that size, and with no other size in `view_sizes`
the images are kept as they are (`Dataset.image_size` None). Otherwise (default 224, logged,
or the size given) they are stored at `views.stored_size` of the largest of `image_size` and
`view_sizes` (the sizes other models, a teacher, will take), and models see views: a
random-resized crop for training, the centre crop for testing.

Only files named as images are read: `IMAGE_EXTENSIONS` (.png .jpg .jpeg .bmp .gif .webp, in any
case). Other files (`labels.txt`, `.json`, `Thumbs.db`, ...) and hidden ones (`.DS_Store`) are
ignored and not counted. An image file that does not decode (corrupt, truncated, or a format in
disguise) is skipped and counted in `Dataset.skipped`, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfdistill.data import store as store_lib
from tfdistill.data import views
from tfdistill.data.dataset import EIGHT_BIT, Dataset

TEST_SPLITS = ("test", "val")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CACHE_ENV = "TFDISTILL_CACHE_DIR"
STORE_VERSION = 1
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
log = logging.getLogger("tfdistill")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where stores go: `cache_dir`, else `$TFDISTILL_CACHE_DIR`, else ~/.cache/tfdistill."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tfdistill"
    return Path(chosen).expanduser()


def _is_image_file(path: Path) -> bool:
    """A visible file whose extension is one of `IMAGE_EXTENSIONS` (any case)."""
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, sorted; hidden files and folders (at any depth) and files
    that are not named as images are ignored."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[folder.name] = sorted(
            f
            for f in folder.rglob("*")
            if _is_image_file(f)
            and not any(part.startswith(".") for part in f.relative_to(folder).parts)
        )
    return classes


def _header(path: Path) -> tuple[int, int, int] | None:
    """(H, W, channels) from the file's header (Pillow reads no pixels), or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            w, h = image.size
            return (h, w, 1 if image.mode in GRAY_MODES else 3)
    except Exception:  # Pillow raises many kinds for a bad file; all mean "does not decode"
        return None


def _labeled_files(
    files: dict[str, list[Path]], class_names: tuple[str, ...]
) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for name, members in files.items():
        if name not in class_names:
            raise ValueError(
                f"class folder {name!r} is not among the training classes {list(class_names)}"
            )
        paths.extend(members)
        labels.extend([class_names.index(name)] * len(members))
    return paths, np.asarray(labels, np.int64)


def _files_digest(root: Path, paths: Sequence[Path], labels: np.ndarray, extra: object) -> str:
    """A digest of the files' names (relative to `root`), sizes, times and labels, and `extra`."""
    digest = hashlib.sha256(json.dumps([STORE_VERSION, extra]).encode())
    for path, label in zip(paths, labels, strict=True):
        stat = path.stat()
        digest.update(
            f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label}\n".encode()
        )
    return digest.hexdigest()[:20]


def _decode_pipeline(paths: Sequence[Path], channels: int, size: tuple[int, int] | None):
    """A `tf.data` pipeline of (index, uint8 image (H, W, channels)) for the files that decode,
    in order, decoded in parallel; `size` None keeps each image's own size."""
    import tensorflow as tf

    def decode(index: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        color = tf.shape(image)[-1] >= 3
        if channels == 3:
            image = tf.cond(
                color, lambda: image[..., :3], lambda: tf.image.grayscale_to_rgb(image[..., :1])
            )
        else:
            image = tf.cond(
                color, lambda: tf.image.rgb_to_grayscale(image[..., :3]), lambda: image[..., :1]
            )
        if size is not None:
            image = views.fit_and_crop(image, size)
        return index, image

    names = [str(p) for p in paths]
    pipeline = tf.data.Dataset.from_tensor_slices((np.arange(len(names), dtype=np.int64), names))
    pipeline = pipeline.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return pipeline.ignore_errors().prefetch(tf.data.AUTOTUNE)


def _build(
    folder: Path, paths: Sequence[Path], channels: int, shape: tuple[int, int, int], resize: bool
) -> None:
    """Decodes `paths` into the store in `folder`, with `kept.npy`: the indices that decoded."""
    kept: list[int] = []

    def images():
        for index, image in _decode_pipeline(paths, channels, shape[:2] if resize else None):
            if tuple(image.shape) != shape:
                continue  # a same-size set with one odd image: that one is skipped
            kept.append(int(index))
            yield image.numpy()

    store_lib.write(folder, images(), shape)
    np.save(folder / "kept.npy", np.asarray(kept, np.int64))


def _split_store(
    root: Path,
    cache: Path,
    paths: Sequence[Path],
    labels: np.ndarray,
    channels: int,
    shape: tuple[int, int, int],
    resize: bool,
) -> tuple[store_lib.ImageStore, np.ndarray, int]:
    """(store, labels of its images, files skipped) of one split's files."""
    digest = _files_digest(root, paths, labels, [channels, list(shape), resize])
    store = store_lib.cached(cache / digest, lambda f: _build(f, paths, channels, shape, resize))
    kept = np.load(store.folder / "kept.npy")
    return store, labels[kept], len(paths) - len(kept)


def _splits(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None, str | None]:
    """(train files, test files or None, the test folder's name) by class."""
    split_folders = {p.name: p for p in root.iterdir() if p.is_dir()}
    test_name = next((s for s in TEST_SPLITS if s in split_folders), None)
    if "train" in split_folders and test_name is not None:
        return (
            _class_folders(split_folders["train"]),
            _class_folders(split_folders[test_name]),
            test_name,
        )
    return _class_folders(root), None, None


def store_shape(
    own: views.Size | None,
    channels: int,
    image_size: views.Size | None,
    view_sizes: Sequence[views.Size],
    what: str,
) -> tuple[tuple[int, int, int], views.Size | None]:
    """(the stored image shape, the Dataset's image_size: None when images are kept as they
    are) for images of one size `own` (None: of several or unknown sizes), the size rule of
    `folder:` and `tfds:`; `what` says, in the log, why the default 224 was taken."""
    if own is not None and max(own) <= views.SMALL_IMAGES and image_size is None:
        image_size = own
    if own is not None and image_size == own and all(s == own for s in view_sizes):
        return (*own, channels), None
    if image_size is None:
        image_size = views.DEFAULT_SIZE
        log.warning("image_size %dx%d: %s (give image_size to choose another)", *image_size, what)
    return (*views.stored_size([image_size, *view_sizes]), channels), image_size


def _held_out(
    paths: list[Path],
    labels: np.ndarray,
    class_names: tuple[str, ...],
    path: object,
    test_fraction: float,
    seed: int,
) -> tuple[list[Path], np.ndarray, list[Path], np.ndarray]:
    """A stratified, seeded split of the readable files into train and test."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels, minlength=len(class_names))
    if counts.min() < 2:
        raise ValueError(
            f"folder:{path}: class {class_names[int(counts.argmin())]!r} has "
            f"{int(counts.min())} readable image(s); splitting needs at least 2 a class, "
            "or give train/ and test/ subfolders."
        )
    held_out = int(np.ceil(test_fraction * len(paths)))
    if held_out < len(class_names) or len(paths) - held_out < len(class_names):
        raise ValueError(
            f"folder:{path}: {len(paths)} readable images cannot be split {test_fraction:g} "
            f"for testing with every one of the {len(class_names)} classes on both sides; add "
            "images, change the test fraction, or give train/ and test/ subfolders."
        )
    train, test = train_test_split(
        np.arange(len(paths)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    train, test = np.sort(train), np.sort(test)
    return [paths[i] for i in train], labels[train], [paths[i] for i in test], labels[test]


def load_folder(
    path: str | os.PathLike,
    *,
    image_size: int | str | tuple[int, int] | None = None,
    view_sizes: Sequence[tuple[int, int]] = (),
    test_fraction: float = 0.2,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    size: int | tuple[int, int] | None = None,
) -> Dataset:
    """The images under `path` as a Dataset streamed from a store (see the module docstring).
    Without train/ and test/ (or val/) subfolders, `test_fraction` of each class is held out
    (seeded). `size` is the old name of `image_size`."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"folder:{path}: no such folder.")
    train_files, test_files, test_name = _splits(root)
    class_names = tuple(train_files)
    if len(class_names) < 2:
        raise ValueError(
            f"folder:{path} needs one subfolder per class (at least two), found "
            f"{list(class_names) or 'none'}."
        )
    paths, labels = _labeled_files(train_files, class_names)
    test_paths, test_labels = _labeled_files(test_files or {}, class_names)
    everything = paths + test_paths
    if not everything:
        raise ValueError(
            f"folder:{path}: its class folders hold no image files ({' '.join(IMAGE_EXTENSIONS)})."
        )
    headers = {p: _header(p) for p in everything}
    readable = [h for h in headers.values() if h is not None]
    if not readable:
        raise ValueError(f"folder:{path}: none of its {len(everything)} files decode as an image.")
    unreadable = len(everything) - len(readable)

    def ok(files: list[Path], y: np.ndarray) -> tuple[list[Path], np.ndarray]:
        keep = [i for i, p in enumerate(files) if headers[p] is not None]
        return [files[i] for i in keep], y[keep]

    paths, labels = ok(paths, labels)
    test_paths, test_labels = ok(test_paths, test_labels)
    if test_files is None:
        paths, labels, test_paths, test_labels = _held_out(
            paths, labels, class_names, path, test_fraction, seed
        )
    elif not test_paths:
        raise ValueError(f"folder:{path}/{test_name}: no readable images.")
    sizes = [views.parse_size(s, "view_sizes") for s in view_sizes]
    own_sizes = {h[:2] for h in readable}
    own = next(iter(own_sizes)) if len(own_sizes) == 1 else None
    what = (
        f"the images are {own[0]}x{own[1]}" if own else f"the images come in {len(own_sizes)} sizes"
    )
    shape, model_size = store_shape(
        own, readable[0][2], views.parse_size(image_size or size), sizes, what
    )
    cache = cache_root(cache_dir) / "images"
    resize = model_size is not None
    train, y_train, lost = _split_store(root, cache, paths, labels, shape[2], shape, resize)
    test, y_test, lost_test = _split_store(
        root, cache, test_paths, test_labels, shape[2], shape, resize
    )
    return Dataset(
        name=f"folder:{root.name}",
        x_train=train,
        y_train=y_train,
        x_test=test,
        y_test=y_test,
        num_classes=len(class_names),
        class_names=class_names,
        skipped=unreadable + lost + lost_test,
        pixel_max=EIGHT_BIT,
        image_size=model_size,
        files_digest=store_lib.stores_digest(train, test),
    )


__all__ = ["CACHE_ENV", "IMAGE_EXTENSIONS", "cache_root", "load_folder", "store_shape"]
