"""`benchmark_tflite`: a `.tflite` model's latency on this machine, through LiteRT's interpreter;
`interleaved_tflite`: several files timed round-robin, to compare them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfdistill.bench.interleave import Interleaved, interleave
from tfdistill.bench.result import BenchmarkResult
from tfdistill.export.interpreter import litert_interpreter

PERCENTILES = (5, 50, 90, 95, 99)


def _peak_rss_mb() -> float | None:
    """The process's peak resident set size so far, in MB; `None` where unknown."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def random_input(detail: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Random data for one input (`get_input_details()` entry) of its shape and dtype.

    Floats are uniform in [0, 1); integers (quantized inputs included) span their dtype's range.
    """
    dtype, shape = np.dtype(detail["dtype"]), tuple(int(d) for d in detail["shape"])
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.floating):
        return rng.random(size=shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    raise ValueError(f"input {detail.get('name')!r} has dtype {dtype}, which has no random data")


def benchmark_tflite(
    path: str | os.PathLike,
    *,
    num_threads: int | None = None,
    warmup_runs: int = 1,
    num_runs: int = 50,
    use_xnnpack: bool = True,
    seed: int = 0,
) -> BenchmarkResult:
    """Times `num_runs` invokes of the model at `path` after `warmup_runs` warm-up invokes.

    `init_us` covers interpreter creation and `allocate_tensors` (where XNNPACK is applied);
    `first_us` is the first invoke (the first warm-up run, or the first timed run without warm-up).
    Percentiles interpolate linearly between the `num_runs` samples. Inputs are set once, random
    (`random_input`, seeded), as `benchmark_model` does. `memory_mb` is how much the process's
    peak RSS grew, `None` where that is unknown or hidden by an earlier, higher peak.
    `num_threads=None` leaves the interpreter's default, one thread in LiteRT 2.x.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file not found: {str(path)!r}")
    if num_runs < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    if warmup_runs < 0:
        raise ValueError(f"warmup_runs must be >= 0, got {warmup_runs}")
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be None or an integer >= 1, got {num_threads!r}")

    peak_before = _peak_rss_mb()
    start = time.perf_counter_ns()
    interpreter = litert_interpreter(path, num_threads=num_threads, use_xnnpack=use_xnnpack)
    init_ns = time.perf_counter_ns() - start

    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(detail, rng))

    def timed_invoke() -> int:
        start = time.perf_counter_ns()
        interpreter.invoke()
        return time.perf_counter_ns() - start

    warmup = np.array([timed_invoke() for _ in range(warmup_runs)], dtype=np.float64) / 1e3
    samples = np.array([timed_invoke() for _ in range(num_runs)], dtype=np.float64) / 1e3
    peak_after = _peak_rss_mb()
    growth = None if peak_before is None or peak_after is None else peak_after - peak_before

    p5, p50, p90, p95, p99 = (float(v) for v in np.percentile(samples, PERCENTILES))
    return BenchmarkResult(
        source="litert",
        count=num_runs,
        init_us=init_ns / 1e3,
        first_us=float(warmup[0] if warmup.size else samples[0]),
        warmup_avg_us=float(warmup.mean()) if warmup.size else None,
        avg_us=float(samples.mean()),
        std_us=float(samples.std()),
        min_us=float(samples.min()),
        max_us=float(samples.max()),
        p5_us=p5,
        p50_us=p50,
        p90_us=p90,
        p95_us=p95,
        p99_us=p99,
        model_size_bytes=path.stat().st_size,
        memory_mb=growth if growth is not None and growth > 0 else None,
        num_threads=num_threads if num_threads is not None else 1,
    )


def interleaved_tflite(
    paths: dict[str, str | os.PathLike],
    *,
    num_threads: int | None = None,
    rounds: int = 50,
    calls: int = 10,
    seed: int = 0,
) -> Interleaved:
    """`paths` {name: `.tflite` file} timed round-robin in one process (`interleave`): each round
    `calls` invokes of each file, after one warm-up call; a round's sample is its median
    invoke's seconds (a preempted invoke, milliseconds on a shared core, would otherwise weigh
    more on a slow file's rounds than on a fast one's). Inputs as in `benchmark_tflite`.
    Compare them by `Interleaved.paired_ratio`, which cancels the load of a shared machine that
    lasts a round."""
    rng = np.random.default_rng(seed)
    workloads = {}
    for name, path in paths.items():
        if not Path(path).is_file():
            raise ValueError(f"model file not found: {str(path)!r}")
        interpreter = litert_interpreter(path, num_threads=num_threads)
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], random_input(detail, rng))
        workloads[name] = interpreter.invoke
    return interleave(workloads, rounds=rounds, calls=calls, per_call="median")
