#!/usr/bin/env python3
"""A stand-in for `adb` that replays a recorded `benchmark_model` transcript; no phone needed.

It answers `devices`, `push LOCAL REMOTE`, and `shell "CMD; CMD"` where each CMD is `chmod`,
`rm`, `echo` (with `$?`), `taskset MASK PROGRAM ...` or a pushed program. `/data/local/tmp` is a
host folder, so pushes, `chmod` and `rm` really happen and a test can check what is left behind.
A pushed file arrives without its execute bits, so the program only runs after `chmod`. The
program's output is the transcript, without its leading `# ` annotation lines, on stderr, as
benchmark_model logs there.

Environment:
  FAKE_ADB_SCENARIO    one (default) | none | two | unauthorized | offline_extra | push_fails |
                       crash (the tool dies with SIGSEGV after warm-up, status 139) |
                       no_results (the tool stops after loading and exits 0)
  FAKE_ADB_TRANSCRIPT  the transcript replayed as the tool's output
  FAKE_ADB_DEVICE_DIR  the host folder standing in for /data/local/tmp
  FAKE_ADB_LOG         each call's argv (after `adb`) is appended to it as one JSON line
  FAKE_ADB_DISCONNECT  STEP:HOW, the phone going away at STEP: push_binary, push_model,
                       chmod, or run (after the tool printed its warm-up); HOW is `unplugged`
                       (`adb: device 'SERIAL' not found` then and for every later call),
                       `gone` (`adb: no devices/emulators found`, likewise) or `offline`
                       (`error: device offline` at that step alone: the link comes back)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

DEVICE_DIR = "/data/local/tmp"
NO_DEVICES = "adb: no devices/emulators found"
DEVICES = {
    "none": {},
    "two": {"FAKE0001": "device", "FAKE0002": "device"},
    "unauthorized": {"FAKE0001": "unauthorized"},
    "offline_extra": {"FAKE0001": "device", "FAKE0003": "offline"},
}


def host_path(remote: str) -> Path:
    if not remote.startswith(DEVICE_DIR + "/"):
        raise SystemExit(f"fake adb: only {DEVICE_DIR}/ exists on this device, got {remote}")
    return Path(os.environ["FAKE_ADB_DEVICE_DIR"]) / remote[len(DEVICE_DIR) + 1 :]


def transcript() -> list[str]:
    lines = Path(os.environ["FAKE_ADB_TRANSCRIPT"]).read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("# "):
        lines.pop(0)
    return lines


def run_tool(argv: list[str], scenario: str) -> int | None:
    """The tool's exit status; None when the phone went away during the run."""
    program = host_path(argv[0])
    if not program.is_file():
        print(f"/system/bin/sh: {argv[0]}: inaccessible or not found", file=sys.stderr)
        return 127
    if not os.access(program, os.X_OK):
        print(f"/system/bin/sh: {argv[0]}: can't execute: Permission denied", file=sys.stderr)
        return 126
    graphs = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--graph=")]
    if len(graphs) != 1 or not host_path(graphs[0]).is_file():
        print(f"fake adb: the tool needs one pushed --graph, got {graphs}", file=sys.stderr)
        return 1
    lines = transcript()
    if os.environ.get("FAKE_ADB_DISCONNECT", "").startswith("run:"):
        hits = [i for i, line in enumerate(lines) if "Running benchmark" in line]
        sys.stderr.write("".join(lines[: hits[-1] + 1]))
        sys.stderr.flush()
        return None
    if scenario in ("crash", "no_results"):
        marker = "Running benchmark" if scenario == "crash" else "Initialized session"
        hits = [i for i, line in enumerate(lines) if marker in line]
        lines = lines[: hits[-1] + 1]
    sys.stderr.write("".join(lines))
    if scenario == "crash":
        sys.stderr.write("Segmentation fault\n")
        sys.stderr.flush()
        return 139
    sys.stderr.flush()
    return 0


UNPLUGGED = {"unplugged": "adb: device '{serial}' not found", "gone": NO_DEVICES}


def unplugged_mark() -> Path:
    return Path(os.environ["FAKE_ADB_DEVICE_DIR"] + ".unplugged")


def disconnect(step: str, serial: str) -> bool:
    """Whether the phone goes away at `step` (see FAKE_ADB_DISCONNECT); prints what adb
    prints then. An unplugged phone stays away for the later calls."""
    if unplugged_mark().exists():
        print(unplugged_mark().read_text().format(serial=serial))
        return True
    at, _, how = os.environ.get("FAKE_ADB_DISCONNECT", "").partition(":")
    if at != step:
        return False
    if how == "offline":
        print("error: device offline")
        return True
    unplugged_mark().write_text(UNPLUGGED[how])
    print(UNPLUGGED[how].format(serial=serial))
    return True


def run_shell(command: str, scenario: str, serial: str) -> int:
    status = 0
    for part in command.split(";"):
        argv = shlex.split(part)
        if not argv:
            continue
        if argv[0] == "taskset":
            argv = argv[2:]
        if argv[0] == "chmod":
            if disconnect("chmod", serial):
                return 1
            target = host_path(argv[2])
            if not target.is_file():
                print(f"chmod: {argv[2]}: No such file or directory", file=sys.stderr)
                status = 1
                continue
            target.chmod(int(argv[1], 8))
            status = 0
        elif argv[0] == "rm":
            for name in (arg for arg in argv[1:] if not arg.startswith("-")):
                host_path(name).unlink(missing_ok=True)
            status = 0
        elif argv[0] == "echo":
            sys.stdout.write(" ".join(argv[1:]).replace("$?", str(status)) + "\n")
            sys.stdout.flush()
            status = 0
        else:
            status = run_tool(argv, scenario)
            if status is None:
                disconnect("run", serial)
                return 255
    return status


def main(args: list[str]) -> int:
    with open(os.environ["FAKE_ADB_LOG"], "a") as log:
        log.write(json.dumps(args) + "\n")
    scenario = os.environ.get("FAKE_ADB_SCENARIO", "one")
    devices = DEVICES.get(scenario, {"FAKE0001": "device"})
    ready = [serial for serial, state in devices.items() if state == "device"]
    serial = None
    if args[:1] == ["-s"]:
        serial, args = args[1], args[2:]
    if args == ["devices"]:
        print("List of devices attached")
        for name, state in devices.items():
            if not unplugged_mark().exists():
                print(f"{name}\t{state}")
        print()
        return 0
    if unplugged_mark().exists():
        return int(disconnect("", serial or ""))
    if serial is None and len(ready) != 1:
        print("adb: more than one device/emulator" if ready else "adb: no devices found")
        return 1
    if serial is not None and serial not in ready:
        print(f"adb: device '{serial}' not found")
        return 1
    serial = serial or ready[0]
    if args[:1] == ["push"] and len(args) == 3:
        local, remote = Path(args[1]), args[2]
        if disconnect("push_model" if local.suffix == ".tflite" else "push_binary", serial):
            return 1
        if scenario == "push_fails":
            print(f"adb: error: failed to copy '{local}' to '{remote}': remote Permission denied")
            return 1
        shutil.copyfile(local, host_path(remote))
        host_path(remote).chmod(0o644)
        print(f"{local}: 1 file pushed, 0 skipped.")
        return 0
    if args[:1] == ["shell"] and len(args) >= 2:
        return run_shell(" ".join(args[1:]), scenario, serial)
    print(f"fake adb: unsupported command {args}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
