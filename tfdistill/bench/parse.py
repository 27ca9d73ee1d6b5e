"""Reading the text output of TensorFlow Lite / LiteRT `benchmark_model` into a `BenchmarkResult`.

Takes both tool generations: the classic TFLite tool (`count=... first=... avg=...` lines in
microseconds and the "Inference timings in us" summary) and LiteRT's (a "BENCHMARK RESULTS" block
in milliseconds), with lines bare, prefixed by `INFO: ` (and LiteRT's `[file.h:72] `), or captured
through `adb logcat` in its brief, time or threadtime format. The op profiler's own
`Timings (microseconds): count=...` line is never taken as the benchmark's timing.
"""

from __future__ import annotations

import dataclasses
import math
import re

from tfdistill.bench.result import BenchmarkResult, OpProfileRow

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"  # digits split one way only

_PREFIX = re.compile(
    r"^(?:(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+)?[VDIWEF]/[^(:]*\(\s*\d+\):\s?"
    r"|\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*:\s?)?"
    r"(?:(?:INFO|WARNING|ERROR|VERBOSE|DEBUG):\s?)?"
    r"(?:\[[^\]\s]+:\d+\]\s?)?"
)
_STATS = re.compile(r"^count=\d+(?:\s+\w+=\S+)*\s*$")
_KEY_VALUE = re.compile(r"(\w+)=(\S+)")
_RUN_HEADER = re.compile(r"^Running benchmark for at least \d+ iterations")
_SESSION = re.compile(rf"^Initialized session in ({_NUMBER})\s*ms")
_SUMMARY = re.compile(r"^(?:Average )?[Ii]nference timings in us:\s*(.*)$")
_SUMMARY_ITEM = re.compile(rf"([A-Za-z][A-Za-z ()]*?):\s*({_NUMBER}|-?nan|-?inf)")
_MODEL_SIZE = re.compile(rf"^The input model file size \(MB\):\s*({_NUMBER})")
_THREADS = re.compile(r"^(?:#threads used for CPU inference|Num threads):\s*\[(-?\d+)\]")
_MEMORY = re.compile(
    rf"^(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
    rf"\s*init=({_NUMBER})\s+overall=({_NUMBER})"
)
_LITERT_MS = re.compile(
    rf"^(Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \(avg\)|"
    rf"Inference \(min\)|Inference \(max\)|Inference \(std\)):\s*({_NUMBER})(?:\s*ms)?"
    rf"(?:\s*\((\d+) runs\))?"
)
_LITERT_MEMORY = re.compile(rf"^(Init|Overall) footprint:\s*({_NUMBER})\s*MB")

_SUMMARY_KEYS = {
    "Init": "init_us",
    "First inference": "first_us",
    "Warmup (avg)": "warmup_avg_us",
    "Warmup": "warmup_avg_us",
    "Inference (avg)": "avg_us",
    "Inference": "avg_us",
}
_LITERT_KEYS = {
    "Model initialization": "init_us",
    "Warmup (first)": "first_us",
    "Warmup (avg)": "warmup_avg_us",
    "Inference (avg)": "avg_us",
    "Inference (min)": "min_us",
    "Inference (max)": "max_us",
    "Inference (std)": "std_us",
}
_STATS_KEYS = {
    "avg": "avg_us",
    "std": "std_us",
    "min": "min_us",
    "max": "max_us",
    "median": "p50_us",
    "p5": "p5_us",
    "p50": "p50_us",
    "p90": "p90_us",
    "p95": "p95_us",
    "p99": "p99_us",
}
_COLUMNS = {
    "node type": "node_type",
    "start": "start_ms",
    "first": "first_ms",
    "avg ms": "avg_ms",
    "%": "percent",
    "avg %": "percent",
    "cdf%": "cdf_percent",
    "cdf %": "cdf_percent",
    "mem kb": "mem_kb",
    "times called": "times_called",
    "count": "count",
    "name": "name",
}
_INT_COLUMNS = ("times_called", "count")


def strip_prefix(line: str) -> str:
    """The line without a logcat header, `INFO: `-style level or `[file.cc:12] ` location."""
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1)


def _number(text: str) -> float | None:
    value = float(text.rstrip("%"))
    return value if math.isfinite(value) else None


def _ms_to_us(text: str) -> float | None:
    """Milliseconds as microseconds; None for a number too large to be one."""
    return _scaled(text, 1000.0, round_to=6)


