"""A folder of images, one subfolder per class, as a `tfdistill.data.Dataset` (`folder:PATH`).

    PATH/cat/001.png, PATH/dog/002.jpg, ...          split here (seeded, stratified)
    PATH/train/cat/..., PATH/test/cat/... (or val/)  the folder's own splits

Every image is decoded by TensorFlow (PNG, JPEG, BMP, GIF, WebP), converted to the channel count
of the first readable image (grayscale, or RGB with alpha dropped) and bilinearly resized to its
size (or to `size`). Images are decoded as 8 bits per channel, so `Dataset.pixel_max` is 255.

Only files named as images are read: `IMAGE_EXTENSIONS` (.png .jpg .jpeg .bmp .gif .webp, in any
case), all of which `tf.io.decode_image` decodes in TF 2.21 (WebP included). Other files
(`labels.txt`, `.json`, `Thumbs.db`, ...) and hidden ones (`.DS_Store`) are ignored and not
counted. An image file that does not decode (corrupt, truncated, or a format in disguise that
TensorFlow cannot read) is skipped and counted in `Dataset.skipped`, never a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfdistill.data.dataset import EIGHT_BIT, Dataset

TEST_SPLITS = ("test", "val")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _is_image_file(path: Path) -> bool:
    """A visible file whose extension is one of `IMAGE_EXTENSIONS` (any case)."""
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, sorted; hidden files and folders and files that are not
    named as images are ignored."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[folder.name] = sorted(f for f in folder.rglob("*") if _is_image_file(f))
    return classes


def _decode(path: Path, channels: int | None, size: tuple[int, int] | None) -> np.ndarray | None:
    """float32 (H, W, C) in [0, 1], or None when the file does not decode."""
    import tensorflow as tf

    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, ValueError):
        return None
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape[-1] == 4:
        image = image[..., :3]
    if channels == 1 and image.shape[-1] == 3:
        image = tf.image.rgb_to_grayscale(image)
    elif channels == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    if size is not None and tuple(image.shape[:2]) != size:
        image = tf.image.resize(image, size, method="bilinear")
    return np.clip(image.numpy(), 0.0, 1.0)


def _read(
    files: dict[str, list[Path]],
    class_names: tuple[str, ...],
    channels: int | None,
    size: tuple[int, int] | None,
) -> tuple[np.ndarray, np.ndarray, int, int | None, tuple[int, int] | None]:
    """(x, y, skipped, channels, size); the first readable image fixes channels and size."""
    images, labels, skipped = [], [], 0
    for name, paths in files.items():
        if name not in class_names:
            raise ValueError(
                f"class folder {name!r} is not among the training classes {list(class_names)}"
            )
        for path in paths:
            image = _decode(path, channels, size)
            if image is None:
                skipped += 1
                continue
            if channels is None:
                channels, size = image.shape[-1], tuple(image.shape[:2])
            images.append(image)
            labels.append(class_names.index(name))
    if not images:
        return np.zeros((0, 1, 1, 1), np.float32), np.zeros(0, np.int64), skipped, channels, size
    return np.stack(images), np.asarray(labels, np.int64), skipped, channels, size


def load_folder(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """The images under `path` as a Dataset (see the module docstring). Without train/ and
    test/ (or val/) subfolders, `test_fraction` of each class is held out (seeded)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"folder:{path}: no such folder.")
    target = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
    split_folders = {p.name: p for p in root.iterdir() if p.is_dir()}
    test_name = next((s for s in TEST_SPLITS if s in split_folders), None)
    if "train" in split_folders and test_name is not None:
        train_files = _class_folders(split_folders["train"])
        test_files = _class_folders(split_folders[test_name])
    else:
        train_files, test_files = _class_folders(root), None
    class_names = tuple(train_files)
    if len(class_names) < 2:
        raise ValueError(
            f"folder:{path} needs one subfolder per class (at least two), found "
            f"{list(class_names) or 'none'}."
        )
    x, y, skipped, channels, target = _read(train_files, class_names, None, target)
    if len(x) == 0 and skipped == 0:
        raise ValueError(
            f"folder:{path}: its class folders hold no image files ({' '.join(IMAGE_EXTENSIONS)})."
        )
    if len(x) == 0:
        raise ValueError(f"folder:{path}: none of its {skipped} files decode as an image.")
    if test_files is not None:
        x_test, y_test, more, _, _ = _read(test_files, class_names, channels, target)
        skipped += more
        if len(x_test) == 0:
            raise ValueError(f"folder:{path}/{test_name}: no readable images.")
    else:
        from sklearn.model_selection import train_test_split

        counts = np.bincount(y, minlength=len(class_names))
        if counts.min() < 2:
            raise ValueError(
                f"folder:{path}: class {class_names[int(counts.argmin())]!r} has "
                f"{int(counts.min())} readable image(s); splitting needs at least 2 a class, "
                "or give train/ and test/ subfolders."
            )
        x, x_test, y, y_test = train_test_split(
            x, y, test_size=test_fraction, random_state=seed, stratify=y
        )
    return Dataset(
        name=f"folder:{root.name}",
        x_train=x,
        y_train=y,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(class_names),
        class_names=class_names,
        skipped=skipped,
        pixel_max=EIGHT_BIT,
    )


__all__ = ["IMAGE_EXTENSIONS", "load_folder"]
