"""The quiet command: TensorFlow's native start-up lines and decoder chatter are dropped from
stderr, everything else passes, and only the `tfdistill` command is filtered."""

import subprocess
import sys

import pytest

from tfdistill import _quiet

pytestmark = pytest.mark.smoke

STARTUP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796316346.831265    7835 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796316346.831837    7835 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1796316351.168032    7835 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, "
    "output_inference_type: FLOAT32",
    "Improper call to JPEG library in state 201",
    "Corrupt JPEG data: 24 extraneous bytes before marker 0xd9",
    "Premature end of JPEG file",
]
KEPT = [
    "tfdistill run: --student_kwargs is not JSON",
    "Traceback (most recent call last):",
    "E0000 00:00:1796316351.168032    7835 some_kernel.cc:52] an error in a kernel",
    "WARNING: a warning of our own",
    "Epoch 1/30",
]


@pytest.mark.parametrize("line", STARTUP)
def test_startup_and_decoder_lines_are_noise(line):
    assert _quiet.noise(line + "\n")


@pytest.mark.parametrize("line", KEPT)
def test_other_lines_pass(line):
    assert not _quiet.noise(line + "\n")


def test_only_the_command_is_filtered_and_verbosity_turns_it_off():
    assert _quiet.is_command(["/venv/bin/tfdistill", "run"], ["python", "/venv/bin/tfdistill"])
    assert _quiet.is_command(["-m"], ["python", "-m", "tfdistill.cli", "run"])
    assert not _quiet.is_command(["-c"], ["python", "-c", "import tfdistill"])
    assert not _quiet.is_command(["train.py"], ["python", "train.py"])
    assert _quiet.verbose(["tfdistill", "run", "--verbosity=1"])
    assert _quiet.verbose(["tfdistill", "run", "-v", "2"])
    assert _quiet.verbose(["tfdistill", "run", "--v=3"])
    assert not _quiet.verbose(["tfdistill", "run", "--verbosity=0", "--vv=3"])
    assert not _quiet.verbose(["tfdistill", "run", "--verbosity", "-1"])


def test_a_failing_command_prints_its_one_line_and_nothing_else():
    """Through the filter: TensorFlow's start-up lines are gone, the error line still arrives
    although the process exits right after writing it."""
    done = subprocess.run(
        [sys.executable, "-m", "tfdistill.cli", "profile", "no_such_model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("tfdistill profile: Unknown model 'no_such_model'")


def test_what_a_crashing_command_writes_last_still_arrives():
    """The filter is a process of its own: a command that dies at once (no atexit, as after a
    fatal C++ check) still has its last line forwarded, and noise before it dropped."""
    code = (
        "import os, sys; sys.argv = ['tfdistill']; import tfdistill; "
        "os.write(2, b'I0000 00:00:17.5  12 port.cc:153] oneDNN custom operations are on.\\n'); "
        "os.write(2, b'F0000 a fatal check failed\\n'); os._exit(3)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stderr == "F0000 a fatal check failed\n"
