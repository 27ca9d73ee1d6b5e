"""Latency on an Android phone: push `benchmark_model` and a `.tflite` model over adb, run, parse.

Two tools share the name and take different flags. Each flag used here was checked in the
tool's source (and stays out of the other tool's command line once the tool is known):

- both (`BenchmarkModel::GetFlags`, `tflite/tools/benchmark/benchmark_model.cc` in
  google-ai-edge/LiteRT, as in tensorflow/tensorflow): `--num_threads`, `--num_runs`,
  `--warmup_runs`.
- classic TFLite tool (`tflite/tools/benchmark`): `--graph` and `--enable_op_profiling`
  (`benchmark_tflite_model.cc`), `--use_xnnpack`, `--use_gpu`, `--use_nnapi` (the delegate
  providers, `tensorflow/lite/tools/delegates/{xnnpack,gpu,nnapi}_delegate_provider.cc`;
  `--use_nnapi` exists in Android builds only).
- LiteRT CompiledModel tool (`litert/tools:benchmark_model`, the one Google ships prebuilt):
  `--graph`, `--use_cpu`, `--use_gpu`, `--use_npu`, `--use_profiler` (`GetFlags` in
  `litert/tools/benchmark_litert_model.h`; `--use_gpu=true` and `--use_profiler=true` also in
  ai.google.dev/edge/litert/next/benchmark). Its CPU accelerator (XNNPACK) stays on as the
  fallback beside the GPU or NPU (`CreateCompiledModelOptions`, `benchmark_litert_model.cc`),
  so `--use_cpu=true` always; it has no NNAPI and no way to turn XNNPACK off. Its
  `--result_file_path` (a binary proto) is not used: the printed output is parsed.

Both tools only warn about flags they do not know ("Unconsumed cmdline flags", in
`BenchmarkModel::ParseFlags`) and run on, which is how `tool=None` detects the tool: the first
run of a binary passes both tools' flags, `tool_of_output` reads which tool answered (LiteRT
prints a "BENCHMARK RESULTS" block), and later runs of that binary (same path, size and
modification time) pass only its own flags. Tested against a stand-in adb that replays
recorded transcripts (`tests/fake_adb.py`), never on a phone.
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

from tfdistill.bench.parse import parse_benchmark_model_output, tool_of_output
from tfdistill.bench.result import BenchmarkResult

DEVICE_DIR = "/data/local/tmp"
ADB_TIMEOUT_S = 60.0
PUSH_TIMEOUT_S = 600.0
TAIL_LINES = 40
_EXIT_MARK = "tfdistill_exit="
TOOLS = ("classic", "litert")
_TOOL_NAMES = {
    "classic": "the classic TFLite benchmark_model",
    "litert": "LiteRT's benchmark_model",
}
_ACCELERATORS = {"classic": "xnnpack, gpu, nnapi", "litert": "cpu (XNNPACK), gpu, npu"}
_detected: dict[tuple[str, int, int], str] = {}


# What adb prints when the phone goes away: unplugged, rebooted, or a lost USB link.
_GONE = re.compile(
    r"device '[^']*' not found|device (?:'[^']*' )?offline|no devices(?:/emulators)? found"
    r"|device not found"
)


class AndroidBenchmarkError(RuntimeError):
    """adb or `benchmark_model` failed on the device; the message says which step and why."""


def _disconnected(device: str, what: str, output: str) -> AndroidBenchmarkError | None:
    """The error for a step whose adb `output` says the phone went away, else None."""
    said = next((line.strip() for line in output.splitlines() if _GONE.search(line)), None)
    if said is None:
        return None
    return AndroidBenchmarkError(
        f"the phone {device} disconnected during {what} (adb: {said.removeprefix('adb: ')}); "
        "reconnect it, check that 'adb devices' lists it as 'device', and rerun"
    )


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


def _binary_key(binary: Path) -> tuple[str, int, int]:
    stat = binary.stat()
    return str(binary.resolve()), stat.st_size, stat.st_mtime_ns


def detected_tool(benchmark_binary: str | os.PathLike) -> str | None:
    """The tool ("classic" or "litert") an earlier `tool=None` run found this binary to be."""
    binary = Path(benchmark_binary)
    return _detected.get(_binary_key(binary)) if binary.is_file() else None


def check_tool(
    tool: str | None, *, use_xnnpack: bool = True, use_nnapi: bool = False, use_npu: bool = False
) -> str | None:
    """`tool` as "classic", "litert" or None (detect; "auto" too); ValueError for a setting
    the tool does not take."""
    if tool == "auto":
        tool = None
    if tool is not None and tool not in TOOLS:
        raise ValueError(f"tool must be one of classic, litert, auto (or None), got {tool!r}")
    wanted = [
        (name, owner)
        for name, owner, on in (
            ("use_nnapi=True", "classic", use_nnapi),
            ("use_xnnpack=False", "classic", not use_xnnpack),
            ("use_npu=True", "litert", use_npu),
        )
        if on
    ]
    owners = {owner for _, owner in wanted}
    if len(owners) > 1:
        settings = " and ".join(name for name, _ in wanted)
        raise ValueError(f"{settings} need different tools; no benchmark_model takes both")
    for name, owner in wanted:
        if tool is not None and owner != tool:
            raise ValueError(
                f"{name} is not a setting of {_TOOL_NAMES[tool]}: its accelerators are "
                f"{_ACCELERATORS[tool]}"
            )
    return tool


def tool_flags(
    tool: str | None,
    graph: str,
    *,
    num_threads: int,
    use_xnnpack: bool,
    use_gpu: bool,
    use_nnapi: bool,
    use_npu: bool,
    num_runs: int,
    warmup_runs: int,
    profiling: bool,
) -> list[str]:
    """The flags of `tool` for these settings; for None both tools' flags, the classic ones
    first (each tool warns about the other's and runs on)."""
    common = [f"--graph={graph}", f"--num_threads={num_threads}"]
    gpu = f"--use_gpu={_flag(use_gpu)}"
    runs = [f"--num_runs={num_runs}", f"--warmup_runs={warmup_runs}"]
    classic = [
        *common,
        f"--use_xnnpack={_flag(use_xnnpack)}",
        gpu,
        f"--use_nnapi={_flag(use_nnapi)}",
        *runs,
        f"--enable_op_profiling={_flag(profiling)}",
    ]
    npu, profiler = f"--use_npu={_flag(use_npu)}", f"--use_profiler={_flag(profiling)}"
    if tool == "classic":
        return classic
    if tool == "litert":
        return [*common, "--use_cpu=true", gpu, npu, *runs, profiler]
    return [*classic, "--use_cpu=true", npu, profiler]


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
    use_npu: bool = False,
    num_runs: int = 50,
    warmup_runs: int = 1,
    enable_op_profiling: bool = False,
    taskset: str | int | None = None,
    timeout_s: float = 600.0,
    tool: str | None = None,
) -> BenchmarkResult:
    """Runs `benchmark_model` for `model_path` on a phone over adb and parses its output.

    `tool`: "classic" (TFLite's tool: XNNPACK, GPU, NNAPI), "litert" (LiteRT's CompiledModel
    tool: CPU, GPU, NPU) or None/"auto" (detected from the first run's output, then cached per
    binary; see the module docstring). `enable_op_profiling` is `--enable_op_profiling` or
    `--use_profiler`. Pushes the binary and the model to `/data/local/tmp` under unique names,
    `chmod 755`s the binary, runs it (behind `taskset MASK` if `taskset` is given: a hex CPU
    mask such as "f0", or an int), and removes both files again, also after a failure.
    `serial` picks one of several devices. Latencies in microseconds. Raises `ValueError` for
    bad arguments or a setting the tool lacks (also once detected), `AndroidBenchmarkError`
    when adb is missing, no single device is ready, a push fails, the phone disconnects
    (naming the step it went away in), or the tool crashes, times
    out or prints no results (with the tail of its output).
    """
    model, binary = Path(model_path), Path(benchmark_binary)
    taskset = _check_arguments(model, binary, num_runs, warmup_runs, num_threads, taskset)
    settings = dict(use_xnnpack=use_xnnpack, use_nnapi=use_nnapi, use_npu=use_npu)
    tool = check_tool(tool, **settings) or check_tool(detected_tool(binary), **settings)
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
    flags = tool_flags(
        tool,
        remote_model,
        num_threads=num_threads,
        use_gpu=use_gpu,
        num_runs=num_runs,
        warmup_runs=warmup_runs,
        profiling=enable_op_profiling,
        **settings,
    )
    command = [remote_binary, *flags]
    if taskset is not None:
        command = ["taskset", taskset, *command]
    pushed: list[str] = []
    try:
        _push(on_device, ((binary, remote_binary), (model, remote_model)), pushed)
        parsed, output = _run_tool(on_device, device, command, timeout_s)
    finally:
        _remove(on_device, device, pushed)
    if tool is None:
        _detected[_binary_key(binary)] = found = tool_of_output(output)
        try:
            check_tool(found, **settings)
        except ValueError as error:
            raise ValueError(f"{error} ({binary.name} is {found}, read from its output)") from None
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
    device = on_device[-1]
    for index, (local, remote) in enumerate(files):
        pushed.append(remote)
        result = _run([*on_device, "push", str(local), remote], PUSH_TIMEOUT_S, "adb push")
        if result.returncode != 0:
            gone = _disconnected(device, f"the push of {local.name}", result.stdout)
            raise gone or AndroidBenchmarkError(
                f"adb push {local} {remote} failed (exit {result.returncode}):\n"
                f"{_tail(result.stdout)}"
            )
        if index == 0:
            command = f"chmod 755 {shlex.quote(remote)}"
            result = _run([*on_device, "shell", command], ADB_TIMEOUT_S, "chmod")
            if result.returncode != 0:
                gone = _disconnected(device, f"the chmod of {local.name}", result.stdout)
                raise gone or AndroidBenchmarkError(
                    f"could not make {remote} executable (exit {result.returncode}):\n"
                    f"{_tail(result.stdout)}"
                )


