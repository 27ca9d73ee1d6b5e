"""`BenchmarkResult`: a `.tflite` model's latency, measured by LiteRT or by `benchmark_model`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SOURCES = ("litert", "benchmark_model")


@dataclass(frozen=True)
class OpProfileRow:
    """One row of `benchmark_model --enable_op_profiling` tables; times in milliseconds.

    Rows of the "Run Order" table have a `name` (`[tensor]:node_index`); rows of the "Summary by
    node type" table have `count` (nodes of that type) instead. Columns the table lacks are `None`
    (LiteRT's profiler, for one, prints no `[start]`).
    """

    node_type: str
    avg_ms: float
    percent: float | None = None
    cdf_percent: float | None = None
    times_called: int | None = None
    name: str | None = None
    first_ms: float | None = None
    start_ms: float | None = None
    mem_kb: float | None = None
    count: int | None = None


@dataclass
class BenchmarkResult:
    """Latencies in microseconds, sizes in bytes, memory in MB (2**20 bytes as the tools print).

    `count` timed runs give `avg_us`, `std_us` (population), `min_us`, `max_us` and the
    percentiles; `first_us` is the very first inference, `warmup_avg_us` the mean of the warm-up
    runs (the first included), `init_us` model loading and tensor allocation. `memory_mb` is how
    much the process's memory footprint grew over the whole benchmark (the tools' "overall"
    delta; for `benchmark_tflite`, the growth of peak RSS), `init_memory_mb` over initialization
    alone. A field the source does not report is `None`. `ops` holds the per-op "Run Order" rows
    of the timed runs, `op_types` the "Summary by node type" rows; both are empty without op
    profiling.
    """

    source: str
    count: int | None = None
    init_us: float | None = None
    first_us: float | None = None
    warmup_avg_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    p5_us: float | None = None
    p50_us: float | None = None
    p90_us: float | None = None
    p95_us: float | None = None
    p99_us: float | None = None
    model_size_bytes: int | None = None
    memory_mb: float | None = None
    init_memory_mb: float | None = None
    num_threads: int | None = None
    ops: list[OpProfileRow] = field(default_factory=list)
    op_types: list[OpProfileRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; `ops` and `op_types` become lists of dicts."""
        return dataclasses.asdict(self)

    def table(self, top_ops: int = 10) -> str:
        """Text for the terminal: the timings in ms, then the `top_ops` slowest ops if profiled."""
        threads = f", {self.num_threads} threads" if self.num_threads is not None else ""
        runs = f", {self.count} runs" if self.count is not None else ""
        lines = [f"source: {self.source}{threads}{runs}"]
        rows = [
            ("init", self.init_us),
            ("first inference", self.first_us),
            ("warm-up (avg)", self.warmup_avg_us),
            ("inference (avg)", self.avg_us),
            ("std", self.std_us),
            ("min", self.min_us),
            ("max", self.max_us),
            ("p5", self.p5_us),
            ("p50", self.p50_us),
            ("p90", self.p90_us),
            ("p95", self.p95_us),
            ("p99", self.p99_us),
        ]
        lines += [f"{name:<18} {v / 1000:>12.3f} ms" for name, v in rows if v is not None]
        if self.model_size_bytes is not None:
            lines.append(f"{'model size':<18} {self.model_size_bytes:>12,} bytes")
        if self.memory_mb is not None:
            lines.append(f"{'memory':<18} {self.memory_mb:>12.2f} MB")
        if self.ops:
            slowest = sorted(self.ops, key=lambda op: op.avg_ms, reverse=True)[:top_ops]
            header = f"{'node type':<24} {'avg ms':>10} {'%':>8}  name"
            lines += ["", f"slowest {len(slowest)} of {len(self.ops)} ops:", header]
            lines.append("-" * len(header))
            for op in slowest:
                percent = f"{op.percent:>7.3f}%" if op.percent is not None else f"{'':>8}"
                lines.append(f"{op.node_type:<24} {op.avg_ms:>10.3f} {percent}  {op.name or ''}")
        if self.op_types:
            header = f"{'node type':<24} {'nodes':>6} {'avg ms':>10} {'%':>8}"
            lines += ["", "by node type:", header, "-" * len(header)]
            for op in self.op_types:
                nodes = f"{op.count:>6}" if op.count is not None else f"{'':>6}"
                percent = f"{op.percent:>7.3f}%" if op.percent is not None else f"{'':>8}"
                lines.append(f"{op.node_type:<24} {nodes} {op.avg_ms:>10.3f} {percent}")
        return "\n".join(lines)
