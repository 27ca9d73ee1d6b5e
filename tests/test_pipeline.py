import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from absl import flags

from tfdistill import artifacts, cli, compress, pipeline, report


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = pipeline.RunConfig(
        out=str(out),
        teacher_kwargs={"widths": (4, 8)},
        student_kwargs={"widths": (2, 4)},
        labels_per_class=3,
        teacher_epochs=1,
        student_epochs=1,
        batch_size=128,
        bench_runs=3,
        prune=0.5,
        qat=True,
        compress_epochs=1,
    )
    return out, pipeline.run(config, log=lambda _: None)


def test_run_writes_report_and_models(tiny_run):
    out, result = tiny_run
    assert json.loads((out / "report.json").read_text()) == {
        **result,
        "timings_s": {k: v for k, v in result["timings_s"].items() if k != "report"},
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy_latency.png",
        "report.json",
        "report.md",
        "sizes.png",
        "student_distilled.keras",
        "student_distilled_dynamic.tflite",
        "student_distilled_float16.tflite",
        "student_distilled_fp32.tflite",
        "student_distilled_int8.tflite",
        "student_pruned.keras",
        "student_pruned_fp32.tflite",
        "student_pruned_int8.tflite",
        "student_qat_int8.tflite",
        "student_scratch.keras",
        "teacher.keras",
        "teacher_fp32.tflite",
        "training_curves.png",
    ]
    assert result["dataset"] == {
        "name": "digits",
        "train": 1437,
        "test": 360,
        "num_classes": 10,
        "input_shape": [32, 32, 1],
        "labels_per_class": 3,
        "labeled": 30,
        "skipped_files": 0,
    }
    for entry in (result["teacher"], *result["students"].values()):
        model = keras.models.load_model(out / entry["file"])
        assert entry["params"] == model.count_params()
        assert entry["weight_bytes"] == 4 * model.count_params()
        assert 0.0 <= entry["accuracy"] <= 1.0
    distilled = keras.models.load_model(out / "student_distilled.keras")
    digits = pipeline.data.load("digits")
    accuracy = np.mean(distilled.predict(digits.x_test, verbose=0).argmax(-1) == digits.y_test)
    assert result["students"]["distilled"]["accuracy"] == pytest.approx(accuracy)
    assert result["students"]["scratch"]["params"] == result["students"]["distilled"]["params"]
    table = report.format_table(result)
    assert "student (distilled)" in table and f"{result['teacher']['params']:,}" in table


