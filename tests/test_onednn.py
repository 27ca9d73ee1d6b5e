"""Both oneDNN paths in one test command. TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` at import
and turns oneDNN on by default on CPUs with AVX-512 VNNI/BF16 or AMX, off on AVX2-only ones;
kernels, rounding and failures differ (an empty batch broke oneDNN's convolution). This test
runs the cases that differed under the setting this process does not have."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tfdistill import _keras_internals

FLIPPED_CASES = (
    "no_example or empty_replica or two_worker_processes_train_the_distiller "
    "or cached_teacher_outputs or onednn_setting"
)


def test_the_other_onednn_setting_passes_the_empty_replica_cases():
    other = "0" if _keras_internals.onednn_enabled() else "1"
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": other}
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-o",
            "addopts=-p no:cacheprovider",
            "tests/test_distribute.py",
            "-k",
            FLIPPED_CASES,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, f"TF_ENABLE_ONEDNN_OPTS={other}:\n{tail}"
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) == 5, tail
