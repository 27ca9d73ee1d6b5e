"""tfdistill.bench: the benchmark_model parser on recorded transcripts, LiteRT timing here, and the
adb driver and shell script through a stand-in adb (`fake_adb.py`) that replays the transcripts."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdistill import bench
from tfdistill.bench import BenchmarkResult, OpProfileRow, android, parse_benchmark_model_output
from tfdistill.bench.litert import random_input
from tfdistill.export.interpreter import litert_interpreter

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
FAKE_ADB = Path(__file__).parent / "fake_adb.py"
SCRIPT = Path(__file__).parents[1] / "mobile" / "android" / "benchmark.sh"

ARM = "arm_gcp_axion_percentiles.txt"
LITERT = "litert_v2_compiledmodel_blazeface_linux.txt"
RISCV = "nobuotsukamoto_riscv_op_profiling.txt"
LEGACY = "official_readme_legacy_tail.txt"
TI = "ti_am62x_cpu_and_xnnpack.txt"

# Read by hand from each file. Sizes: the tool prints MB as bytes / 1e6 to 6 digits.
EXPECTED = {
    ARM: dict(
        count=337, init_us=6395, first_us=2761, warmup_avg_us=3243.58, avg_us=2942.27,
        std_us=1190, min_us=2605, max_us=20356, p5_us=2647, p50_us=2781, p90_us=None,
        p95_us=3169, p99_us=None, model_size_bytes=13_919_300, memory_mb=40.8281,
        init_memory_mb=39.4531, num_threads=4, ops=0, op_types=0,
    ),
    LITERT: dict(
        count=1054, init_us=5757, first_us=2125, warmup_avg_us=949.861, avg_us=947.132,
        std_us=23, min_us=910, max_us=1102, p5_us=915, p50_us=942, p90_us=None, p95_us=991,
        p99_us=None, model_size_bytes=229_746, memory_mb=7.07, init_memory_mb=4.06,
        num_threads=4, ops=0, op_types=0,
    ),
    RISCV: dict(
        count=50, init_us=17187, first_us=3512391, warmup_avg_us=3512391, avg_us=2.95034e6,
        std_us=109798, min_us=2727568, max_us=3189954, p5_us=None, p50_us=None, p90_us=None,
        p95_us=None, p99_us=None, model_size_bytes=16_900_800, memory_mb=46.0859,
        init_memory_mb=4.21094, num_threads=4, ops=31, op_types=5,
    ),
    LEGACY: dict(
        count=None, init_us=38467, first_us=None, warmup_avg_us=83235, avg_us=79760.9,
        std_us=None, min_us=None, max_us=None, p5_us=None, p50_us=None, p90_us=None,
        p95_us=None, p99_us=None, model_size_bytes=None, memory_mb=None, init_memory_mb=None,
        num_threads=None, ops=0, op_types=5,
    ),
    TI: dict(
        count=50, init_us=6418, first_us=1041765, warmup_avg_us=1041765, avg_us=971535,
        std_us=39112, min_us=911877, max_us=1112273, p5_us=None, p50_us=None, p90_us=None,
        p95_us=None, p99_us=None, model_size_bytes=67_312_800, memory_mb=109.848,
        init_memory_mb=6.14844, num_threads=4, ops=0, op_types=0,
    ),
}  # fmt: skip


def fixture_text(name: str) -> str:
    """The file as stored, annotations included: the parser must not trip on them."""
    return (FIXTURES / name).read_text()


def tool_lines(name: str) -> list[str]:
    """The tool's own output: the file without its leading `# ` annotation lines."""
    lines = fixture_text(name).splitlines()
    while lines and lines[0].startswith("# "):
        lines.pop(0)
    return lines


# --- the parser ------------------------------------------------------------------------------


