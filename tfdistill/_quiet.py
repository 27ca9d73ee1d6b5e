"""A quiet `tfdistill` command: TensorFlow's native start-up lines and the image decoders'
chatter are dropped from the process's stderr; everything else passes through.

TensorFlow 2.21 logs through absl's C++ logging before `absl::InitializeLog()` runs, so
`TF_CPP_MIN_LOG_LEVEL` no longer hides its start-up lines; libjpeg writes its warnings to
stderr directly. Both bypass Python, so the filter sits on file descriptor 2: a pipe read by a
forked process that forwards every line but the ones `noise` matches. Installed only for the command
(`tfdistill ...` or `python -m tfdistill.cli ...`), never for a library user, and not with
absl's `--verbosity` of 1 or more. This module imports nothing heavy, so that it runs before
TensorFlow is imported.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

NOISE = re.compile(
    "|".join(
        (
            r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
            r"STDERR",
            r"I\d{4} [\d:.]+\s+\d+ \S+:\d+\] ",  # absl INFO lines
            r"[WE]\d{4} [\d:.]+\s+\d+ (cuda_\w+|gpu_\w+|cudart_stub)\.cc:\d+\] ",
            r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
            r"fully_quantize: \d+, inference_type: \d+, input_inference_type: ",  # converter
            r"Improper call to JPEG library in state \d+",
            r"Corrupt JPEG data: ",
            r"Premature end of JPEG file",
            r"To enable the following instructions: .*rebuild TensorFlow with the appropriate",
            r"(libpng )?warning: ",
        )
    )
)
JOIN_TIMEOUT_S = 5.0


def noise(line: str) -> bool:
    """Whether a line of stderr is start-up or decoder chatter."""
    return NOISE.match(line) is not None


def is_command(argv: Sequence[str], orig_argv: Sequence[str]) -> bool:
    """Whether this process is the `tfdistill` command: its console script, or `python -m
    tfdistill.cli` (`sys.orig_argv`, since `sys.argv[0]` is "-m" while the package imports)."""
    if argv and Path(argv[0]).name == "tfdistill":
        return True
    args = list(orig_argv)
    return any(a == "-m" and b == "tfdistill.cli" for a, b in zip(args, args[1:], strict=False))


def verbose(argv: Sequence[str]) -> bool:
    """Whether absl's `--verbosity` (or `-v`) asks for 1 or more."""
    for i, arg in enumerate(argv):
        for flag in ("--verbosity", "-v", "--v"):
            value = None
            if arg.startswith(flag + "="):
                value = arg[len(flag) + 1 :]
            elif arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            if value is not None and value.lstrip("-").isdigit() and int(value) >= 1:
                return True
    return False


def _forward(read_fd: int, write_fd: int) -> None:
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            if not noise(raw.decode("utf-8", "replace")):
                os.write(write_fd, raw)


def _filter_process(read_fd: int) -> None:
    """The forked filter: reads the pipe until every writer is gone, writes what passes to the
    original stderr (its own fd 2), and exits. Ctrl-C and SIGTERM are the command's to
    handle: the filter outlives them, so the command's last words still arrive."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _forward(read_fd, 2)
    finally:
        os._exit(0)


def filter_stderr() -> None:
    """Routes file descriptor 2 through a pipe to a forked filter process that drops `noise`.
    A process, not a thread, so that what a crashing command writes last (a fatal C++ check,
    a traceback) is still forwarded after the command is gone. At a normal exit fd 2 is
    restored and the filter waited for, so its output comes before the shell's prompt."""
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write_fd)
        _filter_process(read_fd)
    os.close(read_fd)
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def restore() -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.01)

    atexit.register(restore)


def for_the_command() -> None:
    """`filter_stderr` when this process is the command and not asked to be verbose."""
    if is_command(sys.argv, getattr(sys, "orig_argv", ())) and not verbose(sys.argv):
        filter_stderr()
