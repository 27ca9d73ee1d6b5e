"""Latency of `.tflite` models: on this machine through LiteRT, on a phone through adb and
`benchmark_model`, and from `benchmark_model`'s printed output. Times in microseconds.
`interleave` times workloads round-robin; `peak` measures the machine's float32 peak;
`machine.describe()` says what a benchmark ran on."""

from tfdistill.bench import android, machine, peak
from tfdistill.bench.interleave import Interleaved, interleave, with_cpu
from tfdistill.bench.litert import benchmark_tflite, interleaved_tflite
from tfdistill.bench.parse import parse_benchmark_model_output
from tfdistill.bench.result import BenchmarkResult, OpProfileRow

__all__ = [
    "BenchmarkResult",
    "Interleaved",
    "OpProfileRow",
    "android",
    "benchmark_tflite",
    "interleave",
    "interleaved_tflite",
    "with_cpu",
    "machine",
    "parse_benchmark_model_output",
    "peak",
]