def test_every_fixture_has_hand_read_values():
    assert sorted(p.name for p in FIXTURES.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_fixture(name):
    result = parse_benchmark_model_output(fixture_text(name))
    expected = dict(EXPECTED[name])
    assert len(result.ops) == expected.pop("ops")
    assert len(result.op_types) == expected.pop("op_types")
    assert result.source == "benchmark_model"
    for field, value in expected.items():
        assert getattr(result, field) == value, field


def test_parse_op_profiling_rows():
    result = parse_benchmark_model_output(fixture_text(RISCV))
    assert result.ops[0] == OpProfileRow(
        node_type="CONV_2D",
        avg_ms=60.957,
        percent=2.066,
        cdf_percent=2.066,
        times_called=1,
        name="[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0",
        first_ms=87.754,
        start_ms=0.066,
        mem_kb=0.0,
    )
    slowest = max(result.ops, key=lambda op: op.avg_ms)
    assert slowest.name == "[MobilenetV1/MobilenetV1/Conv2d_5_pointwise/Relu6]:10"
    assert (slowest.avg_ms, slowest.percent, slowest.start_ms) == (277.374, 9.403, 898.426)
    last = result.ops[-1]
    assert (last.node_type, last.avg_ms, last.cdf_percent) == ("SOFTMAX", 0.233, 100.0)
    # The initialization profile (AllocateTensors) and "Top by Computation Time" are not ops.
    assert "AllocateTensors" not in {op.node_type for op in result.ops}
    assert [op.name.rsplit(":", 1)[1] for op in result.ops] == [str(i) for i in range(31)]
    by_type = {row.node_type: row for row in result.op_types}
    assert by_type["CONV_2D"] == OpProfileRow(
        node_type="CONV_2D",
        avg_ms=2651.853,
        percent=89.897,
        cdf_percent=89.897,
        times_called=15,
        mem_kb=0.0,
        count=15,
    )
    assert (by_type["SQUEEZE"].count, by_type["SQUEEZE"].avg_ms) == (1, 0.016)
    for node_type, row in by_type.items():
        assert sum(op.node_type == node_type for op in result.ops) == row.count


def test_parse_legacy_summary_by_node_type():
    result = parse_benchmark_model_output(fixture_text(LEGACY))
    assert [row.node_type for row in result.op_types] == [
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "SOFTMAX",
        "RESHAPE",
        "AVERAGE_POOL_2D",
    ]
    conv = result.op_types[0]
    assert (conv.count, conv.avg_ms, conv.percent, conv.times_called) == (15, 1.406, 89.27, 0)


def test_parse_litert_milliseconds_block_alone():
    """Without the `count=` lines in us, LiteRT's block gives the numbers, in ms, as us."""
    lines = [
        line
        for line in tool_lines(LITERT)
        if "count=" not in line and "Initialized session" not in line
    ]
    result = parse_benchmark_model_output("\n".join(lines))
    assert result.init_us == 5760
    assert result.first_us == 2120
    assert result.warmup_avg_us == 950
    assert result.avg_us == 950
    assert result.count == 1054
    assert (result.min_us, result.max_us, result.std_us) == (910, 1100, 20)
    assert result.p50_us is None and result.p95_us is None
    assert (result.memory_mb, result.init_memory_mb) == (7.07, 4.06)
    precise = parse_benchmark_model_output(fixture_text(LITERT))
    for field in ("init_us", "first_us", "warmup_avg_us", "avg_us", "min_us", "max_us", "std_us"):
        assert abs(getattr(precise, field) - getattr(result, field)) <= 5, field


LOGCAT_FORMS = {
    "time": lambda line: f"07-08 15:34:26.201 I/tflite  ( 5395): {line}",
    "brief": lambda line: f"I/tflite  ( 5395): {line}",
    "threadtime": lambda line: f"07-08 15:34:26.201  5395  5395 I tflite  : {line}",
    "time, level moved": lambda line: (
        "07-08 15:34:26.201 I/tflite  ( 5395): " + re.sub(r"^(INFO|WARNING|ERROR): ", "", line)
    ),
}


@pytest.mark.parametrize("form", sorted(LOGCAT_FORMS))
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_logcat_prefixed_lines_parse_the_same(name, form):
    prefixed = "\n".join(LOGCAT_FORMS[form](line) for line in tool_lines(name))
    assert parse_benchmark_model_output(prefixed) == parse_benchmark_model_output(
        fixture_text(name)
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_crlf_line_endings_parse_the_same(name):
    text = "\r\n".join(tool_lines(name)) + "\r\n"
    assert parse_benchmark_model_output(text) == parse_benchmark_model_output(fixture_text(name))


def test_profiler_table_without_start_column():
    """LiteRT's --use_profiler tables have no [start]: drop that column from the real tables."""
    lines, start, width = [], None, 0
    for line in tool_lines(RISCV):
        cells = line.split("\t")
        names = [cell.strip() for cell in cells]
        if "[node type]" in names:
            start = names.index("[start]") if "[start]" in names else None
            width = len(cells)
        if start is not None and len(cells) == width:
            cells.pop(start)
        lines.append("\t".join(cells))
    assert not any("[start]" in line for line in lines)
    result = parse_benchmark_model_output("\n".join(lines))
    plain = parse_benchmark_model_output(fixture_text(RISCV))
    assert len(result.ops) == 31
    assert all(op.start_ms is None for op in result.ops)
    assert [(op.node_type, op.name, op.avg_ms, op.first_ms) for op in result.ops] == [
        (op.node_type, op.name, op.avg_ms, op.first_ms) for op in plain.ops
    ]
    assert result.op_types == plain.op_types


def test_profiler_table_with_tabs_turned_to_spaces():
    text = "\n".join(line.replace("\t", "    ") for line in tool_lines(RISCV))
    assert parse_benchmark_model_output(text) == parse_benchmark_model_output(fixture_text(RISCV))


@pytest.mark.parametrize(
    ("name", "drop"),
    [
        (LEGACY, "Average inference timings"),
        (RISCV, "^count=|Inference timings in us"),
    ],
)
def test_op_profiler_timings_line_alone_is_rejected(name, drop):
    lines = [line for line in tool_lines(name) if not re.search(drop, line)]
    assert any(line.startswith("Timings (microseconds): count=") for line in lines)
    with pytest.raises(ValueError, match="no benchmark timings found"):
        parse_benchmark_model_output("\n".join(lines))


def test_output_cut_off_after_warmup_is_rejected():
    """A crash during the timed runs leaves only warm-up timings: not taken as the result."""
    lines = tool_lines(TI)
    cut = [i for i, line in enumerate(lines) if "Running benchmark" in line][-1]
    with pytest.raises(ValueError, match="no benchmark timings found"):
        parse_benchmark_model_output("\n".join(lines[: cut + 1]))


def test_two_runs_in_one_text_are_rejected():
    with pytest.raises(ValueError, match="one run's output at a time"):
        parse_benchmark_model_output(fixture_text(TI) + fixture_text(ARM))


def test_empty_text_is_rejected():
    with pytest.raises(ValueError, match="no benchmark timings found"):
        parse_benchmark_model_output("")


def test_result_to_dict_and_table():
    result = parse_benchmark_model_output(fixture_text(RISCV))
    as_dict = result.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["avg_us"] == 2.95034e6 and len(as_dict["ops"]) == 31
    assert as_dict["ops"][0]["name"] == "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0"
    table = result.table(top_ops=3)
    assert "source: benchmark_model, 4 threads, 50 runs" in table
    assert re.search(r"inference \(avg\)\s+2950\.340 ms", table)
    assert "slowest 3 of 31 ops:" in table
    assert "Conv2d_5_pointwise" in table and "Conv2d_0/Relu6" not in table
    assert re.search(r"CONV_2D\s+15\s+2651\.853\s+89\.897%", table)
    with pytest.raises(ValueError, match="source must be one of"):
        BenchmarkResult(source="phone")


# --- benchmark_tflite ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("use_xnnpack", [True, False])
def test_benchmark_tflite(tflite_model, use_xnnpack):
    result = bench.benchmark_tflite(tflite_model, num_runs=5, use_xnnpack=use_xnnpack)
    assert result.source == "litert" and result.count == 5 and result.num_threads == 1
    assert result.init_us > 0 and result.first_us > 0 and result.warmup_avg_us > 0
    assert 0 < result.min_us <= result.p5_us <= result.p50_us <= result.p90_us
    assert result.p90_us <= result.p95_us <= result.p99_us <= result.max_us
    assert result.min_us <= result.avg_us <= result.max_us
    assert result.std_us >= 0
    assert result.model_size_bytes == tflite_model.stat().st_size
    assert result.memory_mb is None or result.memory_mb > 0
    assert result.ops == [] and "inference (avg)" in result.table()


def test_benchmark_tflite_threads_and_no_warmup(tflite_model):
    result = bench.benchmark_tflite(tflite_model, num_threads=2, warmup_runs=0, num_runs=3)
    assert result.num_threads == 2 and result.count == 3
    assert result.warmup_avg_us is None and result.first_us > 0


@pytest.mark.parametrize("use_xnnpack", [True, False])
def test_use_xnnpack_false_really_disables_the_delegate(tflite_model, use_xnnpack):
    interpreter = litert_interpreter(tflite_model, num_threads=1, use_xnnpack=use_xnnpack)
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert ("DELEGATE" in ops) == use_xnnpack


def test_benchmark_tflite_bad_inputs(tmp_path, tflite_model):
    with pytest.raises(ValueError, match="model file not found: .*missing.tflite"):
        bench.benchmark_tflite(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="could not load .*junk.tflite"):
        bench.benchmark_tflite(junk)
    with pytest.raises(ValueError, match="num_runs must be >= 1"):
        bench.benchmark_tflite(tflite_model, num_runs=0)
    with pytest.raises(ValueError, match="num_threads"):
        bench.benchmark_tflite(tflite_model, num_threads=0)


def test_random_input_spans_the_dtype():
    rng = np.random.default_rng(0)
    x = random_input({"name": "q", "dtype": np.int8, "shape": np.array([1, 64, 64])}, rng)
    assert x.dtype == np.int8 and x.shape == (1, 64, 64)
    assert x.min() == -128 and x.max() == 127
    f = random_input({"name": "f", "dtype": np.float32, "shape": [2, 3]}, rng)
    assert f.dtype == np.float32 and 0 <= f.min() and f.max() < 1
    with pytest.raises(ValueError, match="no random data"):
        random_input({"name": "s", "dtype": np.bytes_, "shape": [1]}, rng)


# --- the adb driver, through the stand-in adb ------------------------------------------------

REMOTE = r"/data/local/tmp/tfdistill-(?P<token>[0-9a-f]{8})-"


class FakeAdb:
    """The stand-in adb's executable, its /data/local/tmp and its log of calls."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.path = tmp_path / "bin" / "adb"
        self.path.parent.mkdir()
        self.path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ADB}" "$@"\n')
        self.path.chmod(0o755)
        self.device_dir = tmp_path / "device"
        self.device_dir.mkdir()
        self.log = tmp_path / "adb_calls.jsonl"
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("FAKE_ADB_DEVICE_DIR", str(self.device_dir))
        monkeypatch.setenv("FAKE_ADB_LOG", str(self.log))
        self.use(TI, "one")

    def use(self, transcript: str, scenario: str) -> None:
        self.monkeypatch.setenv("FAKE_ADB_TRANSCRIPT", str(FIXTURES / transcript))
        self.monkeypatch.setenv("FAKE_ADB_SCENARIO", scenario)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def left_on_device(self) -> list[str]:
        return sorted(p.name for p in self.device_dir.iterdir())


@pytest.fixture
def adb(tmp_path, monkeypatch):
    return FakeAdb(tmp_path, monkeypatch)


@pytest.fixture
def files(tmp_path):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF stand-in for the arm64 benchmark_model")
    model = tmp_path / "student.tflite"
    model.write_bytes(b"stand-in model bytes")
    return binary, model


def run_flags(
    graph: str, threads=1, xnnpack="true", op_profiling="false", tool="classic", gpu="false"
) -> str:
    """The command line's flags, written out per tool; "auto" is both tools' flags."""
    classic = (
        f"--graph={graph} --num_threads={threads} --use_xnnpack={xnnpack} --use_gpu={gpu} "
        f"--use_nnapi=false --num_runs=50 --warmup_runs=1 --enable_op_profiling={op_profiling}"
    )
    if tool == "litert":
        return (
            f"--graph={graph} --num_threads={threads} --use_cpu=true --use_gpu={gpu} "
            f"--use_npu=false --num_runs=50 --warmup_runs=1 --use_profiler={op_profiling}"
        )
    if tool == "auto":
        return f"{classic} --use_cpu=true --use_npu=false --use_profiler={op_profiling}"
    return classic


def test_android_benchmark_happy_path(adb, files):
    binary, model = files
    result = android.benchmark(model, benchmark_binary=binary, adb=str(adb.path))
    assert result == parse_benchmark_model_output(fixture_text(TI))
    calls = adb.calls()
    token = re.search(REMOTE, calls[1][4]).group("token")
    remote_binary = f"/data/local/tmp/tfdistill-{token}-benchmark_model"
    remote_model = f"/data/local/tmp/tfdistill-{token}-student.tflite"
    dev = ["-s", "FAKE0001"]
    flags = run_flags(remote_model, tool="auto")
    assert calls == [
        ["devices"],
        [*dev, "push", str(binary), remote_binary],
        [*dev, "shell", f"chmod 755 {remote_binary}"],
        [*dev, "push", str(model), remote_model],
        [*dev, "shell", f"{remote_binary} {flags}; echo tfdistill_exit=$?"],
        [*dev, "shell", f"rm -f {remote_binary} {remote_model}"],
    ]
    assert adb.left_on_device() == []


def test_android_benchmark_serial_taskset_and_op_profiling(adb, files, tmp_path):
    binary, _ = files
    model = tmp_path / "my student (v2).tflite"
    model.write_bytes(b"stand-in")
    adb.use(RISCV, "two")
    result = android.benchmark(
        model,
        benchmark_binary=binary,
        adb=str(adb.path),
        serial="FAKE0002",
        num_threads=4,
        use_xnnpack=False,
        enable_op_profiling=True,
        taskset=0xF0,
    )
    assert result == parse_benchmark_model_output(fixture_text(RISCV))
    assert len(result.ops) == 31
    calls = adb.calls()
    assert calls[0] == ["devices"]
    assert all(call[:2] == ["-s", "FAKE0002"] for call in calls[1:])
    run = calls[4][3]
    remote_model = re.search(REMOTE + r"my_student__v2_\.tflite", run).group(0)
    flags = run_flags(remote_model, threads=4, xnnpack="false", op_profiling="true", tool="auto")
    assert re.fullmatch(
        rf"taskset f0 {REMOTE}benchmark_model {re.escape(flags)}; echo tfdistill_exit=\$\?", run
    )
    assert calls[-1][3].startswith("rm -f ") and adb.left_on_device() == []


def test_android_benchmark_ignores_offline_devices_in_the_count(adb, files):
    binary, model = files
    adb.use(TI, "offline_extra")
    result = android.benchmark(model, benchmark_binary=binary, adb=str(adb.path))
    assert result.avg_us == 971535
    assert all(call[:2] == ["-s", "FAKE0001"] for call in adb.calls()[1:])


@pytest.mark.parametrize(
    ("scenario", "serial", "message"),
    [
        ("none", None, r"no Android device found: connect a phone"),
        (
            "unauthorized",
            None,
            r"no Android device found.*not ready: FAKE0001 \(unauthorized\).*Allow USB debugging",
        ),
        ("two", None, r"2 devices attached \(FAKE0001, FAKE0002\); pass serial="),
        ("two", "NOPE", r"device NOPE not found; adb devices lists: FAKE0001 \(device\)"),
        ("unauthorized", "FAKE0001", r"device FAKE0001 is unauthorized"),
    ],
)
def test_android_benchmark_device_errors(adb, files, scenario, serial, message):
    binary, model = files
    adb.use(TI, scenario)
    with pytest.raises(android.AndroidBenchmarkError, match=message):
        android.benchmark(model, benchmark_binary=binary, adb=str(adb.path), serial=serial)
    assert adb.calls() == [["devices"]]


def test_android_benchmark_adb_missing(files, tmp_path):
    binary, model = files
    with pytest.raises(android.AndroidBenchmarkError, match="adb not found"):
        android.benchmark(model, benchmark_binary=binary, adb=str(tmp_path / "no-adb"))


def test_android_benchmark_push_failure_cleans_up(adb, files):
    binary, model = files
    adb.use(TI, "push_fails")
    with pytest.raises(
        android.AndroidBenchmarkError, match="(?s)push .* failed.*Permission denied"
    ):
        android.benchmark(model, benchmark_binary=binary, adb=str(adb.path))
    calls = adb.calls()
    assert [call[2] for call in calls[1:]] == ["push", "shell"]
    assert calls[-1][3] == f"rm -f {calls[1][4]}"


def test_android_benchmark_tool_crash(adb, files):
    binary, model = files
    adb.use(TI, "crash")
    with pytest.raises(android.AndroidBenchmarkError) as error:
        android.benchmark(model, benchmark_binary=binary, adb=str(adb.path))
    message = str(error.value)
    assert "exited with status 139 on FAKE0001 (killed by a signal)" in message
    assert "Running benchmark for at least 50 iterations" in message
    assert "Segmentation fault" in message and "tfdistill_exit" not in message
    calls = adb.calls()
    assert "benchmark_model --graph=" in calls[-2][3]
    assert calls[-1][3].startswith("rm -f ") and adb.left_on_device() == []


def test_android_benchmark_no_results(adb, files):
    binary, model = files
    adb.use(TI, "no_results")
    with pytest.raises(
        android.AndroidBenchmarkError, match="(?s)printed no results.*Initialized session"
    ):
        android.benchmark(model, benchmark_binary=binary, adb=str(adb.path))
    assert adb.left_on_device() == []


def test_android_benchmark_timeout_cleans_up(adb, files):
    binary, model = files
    with pytest.raises(android.AndroidBenchmarkError, match="did not finish within"):
        android.benchmark(model, benchmark_binary=binary, adb=str(adb.path), timeout_s=1e-3)
    assert adb.calls()[-1][3].startswith("rm -f ") and adb.left_on_device() == []


@pytest.mark.parametrize(
    ("step", "how", "during", "said"),
    [
        ("push_binary", "gone", "the push of benchmark_model", "no devices/emulators found"),
        ("push_model", "offline", "the push of student.tflite", "error: device offline"),
        ("chmod", "unplugged", "the chmod of benchmark_model", "device 'FAKE0001' not found"),
        ("run", "offline", "the benchmark run", "error: device offline"),
        ("run", "unplugged", "the benchmark run", "device 'FAKE0001' not found"),
    ],
)
def test_a_phone_that_disconnects_is_one_clear_error(adb, files, step, how, during, said):
    """The phone goes away at `step`: one line naming the step and what adb said, and the way
    out. The pushed files go where the phone is back for the cleanup; where it is not, the
    cleanup warns (naming them) and the first error stands."""
    binary, model = files
    adb.monkeypatch.setenv("FAKE_ADB_DISCONNECT", f"{step}:{how}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(android.AndroidBenchmarkError) as error:
            android.benchmark(model, benchmark_binary=binary, adb=str(adb.path))
    message = str(error.value)
    assert message == (
        f"the phone FAKE0001 disconnected during {during} (adb: {said}); reconnect it, "
        "check that 'adb devices' lists it as 'device', and rerun"
    )
    assert adb.calls()[-1][3].startswith("rm -f ")
    left = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if how == "offline":
        assert adb.left_on_device() == [] and left == []
    else:
        assert len(left) == 1 and "(it is disconnected); once it is back: adb" in left[0]
        assert all(name in left[0] for name in adb.left_on_device())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_runs=0), "num_runs must be an integer >= 1, got 0"),
        (dict(warmup_runs=-1), "warmup_runs must be an integer >= 0"),
        (dict(num_threads=0), "num_threads must be an integer >= 1"),
        (dict(taskset="cpu4"), "taskset must be a hex CPU mask"),
        (dict(model_path="missing.tflite"), "model file not found: 'missing.tflite'"),
        (dict(benchmark_binary="nope"), "benchmark_model binary not found: 'nope'"),
    ],
)
def test_android_benchmark_argument_errors(adb, files, kwargs, message):
    binary, model = files
    arguments = dict(model_path=model, benchmark_binary=binary, adb=str(adb.path)) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        android.benchmark(**arguments)
    assert adb.calls() == []


# --- the two tools: classic TFLite and LiteRT's CompiledModel benchmark_model -----------------


def tool_run(adb: FakeAdb) -> str:
    """The tool's command line of the last benchmark run, before `; echo`."""
    run = [c for c in adb.calls() if c[2:3] == ["shell"] and "--graph=" in c[3]][-1][3]
    return run.split("; echo ")[0]


def remote_graph(run: str) -> str:
    return re.search(r"--graph=(\S+)", run).group(1)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tool_of_output(name):
    tool = "litert" if name == LITERT else "classic"
    assert bench.parse.tool_of_output(fixture_text(name)) == tool
    logcat = "\n".join(LOGCAT_FORMS["threadtime"](line) for line in tool_lines(name))
    assert bench.parse.tool_of_output(logcat) == tool


def test_litert_tool_flags_and_latencies(adb, files):
    binary, model = files
    adb.use(LITERT, "one")
    result = android.benchmark(
        model,
        benchmark_binary=binary,
        adb=str(adb.path),
        num_threads=4,
        use_gpu=True,
        enable_op_profiling=True,
        taskset="f0",
        tool="litert",
    )
    run = tool_run(adb)
    flags = run_flags(remote_graph(run), threads=4, gpu="true", op_profiling="true", tool="litert")
    assert re.fullmatch(rf"taskset f0 {REMOTE}benchmark_model {re.escape(flags)}", run)
    assert (result.count, result.avg_us, result.p50_us, result.p95_us) == (1054, 947.132, 942, 991)
    assert (result.init_us, result.first_us, result.warmup_avg_us) == (5757, 2125, 949.861)
    assert (result.min_us, result.max_us, result.std_us) == (910, 1102, 23)
    assert android.detected_tool(binary) is None
    assert adb.left_on_device() == []


def test_litert_tool_npu(adb, files):
    binary, model = files
    adb.use(LITERT, "one")
    android.benchmark(
        model, benchmark_binary=binary, adb=str(adb.path), use_npu=True, tool="litert"
    )
    run = tool_run(adb)
    flags = run_flags(remote_graph(run), tool="litert").replace("--use_npu=false", "--use_npu=true")
    assert run.endswith(f"benchmark_model {flags}")


def test_classic_tool_flags_and_latencies(adb, files):
    binary, model = files
    result = android.benchmark(
        model, benchmark_binary=binary, adb=str(adb.path), use_nnapi=True, tool="classic"
    )
    run = tool_run(adb)
    flags = run_flags(remote_graph(run)).replace("--use_nnapi=false", "--use_nnapi=true")
    assert run.endswith(f"benchmark_model {flags}")
    assert (result.count, result.avg_us, result.std_us) == (50, 971535, 39112)
    assert (result.min_us, result.max_us, result.first_us) == (911877, 1112273, 1041765)


@pytest.mark.parametrize(("name", "tool"), [(LITERT, "litert"), (TI, "classic"), (ARM, "classic")])
def test_auto_detects_the_tool_once_per_binary(adb, files, name, tool):
    binary, model = files
    adb.use(name, "one")
    first = android.benchmark(model, benchmark_binary=binary, adb=str(adb.path), num_threads=2)
    run = tool_run(adb)
    assert run.endswith(f"benchmark_model {run_flags(remote_graph(run), threads=2, tool='auto')}")
    assert android.detected_tool(binary) == tool
    again = android.benchmark(model, benchmark_binary=binary, adb=str(adb.path), tool="auto")
    run = tool_run(adb)
    assert run.endswith(f"benchmark_model {run_flags(remote_graph(run), tool=tool)}")
    assert first.avg_us == again.avg_us == EXPECTED[name]["avg_us"]
    assert first.count == EXPECTED[name]["count"]
    binary.write_bytes(b"\x7fELF another build of benchmark_model")
    assert android.detected_tool(binary) is None
    android.benchmark(model, benchmark_binary=binary, adb=str(adb.path))
    run = tool_run(adb)
    assert run.endswith(f"benchmark_model {run_flags(remote_graph(run), tool='auto')}")


def test_auto_detection_then_a_setting_the_tool_lacks(adb, files):
    binary, model = files
    adb.use(LITERT, "one")
    kwargs = dict(benchmark_binary=binary, adb=str(adb.path), use_nnapi=True)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "use_nnapi=True is not a setting of LiteRT's benchmark_model: its accelerators are "
            "cpu (XNNPACK), gpu, npu (benchmark_model is litert, read from its output)"
        ),
    ):
        android.benchmark(model, **kwargs)
    assert adb.left_on_device() == []
    calls = len(adb.calls())
    with pytest.raises(ValueError, match="use_nnapi=True is not a setting of LiteRT's"):
        android.benchmark(model, **kwargs)
    assert len(adb.calls()) == calls


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(tool="litert", use_nnapi=True),
            "use_nnapi=True is not a setting of LiteRT's benchmark_model: its accelerators are "
            "cpu (XNNPACK), gpu, npu",
        ),
        (
            dict(tool="litert", use_xnnpack=False),
            "use_xnnpack=False is not a setting of LiteRT's benchmark_model: its accelerators "
            "are cpu (XNNPACK), gpu, npu",
        ),
        (
            dict(tool="classic", use_npu=True),
            "use_npu=True is not a setting of the classic TFLite benchmark_model: its "
            "accelerators are xnnpack, gpu, nnapi",
        ),
        (
            dict(use_nnapi=True, use_npu=True),
            "use_nnapi=True and use_npu=True need different tools; no benchmark_model takes both",
        ),
        (dict(tool="tflite"), "tool must be one of classic, litert, auto (or None), got 'tflite'"),
    ],
)
def test_tool_mismatch_errors(adb, files, kwargs, message):
    binary, model = files
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        android.benchmark(model, benchmark_binary=binary, adb=str(adb.path), **kwargs)
    assert adb.calls() == []


