"""Latency of `.tflite` models: on this machine through LiteRT, on a phone through adb and
`benchmark_model`, and from `benchmark_model`'s printed output. Times in microseconds."""

from tfdistill.bench import android
from tfdistill.bench.litert import benchmark_tflite
from tfdistill.bench.parse import parse_benchmark_model_output
from tfdistill.bench.result import BenchmarkResult, OpProfileRow

__all__ = [
    "BenchmarkResult",
    "OpProfileRow",
    "android",
    "benchmark_tflite",
    "parse_benchmark_model_output",
]
