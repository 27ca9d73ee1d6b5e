"""LiteRT interpreters for exported files, with XNNPACK on or off and readable failures."""

from __future__ import annotations

import os
from typing import Any


def litert_interpreter(
    path: str | os.PathLike, *, num_threads: int | None = None, use_xnnpack: bool = True
) -> Any:
    """An `ai_edge_litert` interpreter for `path`, tensors allocated. `use_xnnpack=False` keeps
    the default XNNPACK delegate off (LiteRT's own kernels). A file LiteRT cannot load, or that
    XNNPACK refuses, gets an error that names the file and what to do."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (
        OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        interpreter = Interpreter(
            model_path=os.fspath(path),
            num_threads=num_threads,
            experimental_op_resolver_type=resolver,
        )
    except ValueError as error:
        raise ValueError(f"LiteRT could not load {os.fspath(path)!r} as a model: {error}") from None
    try:
        interpreter.allocate_tensors()
    except RuntimeError as error:
        if use_xnnpack and "delegate" in str(error).lower():
            raise RuntimeError(
                f"LiteRT's XNNPACK delegate cannot run {os.fspath(path)!r} ({error}). Run it "
                "with use_xnnpack=False (LiteRT's own kernels), or export it again without "
                "sparsity=True: XNNPACK has no sparse int8 FULLY_CONNECTED."
            ) from None
        raise
    return interpreter


__all__ = ["litert_interpreter"]