def _scaled(text: str, factor: float, round_to: int | None = None) -> float | None:
    """`text` times `factor` (rounded to `round_to` digits); None beyond float range."""
    value = float(text) * factor
    if not math.isfinite(value):
        return None
    return value if round_to is None else round(value, round_to)


def _stats(line: str) -> dict[str, float | None]:
    values = {}
    for key, value in _KEY_VALUE.findall(line):
        try:
            values[key] = _number(value)
        except ValueError:
            continue
    return values


def _table_columns(line: str) -> list[str] | None:
    names = re.findall(r"\[([^\]]+)\]", line)
    if not names or names[0].lower() != "node type":
        return None
    return [_COLUMNS.get(name.lower(), "") for name in names]


def _table_row(line: str, columns: list[str]) -> OpProfileRow | None:
    """One op-profiling row, split on tabs, or on spaces when tabs were lost in copying."""
    cells = [cell.strip() for cell in line.strip().split("\t")]
    if len(cells) != len(columns):
        numbers = len(columns) - 1 - (columns[-1] == "name")
        pattern = r"^\s*(.+?)" + rf"\s+({_NUMBER}%?)" * numbers
        pattern += r"\s+(.*?)\s*$" if columns[-1] == "name" else r"\s*$"
        match = re.match(pattern, line)
        if not match:
            return None
        cells = list(match.groups())
    values: dict[str, object] = {}
    for column, cell in zip(columns, cells, strict=True):
        if not column:
            continue
        if column in ("node_type", "name"):
            values[column] = cell
            continue
        try:
            number = _number(cell)
        except ValueError:
            return None
        values[column] = int(number) if column in _INT_COLUMNS and number is not None else number
    if "node_type" not in values or values.get("avg_ms") is None:
        return None
    return OpProfileRow(**values)


def tool_of_output(text: str) -> str:
    """Which `benchmark_model` printed `text`: "litert" when it holds LiteRT's "BENCHMARK
    RESULTS" banner (`BenchmarkLoggingListener` in LiteRT's `litert/tools/
    benchmark_litert_model.h`), else "classic". Meant for text that parses as a run."""
    lines = (strip_prefix(line) for line in text.splitlines())
    return "litert" if any("BENCHMARK RESULTS" in line for line in lines) else "classic"


def parse_benchmark_model_output(text: str) -> BenchmarkResult:
    """Reads one `benchmark_model` run's output (stdout and stderr, any line prefix).

    Latencies come out in microseconds whichever unit the tool printed. Where the same number is
    printed twice (LiteRT's `count=` lines in us and its ms block), the more precise one is kept.
    Raises `ValueError` when the text holds no benchmark timings, or more than one run.
    """
    lines = [strip_prefix(line) for line in text.splitlines()]
    _check_one_run(lines)
    reader = _Reader()
    for line in lines:
        reader.read(line)
    timings: dict[str, float | None] = {}
    for source in (reader.from_stats(), reader.summary, reader.session, reader.litert):
        for key, value in source.items():
            if timings.get(key) is None:
                timings[key] = value
    if timings.get("avg_us") is None:
        raise ValueError(
            "no benchmark timings found in benchmark_model output: expected an 'Inference timings "
            "in us' line, a 'count=...' line after 'Running benchmark for at least 50 iterations' "
            "or a 'BENCHMARK RESULTS' block (the op profiler's 'Timings (microseconds)' line does "
            "not count)"
        )
    count = timings.pop("count", None)
    return BenchmarkResult(
        source="benchmark_model",
        count=int(count) if count is not None else None,
        ops=reader.ops,
        op_types=reader.op_types,
        **timings,
        **reader.info,
    )


def _check_one_run(lines: list[str]) -> None:
    starts = sum(line.strip() == "STARTING!" for line in lines)
    summaries = sum(bool(_SUMMARY.match(line)) for line in lines)
    litert_blocks = sum("BENCHMARK RESULTS" in line for line in lines)
    if max(starts, summaries, litert_blocks) > 1:
        raise ValueError(
            f"benchmark_model output holds {max(starts, summaries, litert_blocks)} runs "
            f"({starts} 'STARTING!' lines, {summaries + litert_blocks} result summaries); "
            "pass one run's output at a time"
        )


