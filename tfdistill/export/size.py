"""Sizes of an exported file: as stored, and gzipped, which is what pruning's zeros save when
the model ships compressed (an APK, an over-the-air download)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple


class FileSize(NamedTuple):
    raw_bytes: int
    gzip_bytes: int


def file_size(path: str | os.PathLike) -> FileSize:
    """The file's size in bytes, and after gzip at level 9."""
    content = Path(path).read_bytes()
    return FileSize(len(content), len(gzip.compress(content, compresslevel=9, mtime=0)))


__all__ = ["FileSize", "file_size"]