def test_run_exports_evaluates_and_times_tflite(tiny_run):
    out, result = tiny_run
    rows = {row["file"]: row for row in result["tflite"]}
    assert [(r["model"], r["quantization"]) for r in result["tflite"]] == [
        ("student_distilled", "none"),
        ("student_distilled", "float16"),
        ("student_distilled", "dynamic"),
        ("student_distilled", "int8"),
        ("student_pruned", "none"),
        ("student_pruned", "int8"),
        ("student_qat", "int8"),
        ("teacher", "none"),
    ]
    fp32 = rows["student_distilled_fp32.tflite"]
    assert fp32["accuracy"] == pytest.approx(result["students"]["distilled"]["accuracy"], abs=1e-9)
    assert fp32["agreement"] == 1.0 and fp32["max_abs_error"] < 1e-3
    assert rows["teacher_fp32.tflite"]["agreement"] == 1.0
    for name, row in rows.items():
        assert row["size_bytes"] == (out / name).stat().st_size
        assert row["gzip_bytes"] == len(gzip.compress((out / name).read_bytes(), 9, mtime=0))
        assert row["latency_us"] > 0 and 0.0 <= row["accuracy"] <= 1.0
    assert [r["file"] for r in result["tflite"] if r["sparse_format"]] == [
        "student_pruned_fp32.tflite"
    ]
    assert result["students"]["pruned"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    pruned = keras.models.load_model(out / "student_pruned.keras")
    assert compress.overall_sparsity(pruned) == result["students"]["pruned"]["sparsity"]
    assert rows["student_pruned_fp32.tflite"]["agreement"] == 1.0
    assert rows["student_qat_int8.tflite"]["agreement"] >= 0.9
    assert rows["student_distilled_int8.tflite"]["agreement"] >= 0.9
    assert "student_distilled_int8.tflite" in report.format_table(result)


def test_cli_convert_and_bench(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    target = tmp_path / "s.tflite"
    argv = flags.FLAGS(
        ["tfdistill", "--quantization=int8", "--calibration_samples=8", f"--out={target}"]
    )
    try:
        assert cli._main([*argv, "convert", str(out / "student_distilled.keras")]) == 0
        assert f"{target} (" in capsys.readouterr().out and target.stat().st_size > 0
        flags.FLAGS.unparse_flags()
        argv = flags.FLAGS(["tfdistill", "--num_runs=3", "--threads=2"])
        assert cli._main([*argv, "bench", str(target)]) == 0
        printed = capsys.readouterr().out
        assert "2 threads, 3 runs" in printed
        assert cli._main([*argv, "bench", str(tmp_path / "missing.tflite")]) == 2
        assert "model file not found" in capsys.readouterr().err
        flags.FLAGS.unparse_flags()
        argv = flags.FLAGS(["tfdistill", "--quantization=int4"])
        assert cli._main([*argv, "convert", str(out / "teacher.keras")]) == 2
        assert "'int4' is not one of ['none', 'float16'" in capsys.readouterr().err
        assert cli._main([*argv, "convert", str(out / "report.json")]) == 2
        flags.FLAGS.unparse_flags()
        argv = flags.FLAGS(["tfdistill", "--android"])
        assert cli._main([*argv, "bench", str(target)]) == 2
        assert "--android needs --benchmark_binary" in capsys.readouterr().err
    finally:
        flags.FLAGS.unparse_flags()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"alpha": 1.5}, "alpha must be in \\[0, 1\\], got 1.5"),
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"labels_per_class": 0}, "labels_per_class must be >= 1, got 0"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; available: digits, mnist"),
        ({"student": "vgg"}, "Unknown student model 'vgg'; available: \\['convnet'"),
        ({"quantize": ("none", "int4")}, "Unknown quantization \\['int4'\\]; choose from"),
        ({"threads": 0}, "threads must be >= 1, got 0"),
        ({"prune": 1.0}, "prune \\(the target sparsity\\) must be in \\(0, 1\\), got 1.0"),
        ({"compress_epochs": 0}, "compress_epochs must be >= 1, got 0"),
    ],
)
def test_bad_config_fails_before_training(change, message):
    with pytest.raises(ValueError, match=message):
        pipeline.RunConfig(out="unused", **change)


def test_cli_rejects_unknown_commands_and_bad_flags(capsys):
    argv = flags.FLAGS(["tfdistill", "--alpha=3", "run"])
    try:
        assert cli._main(argv) == 2
        assert "alpha must be in [0, 1], got 3.0" in capsys.readouterr().err
        with pytest.raises(Exception, match="usage: tfdistill run .*got train"):
            cli._main(["tfdistill", "train"])
    finally:
        flags.FLAGS.unparse_flags()


def test_console_script_reports_errors_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tfdistill.cli", "run", "--student_kwargs=[1]", f"--out={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "--student_kwargs must be a JSON object" in done.stderr
    assert "Traceback" not in done.stderr


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path):
    path = tmp_path / "report.json"
    report.write_json({"v": 1}, path)

    def fail(f):
        f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        artifacts.write_atomic(path, fail)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    with pytest.raises(ValueError, match="saved as .keras files"):
        artifacts.save_model(keras.Sequential([keras.Input((1,))]), tmp_path / "model.h5")


def test_readme_example_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    snippet = re.search(r"```python\n(import keras\nimport tfdistill\n.*?)```", readme, re.S)[1]
    monkeypatch.chdir(tmp_path)
    exec(re.sub(r"epochs=\d+", "epochs=1", snippet), {})
    assert keras.models.load_model(tmp_path / "student.keras").count_params() == 1758


def test_report_markdown_and_plots(tiny_run):
    out, result = tiny_run
    for name in pipeline.PLOTS.values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert "| student (distilled) | " in text and "| student_qat_int8.tflite | " in text
    assert "![accuracy against latency](accuracy_latency.png)" in text
    assert set(result["history"]) == {"teacher", "student (scratch)", "student (distilled)"}
    assert len(result["history"]["student (distilled)"]["loss"]) == 1