@dataclasses.dataclass
class _Reader:
    """What the lines of one run's output said so far: each source of timings on its own (the
    classic summary line, LiteRT's ms block, the session's init time, the `count=` stats lines
    by run), the run's other facts, and the op profiler's tables."""

    summary: dict[str, float | None] = dataclasses.field(default_factory=dict)
    litert: dict[str, float | None] = dataclasses.field(default_factory=dict)
    session: dict[str, float | None] = dataclasses.field(default_factory=dict)
    info: dict[str, float | int | None] = dataclasses.field(default_factory=dict)
    stats_by_run: dict[int, dict[str, float | None]] = dataclasses.field(default_factory=dict)
    loose_stats: list[dict[str, float | None]] = dataclasses.field(default_factory=list)
    ops: list[OpProfileRow] = dataclasses.field(default_factory=list)
    op_types: list[OpProfileRow] = dataclasses.field(default_factory=list)
    runs_started: int = 0
    phase: str = "regular"
    table: str = ""
    columns: list[str] | None = None

    def read(self, line: str) -> None:
        stripped = line.strip()
        if self.columns is not None:
            row = _table_row(line, self.columns) if stripped else None
            if row is not None:
                if self.phase == "regular" and self.table == "run_order":
                    self.ops.append(row)
                elif self.phase == "regular" and self.table == "by_type":
                    self.op_types.append(row)
                return
            self.columns = None
        if not self._structure(stripped):
            self._value(stripped)

    def _structure(self, stripped: str) -> bool:
        """Profiler phases and tables, run headers and stats lines; whether `stripped` was one."""
        if "Profiling Info for Benchmark Initialization" in stripped:
            self.phase = "init"
        elif "Profiling Info for Regular Benchmark Runs" in stripped:
            self.phase = "regular"
        elif stripped.startswith("====") and stripped.endswith("===="):
            title = stripped.strip("= ").lower()
            tables = {"run order": "run_order", "summary by node type": "by_type"}
            self.table = tables.get(title, "")
        elif (names := _table_columns(stripped)) is not None:
            self.columns = names
        elif _RUN_HEADER.match(stripped):
            self.runs_started += 1
        elif _STATS.match(stripped):
            if self.runs_started:
                self.stats_by_run.setdefault(self.runs_started, _stats(stripped))
            else:
                self.loose_stats.append(_stats(stripped))
        else:
            return False
        return True

    def _value(self, stripped: str) -> None:
        """Summary, LiteRT, session, size, thread and memory lines."""
        if match := _SUMMARY.match(stripped):
            for key, value in _SUMMARY_ITEM.findall(match.group(1)):
                if key.strip() in _SUMMARY_KEYS:
                    self.summary[_SUMMARY_KEYS[key.strip()]] = _number(value)
        elif match := _LITERT_MS.match(stripped):
            self.litert[_LITERT_KEYS[match.group(1)]] = _ms_to_us(match.group(2))
            if match.group(1) == "Inference (avg)" and match.group(3):
                self.litert["count"] = int(match.group(3))
        elif match := _LITERT_MEMORY.match(stripped):
            key = "init_memory_mb" if match.group(1) == "Init" else "memory_mb"
            self.info[key] = _scaled(match.group(2), 1.0)
        elif match := _SESSION.match(stripped):
            self.session["init_us"] = _ms_to_us(match.group(1))
        elif match := _MODEL_SIZE.match(stripped):
            size = _scaled(match.group(1), 1e6)
            self.info["model_size_bytes"] = None if size is None else round(size)
        elif match := _THREADS.match(stripped):
            threads = int(match.group(1))
            if threads >= 1 and (stripped.startswith("#") or "num_threads" not in self.info):
                self.info["num_threads"] = threads
        elif match := _MEMORY.match(stripped):
            self.info["init_memory_mb"] = _scaled(match.group(1), 1.0)
            self.info["memory_mb"] = _scaled(match.group(2), 1.0)

    def from_stats(self) -> dict[str, float | None]:
        """The timings of the `count=` lines: the regular run's, and the warm-up's first and
        mean (by run header, else the last two loose lines)."""
        if self.stats_by_run:
            warmup, regular = self.stats_by_run.get(1, {}), self.stats_by_run.get(2, {})
        else:
            warmup = self.loose_stats[-2] if len(self.loose_stats) >= 2 else {}
            regular = self.loose_stats[-1] if self.loose_stats else {}
        timings: dict[str, float | None] = {}
        if regular:
            timings["count"] = regular.get("count")
            for key, name in _STATS_KEYS.items():
                if key in regular:
                    timings.setdefault(name, regular[key])
        if warmup:
            single = warmup.get("count") == 1
            timings["first_us"] = warmup.get("first", warmup.get("curr") if single else None)
            timings["warmup_avg_us"] = warmup.get("avg", warmup.get("curr") if single else None)
        return timings