# --- mobile/android/benchmark.sh, through the same stand-in ------------------------------------

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_script(adb: FakeAdb, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ADB=str(adb.path))
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120
    )


@needs_bash
def test_script_happy_path(adb, files):
    binary, model = files
    done = run_script(adb, "-t", "2", "-c", "f0", str(binary), str(model))
    assert done.returncode == 0, done.stderr
    assert parse_benchmark_model_output(done.stdout) == parse_benchmark_model_output(
        fixture_text(TI)
    )
    calls = adb.calls()
    assert [call[2] for call in calls[1:]] == ["push", "shell", "push", "shell", "shell"]
    remote_model = calls[3][4]
    assert calls[4][3].startswith("taskset f0 ")
    assert run_flags(remote_model, threads=2) in calls[4][3]
    assert calls[-1][3] == f"rm -f {calls[1][4]} {remote_model}"
    assert adb.left_on_device() == []


@needs_bash
@pytest.mark.parametrize(
    ("scenario", "args", "status", "message"),
    [
        ("none", [], 2, "no Android device found"),
        ("unauthorized", [], 2, r"not ready: FAKE0001 \(unauthorized\)"),
        ("two", [], 2, r"2 devices attached \(FAKE0001 FAKE0002\); pick one with -s"),
        ("two", ["-s", "FAKE0002"], 0, ""),
        ("two", ["-s", "NOPE"], 2, r"NOPE is not ready; .* lists: FAKE0001 \(device\), FAKE0002"),
        ("push_fails", [], 1, "adb push of .* failed"),
        ("crash", [], 1, "exited with status 139 on FAKE0001"),
        ("no_results", [], 1, "printed no results"),
        ("one", ["-r", "0"], 2, "-r must be an integer >= 1"),
    ],
)
def test_script_errors(adb, files, scenario, args, status, message):
    binary, model = files
    adb.use(TI, scenario)
    done = run_script(adb, *args, str(binary), str(model))
    assert done.returncode == status, done.stderr
    assert re.search(message, done.stderr)
    assert adb.left_on_device() == []


