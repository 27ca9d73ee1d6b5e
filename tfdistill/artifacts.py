"""Writing a run's files without ever leaving a half-written one: temporary file, then rename.

A write that fails (a full disk) removes its temporary file and leaves the old file as it was;
its OSError names the file being written.

The temporary file gets the mode a plain `open` would give (0666 less the umask), not
`mkstemp`'s owner-only 0600, so a renamed file is as readable as a file written in place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def write_atomic(path: str | os.PathLike, write: Callable[[IO], Any], mode: str = "w") -> Path:
    """Calls `write(file)` on a temporary file beside `path`, then renames it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, FILE_MODE)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        _name_the_file(error, tmp, path)
        raise
    return path


def _name_the_file(error: BaseException, tmp: str, path: Path) -> None:
    """Raises an OSError of writing temporary file `tmp` (or of no file) as one of `path`,
    the file the user knows of."""
    if isinstance(error, OSError) and error.errno and error.filename in (None, tmp):
        raise OSError(error.errno, error.strerror or os.strerror(error.errno), str(path)) from error


def _save_beside(path: Path, suffix: str, save: Callable[[str], Any]) -> Path:
    """`save(temporary path ending in suffix)` beside `path`, then rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, FILE_MODE)
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        _name_the_file(error, tmp, path)
        raise
    return path


def save_model(model: Any, path: str | os.PathLike) -> Path:
    """`model.save` to a temporary `.keras` file beside `path`, then rename."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Keras models are saved as .keras files, got {str(path)!r}.")
    return _save_beside(path, ".keras", model.save)


def save_weights(model: Any, path: str | os.PathLike) -> Path:
    """`model.save_weights` (Keras 3 or tf_keras) to a temporary file beside `path`, then
    rename; `path` ends in `.weights.h5`."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"weights are saved as .weights.h5 files, got {str(path)!r}.")
    return _save_beside(path, ".weights.h5", model.save_weights)


UNSAFE_HINT = "safe_mode=False"


def load_model(path: str | os.PathLike, *, unsafe: bool = False, what: str = "") -> Any:
    """`keras.models.load_model(path)` in Keras safe mode unless `unsafe`; a file that needs
    unsafe deserialization (a `Lambda` layer's Python code) is a one-line ValueError naming
    `what` and `--unsafe_load`."""
    import keras

    try:
        return keras.models.load_model(path, safe_mode=not unsafe)
    except (ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        if unsafe or UNSAFE_HINT not in message:
            raise
        asks = message.partition(". ")[0].removeprefix("Requested the ")
        raise ValueError(
            f"{what or 'model'} {str(path)!r} is refused by Keras safe mode: it asks for the "
            f"{asks}, Python code that runs when the file loads; if you trust the file, pass "
            "--unsafe_load."
        ) from None