def _run_tool(
    on_device: list[str], device: str, tool: list[str], timeout_s: float
) -> tuple[BenchmarkResult, str]:
    """Runs the `tool` command line on the phone; its parsed output, and the output."""
    command = f"{shlex.join(tool)}; echo {_EXIT_MARK}$?"
    result = _run([*on_device, "shell", command], timeout_s, "benchmark_model")
    output, status = result.stdout, result.returncode
    marks = re.findall(rf"{_EXIT_MARK}(\d+)", output)
    if marks:
        status = int(marks[-1])
        output = re.sub(rf"{_EXIT_MARK}\d+\r?\n?", "", output)
    elif status != 0 and (gone := _disconnected(device, "the benchmark run", output)):
        raise gone
    if status != 0:
        raise AndroidBenchmarkError(
            f"benchmark_model exited with status {status} on {device}"
            f"{' (killed by a signal)' if status > 128 else ''}; its output ends:\n"
            f"{_tail(output)}"
        )
    try:
        return parse_benchmark_model_output(output), output
    except ValueError as error:
        raise AndroidBenchmarkError(
            f"benchmark_model printed no results on {device} ({error}); its output ends:\n"
            f"{_tail(output)}"
        ) from None


def _remove(on_device: list[str], device: str, pushed: list[str]) -> None:
    """Removes the `pushed` files from the phone; a warning, never an error, when that fails
    (the phone may be gone: the error that stopped the run is the one to see)."""
    if not pushed:
        return
    command = "rm -f " + " ".join(shlex.quote(path) for path in pushed)
    why = ""
    try:
        result = _run([*on_device, "shell", command], ADB_TIMEOUT_S, "rm")
    except (AndroidBenchmarkError, OSError):
        result = None
    if result is not None and result.returncode == 0:
        return
    if result is not None and _disconnected(device, "", result.stdout):
        why = f" (it is disconnected); once it is back: adb -s {device} shell {command}"
    warnings.warn(f"could not remove {', '.join(pushed)} from {device}{why}", RuntimeWarning, 4)
