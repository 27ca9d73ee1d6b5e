"""`ImageStore`: images kept on disk as one uint8 file, read by row, never held whole in memory.

A store is a file of N × H × W × C bytes (row-major, one image after another) and a JSON file
beside it with its shape. It reads like a read-only float32 array of shape (N, H, W, C): `len`,
`shape`, `store[i]`, `store[a:b]`, `store[[i, j, ...]]` give float32 images, the uint8 values
times `scale` (1/255 by default, so [0, 1] like every `Dataset`; `scaled(1.0)` gives raw
pixels). Rows are read with `os.pread`, so what a read leaves is the page cache, not the
process's memory. `gather` reads a batch inside a `tf.data` pipeline.

`cached` builds a store once: into a temporary file renamed into place when complete (an
interrupted build leaves nothing that looks finished), under a lock file so that processes
sharing the cache folder (the workers of a multi-worker run) build it once and the others wait.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

IMAGES, INFO = "images.u8", "info.json"
STALE_LOCK_SECONDS = 600.0


@dataclasses.dataclass(frozen=True, eq=False)
class ImageStore:
    """uint8 images (N, H, W, C) in `folder`/images.u8, read as float32 × `scale`; `rows`:
    the file's rows this store shows, in order (None: all)."""

    folder: Path
    image_shape: tuple[int, int, int]
    count: int
    scale: float = 1.0 / 255.0
    rows: np.ndarray | None = None

    @classmethod
    def open(cls, folder: str | os.PathLike) -> ImageStore:
        """The finished store in `folder` (see `write`)."""
        folder = Path(folder)
        info = json.loads((folder / INFO).read_text())
        return cls(folder, tuple(info["image_shape"]), int(info["count"]))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.image_shape)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self.count if self.rows is None else len(self.rows)

    def scaled(self, scale: float) -> ImageStore:
        """The same images read as uint8 × `scale` (1.0: raw pixels 0..255)."""
        return dataclasses.replace(self, scale=float(scale))

    def subset(self, indices: Any) -> ImageStore:
        """The rows `indices` (ints into this store) as a store, nothing read."""
        chosen = self._file_rows(np.arange(len(self))[np.asarray(indices, np.int64)])
        return dataclasses.replace(self, rows=chosen)

    def _file_rows(self, indices: np.ndarray) -> np.ndarray:
        return indices if self.rows is None else self.rows[indices]

    def uint8(self, indices: Any) -> np.ndarray:
        """uint8 (k, H, W, C) images of the rows `indices` (ints, or a slice)."""
        if isinstance(indices, slice):
            indices = np.arange(len(self))[indices]
        indices = np.asarray(indices, np.int64).reshape(-1)
        if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"index out of range for a store of {len(self)} images")
        file_rows = self._file_rows(indices % max(len(self), 1))
        size = int(np.prod(self.image_shape))
        out = np.empty((len(file_rows), size), np.uint8)
        fd = os.open(self.folder / IMAGES, os.O_RDONLY)
        try:
            for i, row in enumerate(file_rows):
                out[i] = np.frombuffer(os.pread(fd, size, int(row) * size), np.uint8)
        finally:
            os.close(fd)
        return out.reshape(len(file_rows), *self.image_shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.uint8([key])[0].astype(np.float32) * np.float32(self.scale)
        return self.uint8(key).astype(np.float32) * np.float32(self.scale)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def gather(self, indices: tf.Tensor) -> tf.Tensor:
        """uint8 (k, H, W, C) images of int64 `indices` (k,), read inside a graph."""
        import tensorflow as tf

        images = tf.numpy_function(self.uint8, [indices], tf.uint8, stateful=False)
        return tf.ensure_shape(images, [None, *self.image_shape])


def stores_digest(*stores: ImageStore) -> str:
    """A digest of stores by their folders, which are named by their contents' keys."""
    return hashlib.sha256("".join(s.folder.name for s in stores).encode()).hexdigest()[:16]


def write(folder: Path, images: Iterable[np.ndarray], image_shape: tuple[int, int, int]) -> int:
    """Writes uint8 `images` (batches (k, H, W, C) or single (H, W, C)) as a store in `folder`;
    the number written. Readers see it only once complete (`info.json` is written last)."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{IMAGES}.partial-{os.getpid()}"
    count = 0
    with open(partial, "wb") as file:
        for batch in images:
            batch = np.asarray(batch, np.uint8)
            if batch.shape == tuple(image_shape):
                batch = batch[None]
            if batch.shape[1:] != tuple(image_shape):
                raise ValueError(f"images of shape {batch.shape[1:]} for a store of {image_shape}")
            file.write(np.ascontiguousarray(batch).tobytes())
            count += len(batch)
    os.replace(partial, folder / IMAGES)
    (folder / INFO).write_text(json.dumps({"image_shape": list(image_shape), "count": count}))
    return count


def is_complete(folder: Path) -> bool:
    return (folder / INFO).is_file() and (folder / IMAGES).is_file()


def _stale(folder: Path, lock: Path) -> bool:
    """Whether the lock and every partial file in `folder` are untouched for
    `STALE_LOCK_SECONDS` (the builder died)."""
    times = [p.stat().st_mtime for p in (lock, *folder.glob(f"{IMAGES}.partial-*")) if p.exists()]
    return bool(times) and time.time() - max(times) > STALE_LOCK_SECONDS


@contextlib.contextmanager
def _lock(folder: Path, wait: float = 0.5) -> Iterator[bool]:
    """Yields True to the one process that holds `folder`'s build lock; the others wait for
    the build to finish (or the lock to go stale) and get False."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "build.lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if is_complete(folder):
                yield False
                return
            if _stale(folder, lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
            time.sleep(wait)
            continue
        os.close(fd)
        try:
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        return


def cached(folder: Path, build: Callable[[Path], Any]) -> ImageStore:
    """The store in `folder`, made by `build(folder)` (which calls `write`) unless a complete
    one is there; one process builds it, others sharing the folder wait for it."""
    if not is_complete(folder):
        with _lock(folder) as builder:
            if builder and not is_complete(folder):
                build(folder)
    return ImageStore.open(folder)


__all__ = ["ImageStore", "cached", "is_complete", "stores_digest", "write"]