@needs_bash
def test_script_without_adb(files, tmp_path):
    binary, model = files
    env = dict(os.environ, ADB=str(tmp_path / "no-adb"))
    done = subprocess.run(
        ["bash", str(SCRIPT), str(binary), str(model)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2 and "adb not found" in done.stderr


def cli_bench_on_phone(adb, files, *extra: str) -> int:
    """`tfdistill bench --android MODEL` through the stand-in adb, with `extra` flags."""
    from absl import flags

    from tfdistill import cli

    binary, model = files
    head = ["tfdistill", "--android", f"--benchmark_binary={binary}", f"--adb={adb.path}"]
    argv = flags.FLAGS([*head, "--threads=4", *extra])
    try:
        return cli._main([*argv, "bench", str(model)])
    finally:
        flags.FLAGS.unparse_flags()


def test_cli_bench_android_through_the_stand_in(adb, files, capsys):
    assert cli_bench_on_phone(adb, files, "--num_runs=50", "--taskset=f0") == 0
    printed = capsys.readouterr().out
    assert "source: benchmark_model, 4 threads, 50 runs" in printed
    assert "971.535 ms" in printed
    run = next(c for c in adb.calls() if c[2:3] == ["shell"] and "--graph=" in c[3])
    assert run[3].startswith("taskset f0 ") and "--num_threads=4" in run[3]
    assert adb.left_on_device() == []


def test_cli_bench_android_litert_tool(adb, files, capsys):
    adb.use(LITERT, "one")
    flags_ = ("--benchmark_tool=litert", "--use_npu", "--enable_op_profiling")
    assert cli_bench_on_phone(adb, files, *flags_) == 0
    assert "0.947 ms" in capsys.readouterr().out
    run = tool_run(adb)
    flags_ = run_flags(remote_graph(run), threads=4, op_profiling="true", tool="litert")
    assert run.endswith(flags_.replace("--use_npu=false", "--use_npu=true"))


def test_run_passes_the_tool_to_the_phone(adb, files):
    from tfdistill import run as run_lib
    from tfdistill.run import delivery

    binary, model = files
    adb.use(LITERT, "one")
    config = run_lib.RunConfig(
        out="unused",
        bench_runs=50,
        android=True,
        benchmark_binary=str(binary),
        adb=str(adb.path),
        use_npu=True,
        benchmark_tool="litert",
    )
    assert delivery.on_phone(config, model).avg_us == 947.132
    run = tool_run(adb)
    assert run.endswith(
        run_flags(remote_graph(run), tool="litert").replace("npu=false", "npu=true")
    )
    with pytest.raises(ValueError, match="use_npu=True is not a setting of the classic"):
        dataclasses.replace(config, benchmark_tool="classic")


def test_run_times_its_files_on_the_phone_too(adb, files, tflite_model):
    from tfdistill import report
    from tfdistill import run as run_lib
    from tfdistill.run import delivery

    binary, _ = files
    config = run_lib.RunConfig(
        out="unused",
        bench_runs=50,
        threads=2,
        android=True,
        benchmark_binary=str(binary),
        adb=str(adb.path),
        taskset="f0",
    )
    timings = delivery.bench(config, [tflite_model])
    phone = parse_benchmark_model_output(fixture_text(TI))
    assert timings["android"] == {tflite_model.name: phone.to_dict()}
    assert timings["litert"][tflite_model.name]["count"] == 50
    assert (timings["threads"], timings["num_runs"]) == (2, 50)
    run = next(c for c in adb.calls() if c[2:3] == ["shell"] and "--graph=" in c[3])
    assert run[3].startswith("taskset f0 ") and "--num_threads=2" in run[3]
    row = {"file": tflite_model.name, "size_bytes": 1024, "accuracy": 0.5, "agreement": 1.0}
    (merged,) = delivery.with_latency([row], timings)
    assert merged["android_latency_us"] == phone.avg_us
    result = {"dataset": {"name": "toy"}, "teacher": {"accuracy": 1.0, "params": 1}}
    table = report.format_table({**result, "students": {}, "tflite": [merged]})
    assert "phone us" in table and f"{phone.avg_us:.1f}" in table
    assert adb.left_on_device() == []


def test_with_cpu_records_each_calls_process_time():
    from tfdistill.bench import with_cpu

    cpu = {"busy": [9.0]}  # emptied first
    work = with_cpu({"busy": lambda: sum(range(300_000)), "idle": lambda: None}, cpu)
    for _ in range(2):
        work["busy"]()
    work["idle"]()
    assert len(cpu["busy"]) == 2 and all(s > 0 for s in cpu["busy"])
    assert len(cpu["idle"]) == 1 and cpu["idle"][0] < min(cpu["busy"])


def test_a_profiled_phone_run_reports_and_draws_the_slowest_ops(adb, files, tmp_path):
    """`run --android --enable_op_profiling`: the tool gets the profiling flag, the distilled
    student's float32 file's op rows go to the report's `op_profile`, drawn as op_profile.png."""
    from types import SimpleNamespace

    from tfdistill import plots
    from tfdistill import run as run_lib
    from tfdistill.run import delivery, stages

    binary, model = files
    adb.use(RISCV, "one")
    config = run_lib.RunConfig(
        out="unused",
        android=True,
        benchmark_binary=str(binary),
        adb=str(adb.path),
        enable_op_profiling=True,
        benchmark_tool="classic",
    )
    phone = delivery.on_phone(config, model)
    assert "--enable_op_profiling=true" in tool_run(adb)
    expected = parse_benchmark_model_output(fixture_text(RISCV)).ops
    assert phone.ops == expected and len(expected) > 15
    name = "student_distilled_fp32.tflite"
    run = SimpleNamespace(config=config, latency={"android": {name: phone.to_dict()}})
    profile = stages.op_profile_of(run)
    assert profile["file"] == name and len(profile["ops"]) == len(expected)
    unprofiled = dataclasses.replace(config, enable_op_profiling=False)
    assert stages.op_profile_of(SimpleNamespace(config=unprofiled, latency=run.latency)) is None
    png = plots.op_profile(profile["ops"], tmp_path / "ops.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
