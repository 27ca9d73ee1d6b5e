"""A folder of images, one subfolder per class, as a `tfdistill.data.Dataset` (`folder:PATH`).

    PATH/cat/001.png, PATH/dog/002.jpg, ...          split here (seeded, stratified by file)
    PATH/train/cat/..., PATH/test/cat/... (or val/)  the folder's own splits

Each file's header is read first (Pillow, no pixels), then the files are decoded by Pillow in
a parallel `tf.data` pipeline (`decode.read`: PNG, JPEG, BMP, GIF, WebP; JPEGs at a draft
scale, large images shrunk in 8 bits before the float resize), converted to the channel count
of the first readable image (grayscale, or RGB: alpha dropped, palette, CMYK and 16-bit
converted, see `decode`), resized and written once to an on-disk uint8 `ImageStore` in the
cache folder (`cache_dir`, else `$TFDISTILL_CACHE_DIR`, else `~/.cache/tfdistill`), keyed by
the files (relative names, sizes, modification times), the size, the channels and the pixel
limit: later loads, stages and runs read that store, and nothing holds the whole set in memory.

The size (`image_size`): when every image has one size of at most `views.SMALL_IMAGES` (64)
pixels a side (CIFAR-like), it is by default that size, and with no other size in `view_sizes`
the images are kept as they are (`Dataset.image_size` None). Otherwise (default 224, logged,
or the size given) they are stored at `views.stored_size` of the largest of `image_size` and
`view_sizes` (the sizes other models, a teacher, will take), and models see views: a
random-resized crop for training, the centre crop for testing.

Only files named as images are read: `IMAGE_EXTENSIONS` (.png .jpg .jpeg .bmp .gif .webp, in any
case). Other files (`labels.txt`, `.json`, `Thumbs.db`, ...) and hidden ones (`.DS_Store`) are
ignored and not counted. Class folders are walked following directory symlinks, each directory
and file once (a link loop ends; a folder linked twice counts once). An image file that is
empty, is not an image, does not decode (truncated, corrupt) or is over `max_megapixels` is
skipped and counted in `Dataset.skipped` (by reason in `Dataset.skipped_reasons`), never a
crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfdistill.data import decode, views
from tfdistill.data import store as store_lib
from tfdistill.data.dataset import EIGHT_BIT, Dataset
from tfdistill.data.decode import REASONS

TEST_SPLITS = ("test", "val")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CACHE_ENV = "TFDISTILL_CACHE_DIR"
STORE_VERSION = 2
SKIPPED = "skipped.json"
log = logging.getLogger("tfdistill")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where stores go: `cache_dir`, else `$TFDISTILL_CACHE_DIR`, else ~/.cache/tfdistill."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tfdistill"
    return Path(chosen).expanduser()


def _is_image_name(name: str) -> bool:
    """A visible name whose extension is one of `IMAGE_EXTENSIONS` (any case)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _image_files(folder: Path) -> list[Path]:
    """The image files under `folder`, sorted: directory symlinks followed, each directory
    and each file read once (by device and inode), so a link loop ends and a directory linked
    twice counts once; a link to a folder above `folder` is a loop too, never walked; hidden
    files and folders are left out."""
    above = [os.stat(parent) for parent in Path(folder).resolve().parents]
    seen_dirs = {(info.st_dev, info.st_ino) for info in above}
    seen_files: set[tuple[int, int]] = set()
    found = []
    for top, dirs, names in os.walk(folder, followlinks=True):
        info = os.stat(top)
        if (info.st_dev, info.st_ino) in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(filter(_is_image_name, names)):
            path = Path(top, name)
            try:
                file = path.stat()
            except OSError:
                continue
            key = (file.st_dev, file.st_ino)
            if path.is_file() and key not in seen_files:
                seen_files.add(key)
                found.append(path)
    return sorted(found)


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, sorted (`_image_files`); hidden files and folders (at any
    depth) and files that are not named as images are ignored."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {folder.name: _image_files(folder) for folder in folders}


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


