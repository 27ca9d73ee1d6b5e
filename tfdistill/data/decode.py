"""One image file read with Pillow, defensively: its header first, then its pixels, or the
reason it is skipped.

- `header`: (H, W, channels) from the header alone (no pixels), or a reason: `EMPTY` (0
  bytes), `NOT_AN_IMAGE` (Pillow does not recognize it), `TOO_LARGE` (over the pixel limit,
  even at a JPEG's smallest draft scale, 1/8 a side, or over Pillow's own decompression-bomb
  limit, twice `PIL.Image.MAX_IMAGE_PIXELS`, ~179 MP).
- `read`: uint8 (h, w, channels) pixels, or a reason: `TOO_LARGE` (still over the limit at
  the draft scale the size allows; or out of memory), `TRUNCATED` (the header reads but the
  pixels do not: truncated, corrupt). A JPEG is decoded at the smallest draft scale (1/2, 1/4,
  1/8) that keeps it at least twice the size it will be resized to; any image still more than
  twice that is shrunk in 8 bits by a whole factor (`Image.reduce`, box averages), so the
  float resize that follows never sees a large image.

Modes become the dataset's channels: 16-bit grayscale (I;16, I) keeps its high byte (Pillow's
own conversion to L clips at 255 instead); palette (P, PA, with or without transparency),
CMYK, YCbCr and the others go through Pillow's conversion to RGB; alpha (RGBA, LA, PA) is
dropped; RGB becomes L by Pillow's ITU-R 601-2 weights, and L becomes RGB by copying.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

EMPTY, NOT_AN_IMAGE, TRUNCATED, TOO_LARGE = "empty", "not_an_image", "truncated", "too_large"
REASONS = (EMPTY, NOT_AN_IMAGE, TRUNCATED, TOO_LARGE)
REASON_TEXT = {
    EMPTY: "empty",
    NOT_AN_IMAGE: "not an image",
    TRUNCATED: "truncated or corrupt",
    TOO_LARGE: "too large",
}
DEFAULT_MAX_MEGAPIXELS = 50.0
SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")
GRAY_MODES = ("1", "L", "LA", "La", "F", *SIXTEEN_BIT)
JPEG_SMALLEST_SCALE = 8
Size = tuple[int, int]


@contextlib.contextmanager
def quiet_bombs() -> Iterator[None]:
    """Pillow's decompression-bomb warning off (the pixel limit here decides); enter it in the
    main thread around every `header` and `read` (`warnings` filters are process-wide)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def header(path: Path, max_pixels: float) -> tuple[int, int, int] | str:
    """(H, W, channels) of `path` from its header alone, or the reason it is skipped."""
    from PIL import Image

    if path.stat().st_size == 0:
        return EMPTY
    try:
        with Image.open(path) as image:
            w, h = image.size
            smallest = JPEG_SMALLEST_SCALE**2 if image.format == "JPEG" else 1
            if w * h / smallest > max_pixels:
                return TOO_LARGE
            return (h, w, 1 if image.mode in GRAY_MODES else 3)
    except Image.DecompressionBombError:
        return TOO_LARGE
    except Exception:  # Pillow raises many kinds for a file it cannot read
        return NOT_AN_IMAGE


def reasons_text(skipped: dict[str, int]) -> str:
    """ "2 empty, 1 too large" of counts by reason (`REASONS`)."""
    counted = [reason for reason in REASONS if skipped.get(reason)]
    return ", ".join(f"{skipped[reason]} {REASON_TEXT[reason]}" for reason in counted)


def _cover(h: int, w: int, size: Size) -> Size:
    """The (H, W) an (h, w) image is resized to so that it just covers `size`."""
    scale = max(size[0] / h, size[1] / w)
    return (max(math.ceil(h * scale), size[0]), max(math.ceil(w * scale), size[1]))


def to_channels(image, channels: int) -> np.ndarray:
    """uint8 (h, w, `channels`) pixels of a loaded Pillow image of any mode (module docstring)."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT:
        high = np.clip(np.asarray(image, np.int64), 0, 65535) >> 8
        image = Image.fromarray(high.astype(np.uint8), "L")
    elif image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode in GRAY_MODES else "RGB")
    target = "RGB" if channels == 3 else "L"
    if image.mode != target:
        image = image.convert(target)
    return np.asarray(image, np.uint8).reshape(image.size[1], image.size[0], channels)


def _shrunk(image, size: Size | None):
    """`image` divided by the largest whole factor that keeps it twice its cover of `size`."""
    if size is None:
        return image
    w, h = image.size
    cover = _cover(h, w, size)
    factor = min(h // (2 * cover[0]), w // (2 * cover[1]))
    return image.reduce(factor) if factor >= 2 else image


def read(path: Path, channels: int, size: Size | None, max_pixels: float) -> np.ndarray | str:
    """uint8 (h, w, `channels`) pixels of `path`, shrunk in 8 bits toward `size` (None: as
    they are), or the reason it is skipped (`TOO_LARGE`, `TRUNCATED`, or a `header` reason)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if size is not None and image.format == "JPEG":
                w, h = image.size
                cover = _cover(h, w, size)
                image.draft(None, (2 * cover[1], 2 * cover[0]))
            if image.size[0] * image.size[1] > max_pixels:
                return TOO_LARGE
            image.load()
            return to_channels(_shrunk(image, size), channels)
    except Image.DecompressionBombError:
        return TOO_LARGE
    except MemoryError:
        return TOO_LARGE
    except Exception:  # a header that reads over pixels that do not
        return TRUNCATED


__all__ = [
    "DEFAULT_MAX_MEGAPIXELS",
    "GRAY_MODES",
    "REASONS",
    "REASON_TEXT",
    "header",
    "quiet_bombs",
    "read",
    "reasons_text",
    "to_channels",
]
