"""Other libraries' exceptions, told in one line inside tfdistill's own error messages."""

from __future__ import annotations

import errno
import os


def brief(error: BaseException, limit: int = 200) -> str:
    """`"TypeName: message"` on one line, the message cut to `limit` characters."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_FULL = (
    "free space there (or pass an --out on another disk) and run the same command again: "
    "it goes on after the last finished stage"
)
_WAY_OUT = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EACCES: "pass an --out you may write to, or give yourself write permission there",
    errno.EPERM: "pass an --out you may write to, or give yourself write permission there",
    errno.EROFS: "pass an --out on a file system that is not read-only",
    errno.ENOTDIR: "a part of that path is a file, not a folder: pass an --out under a folder",
    errno.EISDIR: "that path is a folder: pass another path",
}


def os_error(error: OSError) -> str:
    """A failed file operation in one line: the problem, the path and, for a full disk, a
    read-only or forbidden folder or a file where a folder should be, the way out."""
    if error.errno is None or not error.strerror:
        return " ".join(str(error).split())
    path = f": {os.fsdecode(error.filename)!r}" if error.filename is not None else ""
    line = f"{error.strerror}{path}"
    way_out = _WAY_OUT.get(error.errno)
    return f"{line}; {way_out}" if way_out else line