def _decode_pipeline(
    paths: Sequence[Path], channels: int, size: tuple[int, int] | None, max_pixels: float
):
    """A `tf.data` pipeline of (index, uint8 image (H, W, channels), reason) for `paths`, in
    order, read in parallel by `decode.read` (Pillow); reason 0 for an image, else 1 + its
    index in `decode.REASONS` (the image then empty). `size` None keeps each image's size."""
    import tensorflow as tf

    def read(path: bytes) -> tuple[np.ndarray, np.int64]:
        pixels = decode.read(Path(path.decode()), channels, size, max_pixels)
        if isinstance(pixels, str):
            return np.zeros((0, 0, channels), np.uint8), np.int64(1 + REASONS.index(pixels))
        return pixels, np.int64(0)

    def one(index: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image, reason = tf.numpy_function(read, [path], [tf.uint8, tf.int64], stateful=False)
        image = tf.ensure_shape(image, [None, None, channels])
        if size is not None:
            image = tf.cond(
                tf.equal(reason, 0),
                lambda: views.fit_and_crop(image, size),
                lambda: tf.zeros([*size, channels], tf.uint8),
            )
        return index, image, reason

    names = [str(p) for p in paths]
    pipeline = tf.data.Dataset.from_tensor_slices((np.arange(len(names), dtype=np.int64), names))
    pipeline = pipeline.map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return pipeline.ignore_errors().prefetch(tf.data.AUTOTUNE)


def _build(
    folder: Path,
    paths: Sequence[Path],
    shape: tuple[int, int, int],
    resize: bool,
    max_pixels: float,
) -> None:
    """Decodes `paths` into the store in `folder` (images of `shape`), with `kept.npy` (the
    indices that decoded) and `skipped.json` (the others' count by reason)."""
    kept: list[int] = []
    skipped: Counter[str] = Counter()

    def images():
        pipeline = _decode_pipeline(paths, shape[2], shape[:2] if resize else None, max_pixels)
        for index, image, reason in pipeline:
            if int(reason):
                skipped[REASONS[int(reason) - 1]] += 1
            elif tuple(image.shape) != shape:
                skipped[decode.TRUNCATED] += 1  # a same-size set with one odd image
            else:
                kept.append(int(index))
                yield image.numpy()

    with decode.quiet_bombs():
        store_lib.write(folder, images(), shape)
    lost = len(paths) - len(kept) - sum(skipped.values())
    if lost:
        skipped[decode.TRUNCATED] += lost  # dropped by the pipeline's ignore_errors
    np.save(folder / "kept.npy", np.asarray(kept, np.int64))
    (folder / SKIPPED).write_text(json.dumps(dict(skipped)))


def _split_store(
    root: Path,
    cache: Path,
    split: tuple[Sequence[Path], np.ndarray],
    shape: tuple[int, int, int],
    resize: bool,
    max_pixels: float,
) -> tuple[store_lib.ImageStore, np.ndarray, Counter[str]]:
    """(store, labels of its images, files skipped by reason) of one split's (files, labels)."""
    paths, labels = split
    digest = _files_digest(root, paths, labels, [list(shape), resize, max_pixels])
    store = store_lib.cached(cache / digest, lambda f: _build(f, paths, shape, resize, max_pixels))
    kept = np.load(store.folder / "kept.npy")
    return store, labels[kept], Counter(json.loads((store.folder / SKIPPED).read_text()))


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


def _headers(
    path: object, files: list[Path], max_pixels: float
) -> tuple[dict[Path, tuple[int, int, int]], Counter[str]]:
    """(file -> (H, W, channels) of those whose header reads within the limit, the others'
    count by reason); a ValueError when none reads."""
    headers, skipped = {}, Counter()
    with decode.quiet_bombs():
        for file in files:
            found = decode.header(file, max_pixels)
            if isinstance(found, str):
                skipped[found] += 1
            else:
                headers[file] = found
    if not headers:
        raise ValueError(
            f"folder:{path}: none of its {len(files)} files decode as an image "
            f"({decode.reasons_text(skipped)})."
        )
    return headers, skipped


def load_folder(
    path: str | os.PathLike,
    *,
    image_size: int | str | tuple[int, int] | None = None,
    view_sizes: Sequence[tuple[int, int]] = (),
    test_fraction: float = 0.2,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    size: int | tuple[int, int] | None = None,
    max_megapixels: float = decode.DEFAULT_MAX_MEGAPIXELS,
) -> Dataset:
    """The images under `path` as a Dataset streamed from a store (see the module docstring).
    Without train/ and test/ (or val/) subfolders, `test_fraction` of each class is held out
    (seeded). `size` is the old name of `image_size`. Images over `max_megapixels` (after a
    JPEG's draft scaling) are skipped, counted in `Dataset.skipped_reasons`."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"folder:{path}: no such folder.")
    if not max_megapixels > 0:
        raise ValueError(f"max_megapixels must be > 0, got {max_megapixels!r}.")
    train_files, test_files, test_name = _splits(root)
    class_names = tuple(train_files)
    if len(class_names) < 2:
        raise ValueError(
            f"folder:{path} needs one subfolder per class (at least two), found "
            f"{list(class_names) or 'none'}."
        )
    paths, labels = _labeled_files(train_files, class_names)
    test_paths, test_labels = _labeled_files(test_files or {}, class_names)
    if not paths + test_paths:
        raise ValueError(
            f"folder:{path}: its class folders hold no image files ({' '.join(IMAGE_EXTENSIONS)})."
        )
    max_pixels = max_megapixels * 1e6
    headers, skipped = _headers(path, paths + test_paths, max_pixels)

    def ok(files: list[Path], y: np.ndarray) -> tuple[list[Path], np.ndarray]:
        keep = [i for i, p in enumerate(files) if p in headers]
        return [files[i] for i in keep], y[keep]

    paths, labels = ok(paths, labels)
    test_paths, test_labels = ok(test_paths, test_labels)
    if test_files is None:
        paths, labels, test_paths, test_labels = _held_out(
            paths, labels, class_names, path, test_fraction, seed
        )
    elif not test_paths:
        raise ValueError(f"folder:{path}/{test_name}: no readable images.")
    shape, model_size = _shape_of(list(headers.values()), image_size or size, view_sizes)
    cache, resize = cache_root(cache_dir) / "images", model_size is not None
    train, y_train, lost = _split_store(root, cache, (paths, labels), shape, resize, max_pixels)
    test, y_test, lost_test = _split_store(
        root, cache, (test_paths, test_labels), shape, resize, max_pixels
    )
    reasons = skipped + lost + lost_test
    return Dataset(
        name=f"folder:{root.name}",
        x_train=train,
        y_train=y_train,
        x_test=test,
        y_test=y_test,
        num_classes=len(class_names),
        class_names=class_names,
        skipped=sum(reasons.values()),
        skipped_reasons={reason: reasons[reason] for reason in REASONS if reasons[reason]},
        pixel_max=EIGHT_BIT,
        image_size=model_size,
        files_digest=store_lib.stores_digest(train, test),
    )


def _shape_of(
    readable: list[tuple[int, int, int]], image_size: Any, view_sizes: Sequence[Any]
) -> tuple[tuple[int, int, int], views.Size | None]:
    """`store_shape` for images of these headers (H, W, channels): the first one's channels."""
    sizes = [views.parse_size(s, "view_sizes") for s in view_sizes]
    own_sizes = {h[:2] for h in readable}
    own = next(iter(own_sizes)) if len(own_sizes) == 1 else None
    what = (
        f"the images are {own[0]}x{own[1]}" if own else f"the images come in {len(own_sizes)} sizes"
    )
    return store_shape(own, readable[0][2], views.parse_size(image_size), sizes, what)


__all__ = [
    "CACHE_ENV",
    "IMAGE_EXTENSIONS",
    "cache_root",
    "load_folder",
    "store_shape",
]
