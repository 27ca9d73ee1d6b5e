"""`tfdistill` usage errors: one line on stderr, exit status 2, no traceback.

Flag and command errors come before `tfdistill` (and TensorFlow) is imported when cli.py runs
on its own, so most cases run it as a file; the cases that need the package run in this process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from tfdistill import cli

CLI_FILE = str(Path(cli.__file__))
RUN_FILE = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"
# TensorFlow's native logging writes these on import, whatever TF_CPP_MIN_LOG_LEVEL says.
NATIVE_LOG = re.compile(r"[IWEF]\d{4} \d\d:\d\d:|WARNING: All log messages before absl::")


def cli_file(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN_FILE, CLI_FILE, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def error_line(returncode: int, stdout: str, stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if not NATIVE_LOG.match(line)]
    assert returncode == 2, stderr
    assert stdout == ""
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tfdistill")
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--method=bogus", "run"], ["--method=bogus", "kd", "at", "kd+at", "gat"]),
        (["run", "--batch_size=abc"], ["--batch_size=abc", "an integer"]),
        (["run", "--qat=maybe"], ["--qat=maybe", "true or false"]),
        (
            ["run", "--mixed_precision=fp8"],
            ["--mixed_precision=fp8", "none", "float16", "bfloat16"],
        ),
        (["run", "--nope=1"], ["--nope", "--helpfull"]),
        (["run", "--temprature=2"], ["--temprature", "did you mean --temperature", "--helpfull"]),
        (["frobnicate"], ["'frobnicate'", "run, profile, convert, bench"]),
        ([], ["no command", "run, profile, convert, bench"]),
        (["run", "extra"], ["tfdistill profile MODEL", "got run extra"]),
    ],
)
def test_usage_errors_are_one_line(args, expected):
    result = cli_file(*args)
    line = error_line(result.returncode, result.stdout, result.stderr)
    assert line.startswith("tfdistill: ")
    for text in expected:
        assert text in line


@pytest.mark.parametrize("help_flag", ["--help", "--helpfull"])
def test_help_still_prints_every_flag(help_flag):
    result = cli_file(help_flag)
    assert result.returncode == 0, result.stderr
    assert "--method: <kd|at|kd+at|gat|fitnet|kd+fitnet|dkd|dist|kd+ls|dkd+ls>" in result.stdout
    assert "tfdistill run [--flags]" in result.stdout


def test_usage_error_inside_a_command_is_one_line(capsys):
    argv = flags.FLAGS(["tfdistill", "--teacher_kwargs=[1]"])
    try:
        with pytest.raises(SystemExit) as stop:
            cli._main_one_line_errors([*argv, "run"])
    finally:
        flags.FLAGS.unparse_flags()
    captured = capsys.readouterr()
    line = error_line(stop.value.code, captured.out, captured.err)
    assert line == "tfdistill: --teacher_kwargs must be a JSON object, got '[1]'"


def test_unknown_dataset_and_model_name_the_choices(tmp_path, capsys):
    """In this process: the names are checked once tfdistill (and TensorFlow) is imported."""
    cases = {"--dataset=nope": ["'nope'", "digits", "folder:PATH"], "--student=nope": ["resnet"]}
    for flag, expected in cases.items():
        argv = flags.FLAGS(["tfdistill", flag, f"--out={tmp_path / 'run'}"])
        try:
            assert cli._main([*argv, "run"]) == 2
        finally:
            flags.FLAGS.unparse_flags()
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1
        assert captured.err.startswith("tfdistill run: ")
        for text in expected:
            assert text in captured.err
    assert not (tmp_path / "run").exists()


def run_config_of(monkeypatch, *args: str):
    """The RunConfig `tfdistill run ARGS` would run, caught before any training."""
    from tfdistill import run as run_lib

    seen = []

    def fake_run(config):
        seen.append(config)
        raise ValueError("stop before training")

    monkeypatch.setattr(run_lib, "run", fake_run)
    argv = flags.FLAGS(["tfdistill", *args])
    try:
        assert cli._main([*argv, "run"]) == 2
    finally:
        flags.FLAGS.unparse_flags()
    return seen[0]


def test_run_flags_reach_the_config(monkeypatch, tmp_path):
    config = run_config_of(
        monkeypatch,
        "--epochs=3",
        "--student_epochs=5",
        "--lr_schedule=step",
        "--noaugment",
        "--strategy=mirrored",
        "--quiet",
        "--labels_per_class=0",
        "--teacher_learning_rate=0.1",
        "--android",
        "--benchmark_binary=/bin/true",
        "--serial=PHONE1",
        "--taskset=f0",
        "--use_gpu",
        f"--out={tmp_path}",
    )
    assert (config.teacher_epochs, config.student_epochs) == (3, 5)
    assert (config.lr_schedule, config.augment, config.strategy, config.quiet) == (
        "step",
        False,
        "mirrored",
        True,
    )
    assert (config.labels_per_class, config.teacher_learning_rate) == (0, 0.1)
    assert (config.android, config.benchmark_binary, config.serial, config.taskset) == (
        True,
        "/bin/true",
        "PHONE1",
        "f0",
    )
    assert config.use_gpu and not config.use_nnapi and config.augment is False
    assert run_config_of(monkeypatch, f"--out={tmp_path}").augment is None


def test_config_file_epochs_yield_to_flags(monkeypatch, tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("epochs: 4\nteacher_epochs: 7\nseed: 3\n")
    config = run_config_of(monkeypatch, f"--config={file}", f"--out={tmp_path}")
    assert (config.teacher_epochs, config.student_epochs, config.seed) == (7, 4, 3)
    config = run_config_of(monkeypatch, f"--config={file}", "--epochs=2", "--seed=9")
    assert (config.teacher_epochs, config.student_epochs, config.seed) == (2, 2, 9)


def test_ctrl_c_is_one_line_that_says_how_to_resume(monkeypatch, tmp_path, capsys):
    from tfdistill import run as run_lib

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_lib, "run", interrupted)
    argv = flags.FLAGS(["tfdistill", f"--out={tmp_path}"])
    try:
        assert cli._main([*argv, "run"]) == 130
    finally:
        flags.FLAGS.unparse_flags()
    assert capsys.readouterr().err == (
        f"tfdistill run: interrupted; to resume, run it again with --out={tmp_path}\n"
    )
    argv = flags.FLAGS(["tfdistill"])
    try:
        assert cli._main([*argv, "run"]) == 130
    finally:
        flags.FLAGS.unparse_flags()
    assert re.fullmatch(r"[^\n]*--out=runs/\d{8}-\d{6}\n", capsys.readouterr().err)


def test_every_run_flag_lands_in_its_config_field(monkeypatch, tmp_path):
    import dataclasses

    weights = tmp_path / "teacher.keras"
    weights.write_bytes(b"checked when loaded")
    config = run_config_of(
        monkeypatch,
        f"--out={tmp_path}",
        "--dataset=cifar10",
        f"--data_dir={tmp_path}",
        "--teacher=resnet",
        '--teacher_kwargs={"depth": 20}',
        "--student=mobilenet_v1",
        '--student_kwargs={"alpha": 0.25}',
        f"--teacher_weights={weights}",
        "--labels_per_class=5",
        "--teacher_epochs=7",
        "--student_epochs=8",
        "--batch_size=32",
        "--teacher_learning_rate=0.2",
        "--student_learning_rate=0.3",
        "--alpha=0.4",
        "--temperature=2.5",
        "--seed=11",
        "--quantize=none,int8,static_wi8_ai16",
        "--max_accuracy_drop=0.5",
        "--threads=3",
        "--num_runs=9",
        "--prune=0.3",
        "--qat",
        "--compress_epochs=2",
        "--sparsity_l1=1e-4",
        "--sparsity_group_lasso=2e-5",
        "--method=kd+ls",
        "--beta=50",
        "--lr_schedule=constant",
        "--augment",
        "--strategy=one_device",
        "--deterministic",
        "--mixed_precision=bfloat16",
        "--xla=off",
        "--quiet",
        "--android",
        "--benchmark_binary=/bin/true",
        "--adb=/opt/adb",
        "--serial=S1",
        "--use_gpu",
        "--use_nnapi",
        "--benchmark_tool=classic",
        "--enable_op_profiling",
        "--taskset=f0",
        "--prune_channels=0.5",
        "--prune_criterion=bn_gamma",
        "--search_steps=7",
        "--search_step=0.2",
        "--tensorboard",
        "--image_size=40,48",
        "--teacher_views=3",
        '--method_kwargs={"temperature": 2.0}',
        "--teacher_image_size=64",
        f"--cache_dir={tmp_path / 'cache'}",
        "--max_megapixels=20",
        "--unsafe_load",
    )
    assert dataclasses.asdict(config) == {
        "out": str(tmp_path),
        "dataset": "cifar10",
        "data_dir": str(tmp_path),
        "image_size": "40,48",
        "teacher_views": 3,
        "method_kwargs": {"temperature": 2.0},
        "teacher_image_size": "64",
        "cache_dir": str(tmp_path / "cache"),
        "max_megapixels": 20.0,
        "unsafe_load": True,
        "teacher": "resnet",
        "teacher_kwargs": {"depth": 20},
        "student": "mobilenet_v1",
        "student_kwargs": {"alpha": 0.25},
        "labels_per_class": 5,
        "teacher_epochs": 7,
        "student_epochs": 8,
        "batch_size": 32,
        "teacher_learning_rate": 0.2,
        "student_learning_rate": 0.3,
        "alpha": 0.4,
        "temperature": 2.5,
        "seed": 11,
        "quantize": ("none", "int8", "static_wi8_ai16"),
        "max_accuracy_drop": 0.5,
        "threads": 3,
        "bench_runs": 9,
        "prune": 0.3,
        "qat": True,
        "compress_epochs": 2,
        "sparsity_l1": 1e-4,
        "sparsity_group_lasso": 2e-5,
        "method": "kd+ls",
        "beta": 50.0,
        "teacher_weights": str(weights),
        "lr_schedule": "constant",
        "augment": True,
        "strategy": "one_device",
        "deterministic": True,
        "mixed_precision": "bfloat16",
        "xla": "off",
        "tensorboard": True,
        "quiet": True,
        "android": True,
        "benchmark_binary": "/bin/true",
        "adb": "/opt/adb",
        "serial": "S1",
        "use_gpu": True,
        "use_nnapi": True,
        "enable_op_profiling": True,
        "use_npu": False,
        "benchmark_tool": "classic",
        "taskset": "f0",
        "prune_channels": 0.5,
        "latency_budget": None,
        "search_steps": 7,
        "search_step": 0.2,
        "prune_criterion": "bn_gamma",
    }
    file = tmp_path / "run.json"
    file.write_text('{"bench_runs": 7, "threads": 2}')
    config = run_config_of(monkeypatch, f"--config={file}", "--num_runs=3")
    assert (config.bench_runs, config.threads) == (3, 2)


def test_multi_worker_runs_need_a_shared_out_and_tf_config(monkeypatch, tmp_path, capsys):
    from tfdistill import distribute

    original = distribute.strategy_of
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(distribute, "strategy_of", lambda name: pytest.fail("made a strategy"))

    def run(*args: str) -> tuple[int, str]:
        argv = flags.FLAGS(["tfdistill", "--strategy=multi_worker", *args])
        try:
            code = cli._main([*argv, "run"])
        finally:
            flags.FLAGS.unparse_flags()
        return code, capsys.readouterr().err

    assert run() == (
        2,
        "tfdistill run: --strategy=multi_worker needs --out: every worker must name the same "
        "folder.\n",
    )
    monkeypatch.setattr(distribute, "strategy_of", original)
    code, err = run(f"--out={tmp_path / 'run'}")
    assert code == 2 and err.startswith("tfdistill run: --strategy=multi_worker reads the cluster")
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_tensorboard_without_its_package_stops_before_training(monkeypatch):
    import importlib.util

    from tfdistill import run as run_lib

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name)
    )
    with pytest.raises(ValueError, match=r"pip install 'tfdistill\[tensorboard\]'"):
        run_lib.RunConfig(out="unused", tensorboard=True)
    assert run_lib.RunConfig(out="unused").tensorboard is False
