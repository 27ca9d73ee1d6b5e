"""Latency on an Android phone: push `benchmark_model` and a `.tflite` model over adb, run, parse.

Only the classic TFLite `benchmark_model` (`tflite/tools/benchmark`) takes the flags used here;
LiteRT's CompiledModel tool takes others (`--use_cpu`, `--use_npu`). Tested against a stand-in
adb that replays recorded transcripts (`tests/fake_adb.py`), never on a phone.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

from tfdistill.bench.parse import parse_benchmark_model_output
from tfdistill.bench.result import BenchmarkResult

DEVICE_DIR = "/data/local/tmp"
ADB_TIMEOUT_S = 60.0
PUSH_TIMEOUT_S = 600.0
TAIL_LINES = 40
_EXIT_MARK = "tfdistill_exit="


class AndroidBenchmarkError(RuntimeError):
    """adb or `benchmark_model` failed on the device; the message says which step and why."""


def _tail(output: str, lines: int = TAIL_LINES) -> str:
    kept = output.strip().splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in kept) if kept else "  | (no output)"


def _run(command: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """Runs one adb command, stdout and stderr together as text; never through a local shell."""
    try:
        return subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = error.stdout or ""
        if isinstance(output, bytes):
            output = output.decode("utf-8", "replace")
        raise AndroidBenchmarkError(
            f"{what} did not finish within {timeout:g} s; its output ends:\n{_tail(output)}"
        ) from None


def list_devices(adb: str) -> dict[str, str]:
    """`adb devices` as {serial: state}; state is `device` when usable, else e.g. `unauthorized`."""
    result = _run([adb, "devices"], ADB_TIMEOUT_S, "adb devices")
    if result.returncode != 0:
        raise AndroidBenchmarkError(
            f"'adb devices' failed (exit {result.returncode}):\n{_tail(result.stdout)}"
        )
    lines = result.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("List of devices")]
    devices = {}
    for line in lines[header[0] + 1 :] if header else lines:
        line = line.strip()
        if not line or line.startswith("*"):
            continue
        serial, _, state = line.partition("\t") if "\t" in line else line.partition(" ")
        devices[serial.strip()] = state.strip() or "unknown"
    return devices


def _pick_device(adb: str, serial: str | None) -> str:
    devices = list_devices(adb)
    ready = [s for s, state in devices.items() if state == "device"]
    others = ", ".join(f"{s} ({state})" for s, state in devices.items() if state != "device")
    hint = ""
    if any(state == "unauthorized" for state in devices.values()):
        hint = "; accept the 'Allow USB debugging' prompt on the phone"
    if serial is not None:
        if serial in ready:
            return serial
        if serial in devices:
            raise AndroidBenchmarkError(
                f"device {serial} is {devices[serial]}, not ready for adb{hint}"
            )
        listed = ", ".join(f"{s} ({state})" for s, state in devices.items()) or "none"
        raise AndroidBenchmarkError(f"device {serial} not found; adb devices lists: {listed}")
    if not ready:
        also = f" (not ready: {others}{hint})" if others else ""
        raise AndroidBenchmarkError(
            "no Android device found: connect a phone with USB debugging on and check "
            f"'adb devices'{also}"
        )
    if len(ready) > 1:
        raise AndroidBenchmarkError(
            f"{len(ready)} devices attached ({', '.join(ready)}); pass serial= to pick one"
        )
    return ready[0]


def _remote_name(path: Path, token: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)
    return f"{DEVICE_DIR}/tfdistill-{token}-{safe}"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def benchmark(
    model_path: str | os.PathLike,
    *,
    benchmark_binary: str | os.PathLike,
    adb: str = "adb",
    serial: str | None = None,
    num_threads: int = 1,
    use_xnnpack: bool = True,
    use_gpu: bool = False,
    use_nnapi: bool = False,
    num_runs: int = 50,
    warmup_runs: int = 1,
    enable_op_profiling: bool = False,
    taskset: str | int | None = None,
    timeout_s: float = 600.0,
) -> BenchmarkResult:
    """Runs `benchmark_model` for `model_path` on a phone over adb and parses its output.

    Pushes the binary and the model to `/data/local/tmp` under unique names, `chmod 755`s the
    binary, runs it (behind `taskset MASK` if `taskset` is given: a hex CPU mask such as "f0", or
    an int), and removes both files again, also after a failure. `serial` picks one of several
    devices. Latencies in microseconds. Raises `ValueError` for bad arguments and
    `AndroidBenchmarkError` when adb is missing, no single device is ready, a push fails, or the
    tool crashes, times out or prints no results (with the tail of its output).
    """
    model, binary = Path(model_path), Path(benchmark_binary)
    taskset = _check_arguments(model, binary, num_runs, warmup_runs, num_threads, taskset)
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    adb_path = shutil.which(adb)
    if adb_path is None:
        raise AndroidBenchmarkError(
            f"adb not found ({adb!r} is not an executable on PATH): install the Android platform "
            "tools (apt-get install adb, or Google's platform-tools) or pass adb='/path/to/adb'"
        )
    device = _pick_device(adb_path, serial)
    on_device = [adb_path, "-s", device]
    token = secrets.token_hex(4)
    remote_binary, remote_model = _remote_name(binary, token), _remote_name(model, token)
    tool = [
        remote_binary,
        f"--graph={remote_model}",
        f"--num_threads={num_threads}",
        f"--use_xnnpack={_flag(use_xnnpack)}",
        f"--use_gpu={_flag(use_gpu)}",
        f"--use_nnapi={_flag(use_nnapi)}",
        f"--num_runs={num_runs}",
        f"--warmup_runs={warmup_runs}",
        f"--enable_op_profiling={_flag(enable_op_profiling)}",
    ]
    if taskset is not None:
        tool = ["taskset", taskset, *tool]
    pushed: list[str] = []
    try:
        _push(on_device, ((binary, remote_binary), (model, remote_model)), pushed)
        parsed = _run_tool(on_device, device, tool, timeout_s)
    finally:
        _remove(on_device, device, pushed)
    if parsed.num_threads is None:
        parsed.num_threads = num_threads
    return parsed


def _check_arguments(
    model: Path,
    binary: Path,
    num_runs: int,
    warmup_runs: int,
    num_threads: int,
    taskset: str | int | None,
) -> str | None:
    """ValueErrors for bad arguments of `benchmark`; `taskset` as a hex mask without "0x"."""
    if not model.is_file():
        raise ValueError(f"model file not found: {str(model)!r}")
    if not binary.is_file():
        raise ValueError(f"benchmark_model binary not found: {str(binary)!r}")
    for name, value, low in (
        ("num_runs", num_runs, 1),
        ("warmup_runs", warmup_runs, 0),
        ("num_threads", num_threads, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if isinstance(taskset, int) and not isinstance(taskset, bool):
        if taskset <= 0:
            raise ValueError(f"taskset must be a positive CPU mask, got {taskset}")
        taskset = f"{taskset:x}"
    if taskset is not None:
        if not (isinstance(taskset, str) and re.fullmatch(r"(0x)?[0-9a-fA-F]+", taskset)):
            raise ValueError(f"taskset must be a hex CPU mask such as 'f0', got {taskset!r}")
        taskset = taskset.removeprefix("0x")
    return taskset


def _push(on_device: list[str], files: tuple, pushed: list[str]) -> None:
    """Pushes each (local, remote) of `files`, recording the remote paths in `pushed` (for the
    cleanup, even after a failure); the first one, the binary, is made executable."""
    for index, (local, remote) in enumerate(files):
        pushed.append(remote)
        result = _run([*on_device, "push", str(local), remote], PUSH_TIMEOUT_S, "adb push")
        if result.returncode != 0:
            raise AndroidBenchmarkError(
                f"adb push {local} {remote} failed (exit {result.returncode}):\n"
                f"{_tail(result.stdout)}"
            )
        if index == 0:
            command = f"chmod 755 {shlex.quote(remote)}"
            result = _run([*on_device, "shell", command], ADB_TIMEOUT_S, "chmod")
            if result.returncode != 0:
                raise AndroidBenchmarkError(
                    f"could not make {remote} executable (exit {result.returncode}):\n"
                    f"{_tail(result.stdout)}"
                )


def _run_tool(
    on_device: list[str], device: str, tool: list[str], timeout_s: float
) -> BenchmarkResult:
    """Runs the `tool` command line on the phone; its parsed output."""
    command = f"{shlex.join(tool)}; echo {_EXIT_MARK}$?"
    result = _run([*on_device, "shell", command], timeout_s, "benchmark_model")
    output, status = result.stdout, result.returncode
    marks = re.findall(rf"{_EXIT_MARK}(\d+)", output)
    if marks:
        status = int(marks[-1])
        output = re.sub(rf"{_EXIT_MARK}\d+\r?\n?", "", output)
    if status != 0:
        raise AndroidBenchmarkError(
            f"benchmark_model exited with status {status} on {device}"
            f"{' (killed by a signal)' if status > 128 else ''}; its output ends:\n"
            f"{_tail(output)}"
        )
    try:
        return parse_benchmark_model_output(output)
    except ValueError as error:
        raise AndroidBenchmarkError(
            f"benchmark_model printed no results on {device} ({error}); its output ends:\n"
            f"{_tail(output)}"
        ) from None


def _remove(on_device: list[str], device: str, pushed: list[str]) -> None:
    """Removes the `pushed` files from the phone; a warning when that fails."""
    if not pushed:
        return
    command = "rm -f " + " ".join(shlex.quote(path) for path in pushed)
    try:
        failed = _run([*on_device, "shell", command], ADB_TIMEOUT_S, "rm").returncode != 0
    except AndroidBenchmarkError:
        failed = True
    if failed:
        warnings.warn(f"could not remove {', '.join(pushed)} from {device}", RuntimeWarning, 4)