def test_pareto_front_by_hand():
    from tfdistill.plots import pareto_front

    points = [(10.0, 90.0), (20.0, 95.0), (15.0, 85.0), (20.0, 94.0), (5.0, 80.0), (5.0, 80.0)]
    # (15, 85) loses to (10, 90); (20, 94) to (20, 95); the two (5, 80) tie and both stay.
    assert pareto_front(points) == [4, 5, 0, 1]
    assert pareto_front([]) == []


def test_config_files_json_and_yaml(tmp_path):
    (tmp_path / "run.json").write_text('{"alpha": 0.5, "quantize": ["none"], "teacher_epochs": 3}')
    (tmp_path / "run.yaml").write_text("student_kwargs:\n  widths: [2, 4]\nprune: 0.25\n")
    assert pipeline.read_config(tmp_path / "run.json") == {
        "alpha": 0.5,
        "quantize": ("none",),
        "teacher_epochs": 3,
    }
    assert pipeline.read_config(tmp_path / "run.yaml") == {
        "student_kwargs": {"widths": [2, 4]},
        "prune": 0.25,
    }
    (tmp_path / "bad.json").write_text('{"alpah": 0.5, "epochs": 3}')
    with pytest.raises(ValueError, match=r"keys \['alpah', 'epochs'\] are unknown; valid keys"):
        pipeline.read_config(tmp_path / "bad.json")
    for text, message in (
        ('{"teacher_epochs": "3"}', "'teacher_epochs' must be an integer, got '3'"),
        ('{"prune": "0.5"}', "'prune' must be a number, got '0.5'"),
        ('{"qat": 1}', "'qat' must be true or false, got 1"),
    ):
        (tmp_path / "typed.json").write_text(text)
        with pytest.raises(ValueError, match=message):
            pipeline.read_config(tmp_path / "typed.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "yaml", None)
        with pytest.raises(ValueError, match="needs PyYAML: pip install pyyaml"):
            pipeline.read_config(tmp_path / "run.yaml")
    (tmp_path / "broken.yaml").write_text("a: [")
    with pytest.raises(ValueError, match="does not parse"):
        pipeline.read_config(tmp_path / "broken.yaml")


def test_cli_config_file_is_overridden_by_flags(tmp_path, capsys):
    (tmp_path / "run.json").write_text('{"alpha": 3.0, "dataset": "imagenet"}')
    argv = flags.FLAGS(["tfdistill", f"--config={tmp_path / 'run.json'}", "--alpha=0.5", "run"])
    try:
        assert cli._main(argv) == 2
        error = capsys.readouterr().err
        assert "unknown dataset 'imagenet'" in error and "alpha" not in error
        flags.FLAGS.unparse_flags()
        argv = flags.FLAGS(["tfdistill", f"--config={tmp_path / 'missing.json'}", "run"])
        assert cli._main(argv) == 2
        assert "missing.json' not found" in capsys.readouterr().err
    finally:
        flags.FLAGS.unparse_flags()


def test_attention_methods_distil_with_their_terms():
    from tfdistill.attention import AttentionTransfer, GradientAttentionTransfer

    config = pipeline.RunConfig(out="unused", method="kd+at", beta=10.0)
    assert isinstance(pipeline.attention_of(config), AttentionTransfer)
    assert pipeline.attention_of(config).beta == 10.0
    gat = pipeline.attention_of(pipeline.RunConfig(out="unused", method="gat"))
    assert isinstance(gat, GradientAttentionTransfer) and gat.beta == 0.1
    assert pipeline.attention_of(pipeline.RunConfig(out="unused")) is None
    with pytest.raises(ValueError, match="Unknown method 'fitnets'; choose from"):
        pipeline.RunConfig(out="unused", method="fitnets")

    ds = pipeline.data.load("digits")
    config = pipeline.RunConfig(
        out="unused",
        method="at",
        teacher_kwargs={"widths": (4, 8)},
        student_kwargs={"widths": (2, 4)},
        student_epochs=1,
        batch_size=256,
    )
    teacher = pipeline._classifier("convnet", {"widths": (4, 8)}, ds, "teacher")
    init = pipeline._classifier("convnet", {"widths": (2, 4)}, ds, "student").get_weights()
    labeled = pipeline.data.label_subset(ds.y_train, 3, seed=0)
    student = pipeline.distil(config, ds, teacher, None, init, labeled)
    history = student.distillation_history
    assert history["attention_loss"][0] > 0 and history["distillation_loss"][0] > 0
    assert not np.allclose(student.get_weights()[0], init[0])
