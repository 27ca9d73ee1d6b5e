"""The machine's measured float32 peak: one large matrix product in LiteRT, and how close a model
comes to it (multiply-adds per second)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfdistill.export.interpreter import litert_interpreter

ROWS, DEPTH, UNITS = 256, 1024, 1024


def matmul_macs(rows: int = ROWS, depth: int = DEPTH, units: int = UNITS) -> int:
    """Multiply-adds of a (rows, depth) × (depth, units) product."""
    return rows * depth * units


def matmul_model(
    path: str | os.PathLike, *, rows: int = ROWS, depth: int = DEPTH, units: int = UNITS
) -> Path:
    """Writes a float32 `.tflite` of one FULLY_CONNECTED layer: (1, rows, depth) input ->
    (1, rows, units), random weights (seed 0), no bias; returns its path. Big enough by default
    (268M multiply-adds) that XNNPACK's GEMM runs at its steady rate."""
    for name, value in (("rows", rows), ("depth", depth), ("units", units)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    import keras

    from tfdistill.export.tflite import to_tflite

    inputs = keras.Input((rows, depth), name="a")
    dense = keras.layers.Dense(units, use_bias=False, name="b")
    model = keras.Model(inputs, dense(inputs), name="matmul")
    dense.kernel.assign(np.random.default_rng(0).standard_normal((depth, units)) / depth**0.5)
    return to_tflite(model, path)


def measure_peak(path: str | os.PathLike, *, num_threads: int = 1, runs: int = 10) -> float:
    """Multiply-adds per second of the `matmul_model` file at `path`: the best of `runs`
    invokes after one warm-up, in GMAC/s. For a peak, the best run is the estimate; interleave
    `invoke` calls yourself (`tfdistill.bench.interleave`) to compare with a model."""
    import time

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be an integer >= 1, got {runs!r}.")
    interpreter = litert_interpreter(path, num_threads=num_threads)
    (detail,) = interpreter.get_input_details()
    _, rows, depth = (int(d) for d in detail["shape"])
    units = int(interpreter.get_output_details()[0]["shape"][-1])
    interpreter.set_tensor(detail["index"], np.ones(detail["shape"], np.float32))
    interpreter.invoke()
    best = min(_timed(interpreter.invoke, time.perf_counter) for _ in range(runs))
    return gmacs(matmul_macs(rows, depth, units), best)


def _timed(run, clock) -> float:
    start = clock()
    run()
    return clock() - start


def gmacs(macs: int, seconds: float) -> float:
    """Billions of multiply-adds per second."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}.")
    return macs / seconds / 1e9


__all__ = ["DEPTH", "ROWS", "UNITS", "gmacs", "matmul_macs", "matmul_model", "measure_peak"]
