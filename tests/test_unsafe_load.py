"""`.keras` files load in Keras safe mode: a `Lambda` layer is refused in one line naming
`--unsafe_load`, which then loads it (`run --teacher_weights`, `convert`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from tfdistill import cli, data
from tfdistill.run import training

RUN_FILE = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"
NATIVE_LOG = re.compile(r"[IWEF]\d{4} \d\d:\d\d:|WARNING: All log messages before absl::")
REFUSAL = re.compile(
    r"'.*lambda\.keras' is refused by Keras safe mode: it asks for the deserialization of a "
    r"`Lambda` layer .*; if you trust the file, pass --unsafe_load\.$"
)


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory) -> Path:
    """A digits classifier (32, 32, 1) -> 10 logits with a Lambda layer, saved as `.keras`."""
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Rescaling(1 / 16)(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path_factory.mktemp("model") / "lambda.keras"
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(path)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", RUN_FILE, str(Path(cli.__file__)), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if not NATIVE_LOG.match(line)]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def test_run_refuses_a_lambda_teacher_in_one_line(lambda_model, tmp_path):
    result = _cli("run", "--dataset=digits", f"--teacher_weights={lambda_model}", "--quiet")
    line = _one_line(result)
    assert line.startswith("tfdistill run: teacher_weights '") and REFUSAL.search(line), line


def test_a_lambda_teacher_loads_with_unsafe_load(lambda_model):
    digits = data.load("digits").raw_pixels()
    with pytest.raises(ValueError, match=REFUSAL) as refused:
        training.load_teachers([str(lambda_model)], digits)
    assert "\n" not in str(refused.value)
    teacher, _ = training.load_teachers([str(lambda_model)], digits, unsafe=True)
    assert any(isinstance(layer, keras.layers.Lambda) for layer in teacher.layers)


@pytest.mark.slow  # two CLI subprocesses; the run's refusal holds the same check quickly
def test_convert_refuses_a_lambda_model_unless_unsafe_load(lambda_model, tmp_path):
    out = tmp_path / "lambda.tflite"
    line = _one_line(_cli("convert", str(lambda_model), f"--out={out}"))
    assert line.startswith("tfdistill convert: model '") and REFUSAL.search(line), line
    assert not out.exists()
    result = _cli("convert", str(lambda_model), f"--out={out}", "--unsafe_load")
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.stat().st_size > 0
