import dataclasses
import gzip
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfdistill import artifacts, cli, compress, data, report, resume
from tfdistill import run as run_lib
from tfdistill.distiller import Distiller
from tfdistill.export.interpreter import litert_interpreter
from tfdistill.progress import Progress
from tfdistill.progress import duration as progress_duration
from tfdistill.run import delivery, training

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

TINY = {
    "teacher_kwargs": {"widths": (4, 8)},
    "student_kwargs": {"widths": (2, 4)},
    "labels_per_class": 3,
    "teacher_epochs": 1,
    "student_epochs": 2,
    "batch_size": 128,
    "bench_runs": 3,
    "prune": 0.5,
    "qat": True,
    "compress_epochs": 1,
    "prune_channels": 0.5,
    "augment": True,
    "teacher_views": 2,  # every student stage distils from 2 stored views per image
    "tensorboard": True,
}


class Interrupt(keras.callbacks.Callback):
    """Stops the first distillation fit after its first epoch, as Ctrl-C would; records the
    epochs every fit starts, and the Distiller's optimizer step and student weights where the
    fit stopped and where the next one starts."""

    def __init__(self):
        super().__init__()
        self.armed = True
        self.started: list[tuple[str, int]] = []
        self.states: list[tuple[int, list[np.ndarray]]] = []

    def _state(self):
        student = self.model.student.get_weights()
        return int(self.model.optimizer.iterations.numpy()), student

    def on_epoch_begin(self, epoch, logs=None):
        self.started.append((type(self.model).__name__, epoch))
        if isinstance(self.model, Distiller) and not self.armed:
            self.states.append(self._state())

    def on_epoch_end(self, epoch, logs=None):
        if self.armed and isinstance(self.model, Distiller):
            self.armed = False
            self.states.append(self._state())
            raise KeyboardInterrupt


@dataclasses.dataclass
class TinyRun:
    out: Path
    config: run_lib.RunConfig
    result: dict
    interrupted: dict
    logs: list[str]
    epochs_started: list[tuple[str, int]]
    states: list[tuple[int, list[np.ndarray]]]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Every stage on tiny settings, interrupted in the distil stage and then run again."""
    out = tmp_path_factory.mktemp("run")
    config = run_lib.RunConfig(out=str(out), **TINY)
    interrupt = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        run_lib.run(config, log=lambda _: None, callbacks=(interrupt,), backup_interval_s=0)
    interrupted = {
        "ledger": json.loads((out / "run.json").read_text()),
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
        "views": {p.name: p.stat().st_mtime_ns for p in out.glob("teacher_views_*")},
    }
    interrupt.started.clear()
    logs: list[str] = []
    result = run_lib.run(config, log=logs.append, callbacks=(interrupt,))
    return TinyRun(out, config, result, interrupted, logs, interrupt.started, interrupt.states)


def test_an_interrupted_run_resumes_where_it_stopped(tiny_run):
    ledger, files = tiny_run.interrupted["ledger"], tiny_run.interrupted["files"]
    assert list(ledger["stages"]) == ["data", "teacher", "scratch"]
    assert ledger["fingerprint"] == resume.fingerprint(run_lib.fingerprinted(tiny_run.config))
    assert "teacher.keras" in files and "student_scratch.keras" in files
    assert ".backup/distil/epochs.json" in files and "student_distilled.keras" not in files
    assert "   teacher: finished in an earlier run, loaded" in tiny_run.logs
    assert "   scratch: finished in an earlier run, loaded" in tiny_run.logs
    assert "   distil: resuming from its last backed-up epoch" in tiny_run.logs
    assert tiny_run.epochs_started == [("Distiller", 1), ("Distiller", 0)]  # prune_channels
    (stopped_step, stopped), (resumed_step, resumed) = tiny_run.states[:2]
    assert stopped_step == resumed_step == 12  # ceil(1437 / 128): Adam's step came back
    for before, after in zip(stopped, resumed, strict=True):
        np.testing.assert_array_equal(before, after)
    history = tiny_run.result["history"]["student (distilled)"]
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert tiny_run.result["loaded_stages"] == ["teacher", "scratch"]
    assert not (tiny_run.out / ".backup").exists()
    views = tiny_run.interrupted["views"]  # labelled once, before the interruption, and reused
    assert sorted(name.split("_")[-1] for name in views) == ["logits.npy", "params.npy"]
    assert views == {p.name: p.stat().st_mtime_ns for p in tiny_run.out.glob("teacher_views_*")}
    names = run_lib.stage_names(tiny_run.config)
    banners = [line.split()[2:4] for line in tiny_run.logs if line.startswith("── stage")]
    assert banners == [[f"{i}/{len(names)}", f"{name}:"] for i, name in enumerate(names, 1)]


def test_a_finished_run_is_loaded_and_a_lost_file_rebuilt(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run.out, copy)
    (copy / "student_qat.weights.h5").unlink()
    changed = dataclasses.replace(tiny_run.config, out=str(copy), bench_runs=4, quiet=True)
    again = run_lib.run(changed, log=lambda _: None)
    assert again["loaded_stages"] == ["teacher", "scratch", "distil", "prune_channels", "prune"]
    assert (copy / "student_qat.weights.h5").is_file()
    assert json.loads((copy / "bench.json").read_text())["num_runs"] == 4
    assert (copy / "report.json").stat().st_mode & 0o777 == artifacts.FILE_MODE
    different_bench = run_lib.run(dataclasses.replace(changed, bench_runs=5), log=lambda _: None)
    loaded = ["teacher", "scratch", "distil", "prune_channels", "prune", "qat", "export"]
    assert different_bench["loaded_stages"] == loaded
    records = json.loads((copy / "run.json").read_text())["stages"]
    assert records["bench"]["settings"]["bench_runs"] == 5
    measured = ("latency_us", "latency_p50_us", "size_bytes", "gzip_bytes")
    for before, after in zip(tiny_run.result["tflite"], again["tflite"], strict=True):
        if after["model"] == "student_qat":  # trained again, on a new shuffle of the batches
            assert after["file"] == before["file"] and after["agreement"] >= 0.9
            continue
        assert {k: v for k, v in after.items() if k not in measured} == {
            k: v for k, v in before.items() if k not in measured
        }
        assert after["size_bytes"] == pytest.approx(before["size_bytes"], abs=64)  # op names
    assert again["students"] == tiny_run.result["students"]
    assert again["history"] == tiny_run.result["history"]


def test_another_config_in_the_same_folder_is_refused(tiny_run):
    changed = dataclasses.replace(tiny_run.config, student_epochs=3, seed=1)
    with pytest.raises(ValueError) as error:
        run_lib.run(changed, log=lambda _: None)
    assert str(error.value) == (
        f"--out {str(tiny_run.out)!r} holds a run of another config (seed: 0 -> 1; "
        f"student_epochs: 2 -> 3); pass a new --out to keep both runs, or delete "
        f"{str(tiny_run.out)!r} to start this one over."
    )
    quiet = dataclasses.replace(tiny_run.config, quiet=True, strategy="one_device")
    assert run_lib.fingerprinted(quiet) == run_lib.fingerprinted(tiny_run.config)


def test_run_writes_report_and_models(tiny_run):
    out, result = tiny_run.out, tiny_run.result
    assert json.loads((out / "report.json").read_text()) == {
        **result,
        "timings_s": {k: v for k, v in result["timings_s"].items() if k != "report"},
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy_latency.png",
        "bench.json",
        "report.json",
        "report.md",
        "run.json",
        "sizes.png",
        "student_distilled.keras",
        "student_distilled_dynamic.tflite",
        "student_distilled_float16.tflite",
        "student_distilled_fp32.tflite",
        "student_distilled_int8.tflite",
        "student_pruned.keras",
        "student_pruned_channels.keras",
        "student_pruned_channels_dynamic.tflite",
        "student_pruned_channels_float16.tflite",
        "student_pruned_channels_fp32.tflite",
        "student_pruned_channels_int8.tflite",
        "student_pruned_fp32.tflite",
        "student_pruned_int8.tflite",
        "student_qat.weights.h5",
        "student_qat_int8.tflite",
        "student_scratch.keras",
        "teacher.keras",
        "teacher_fp32.tflite",
        *sorted(tiny_run.interrupted["views"]),
        "tensorboard",
        "training_curves.png",
    ]
    assert result["dataset"] == {
        "name": "digits",
        "train": 1437,
        "test": 360,
        "num_classes": 10,
        "input_shape": [32, 32, 1],
        "pixel_max": 16.0,
        "augmented": True,
        "labels_per_class": 3,
        "labeled": 30,
        "skipped_files": 0,
        "skipped_by_reason": {},
        "streamed": False,
        "stored_shape": None,
    }
    assert result["teacher"]["input_shape"] == result["dataset"]["input_shape"] == [32, 32, 1]
    for entry in (result["teacher"], *result["students"].values()):
        model = keras.models.load_model(out / entry["file"])
        assert entry["params"] == model.count_params()
        assert entry["weight_bytes"] == 4 * model.count_params()
        assert 0.0 <= entry["accuracy"] <= 1.0
    distilled = keras.models.load_model(out / "student_distilled.keras")
    digits = data.load("digits").raw_pixels()
    accuracy = np.mean(distilled.predict(digits.x_test, verbose=0).argmax(-1) == digits.y_test)
    assert result["students"]["distilled"]["accuracy"] == pytest.approx(accuracy)
    assert result["students"]["scratch"]["params"] == result["students"]["distilled"]["params"]
    table = report.format_table(result)
    assert "student (distilled)" in table and f"{result['teacher']['params']:,}" in table


def test_run_exports_evaluates_and_times_tflite(tiny_run):
    out, result = tiny_run.out, tiny_run.result
    rows = {row["file"]: row for row in result["tflite"]}
    assert [(r["model"], r["quantization"]) for r in result["tflite"]] == [
        ("student_distilled", "none"),
        ("student_distilled", "float16"),
        ("student_distilled", "dynamic"),
        ("student_distilled", "int8"),
        ("student_pruned_channels", "none"),
        ("student_pruned_channels", "float16"),
        ("student_pruned_channels", "dynamic"),
        ("student_pruned_channels", "int8"),
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


def test_the_channel_pruned_student_is_smaller_distilled_and_exported(tiny_run):
    """`--prune_channels=0.5`: half the channels of every prunable group go (4 -> 2 and 2 -> 1
    in the tiny convnet), the smaller dense student fine-tunes with the Distiller and ships in
    every `--quantize` mode, checked in LiteRT against its Keras model."""
    out, result = tiny_run.out, tiny_run.result
    entry, distilled = result["students"]["pruned_channels"], result["students"]["distilled"]
    assert set(entry) >= {"accuracy", "params", "macs", "file"}
    assert entry["params"] < distilled["params"] and entry["macs"] < distilled["macs"]
    model = keras.models.load_model(out / "student_pruned_channels.keras")
    assert entry["params"] == model.count_params()
    digits = data.load("digits").raw_pixels()
    accuracy = training.accuracy(model, digits, 128)
    assert entry["accuracy"] == accuracy
    rows = {row["file"]: row for row in result["tflite"]}
    fp32 = rows["student_pruned_channels_fp32.tflite"]
    assert fp32["accuracy"] == pytest.approx(accuracy, abs=1e-9) and fp32["agreement"] == 1.0
    history = result["history"]["student (pruned channels)"]
    assert len(history["loss"]) == tiny_run.config.compress_epochs
    models = report.format_table(result).split("\n\n")[0].splitlines()[1:]
    assert any(line.startswith("student (pruned channels)  ") for line in models)
    assert len({len(line) for line in models}) == 1  # the column widens for the longer name


def test_cli_convert_and_bench(tiny_run, tmp_path, capsys):
    out = tiny_run.out
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
        ({"labels_per_class": -1}, "labels_per_class must be >= 0 \\(0: every label\\), got -1"),
        ({"lr_schedule": "cyclic"}, "Unknown lr_schedule 'cyclic'; choose from \\['cosine'"),
        ({"strategy": "tpu"}, "Unknown strategy 'tpu'; choose from \\['default', 'mirrored'"),
        ({"android": True}, "android needs benchmark_binary"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; available: digits, mnist"),
        ({"student": "vgg"}, "Unknown student model 'vgg'; available: \\['convnet'"),
        ({"quantize": ("none", "int4")}, "Unknown quantization \\['int4'\\]; choose from"),
        ({"threads": 0}, "threads must be >= 1, got 0"),
        ({"prune": 1.0}, "prune \\(the target sparsity\\) must be in \\(0, 1\\), got 1.0"),
        ({"compress_epochs": 0}, "compress_epochs must be >= 1, got 0"),
        (
            {"mixed_precision": "fp8"},
            "Unknown mixed_precision 'fp8'; choose from \\['none', 'float16', 'bfloat16'\\]",
        ),
    ],
)
def test_bad_config_fails_before_training(change, message):
    with pytest.raises(ValueError, match=message):
        run_lib.RunConfig(out="unused", **change)


def test_cli_rejects_unknown_commands_and_bad_flags(capsys):
    argv = flags.FLAGS(["tfdistill", "--alpha=3", "run"])
    try:
        assert cli._main(argv) == 2
        assert "alpha must be in [0, 1], got 3.0" in capsys.readouterr().err
        with pytest.raises(Exception, match="usage: tfdistill run .*got train"):
            cli._main(["tfdistill", "train"])
    finally:
        flags.FLAGS.unparse_flags()


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
    out, result = tiny_run.out, tiny_run.result
    for name in delivery.PLOTS.values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert "| student (distilled) | " in text and "| student_qat_int8.tflite | " in text
    assert "![accuracy against latency](accuracy_latency.png)" in text
    assert list(result["history"]) == [
        "teacher",
        "student (scratch)",
        "student (distilled)",
        "student (pruned channels)",
    ]
    assert len(result["history"]["student (distilled)"]["loss"]) == 2


def test_tensorboard_has_every_training_stage(tiny_run):
    """`--tensorboard`: one folder of event files per training stage, Keras 3 and tf_keras
    alike, with the losses, the distillation terms and the learning rate of every epoch."""
    import tensorflow as tf

    root = tiny_run.out / "tensorboard"
    stages = ["teacher", "scratch", "distil", "prune_channels", "prune", "qat"]
    assert sorted(p.name for p in root.iterdir()) == sorted(stages)
    tags: dict[str, set[str]] = {}
    for stage in stages:
        for path in (root / stage).rglob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                tags.setdefault(stage, set()).update(v.tag for v in event.summary.value)
    assert {"epoch_loss", "epoch_learning_rate"} <= tags["teacher"]
    assert {"epoch_distillation_loss", "epoch_student_loss"} <= tags["distil"]
    assert "epoch_loss" in tags["qat"]
    text = (tiny_run.out / "report.md").read_text()
    assert f"Training curves: `tensorboard --logdir {root}`." in text


def test_pareto_front_by_hand():
    from tfdistill.plots import pareto_front

    points = [(10.0, 90.0), (20.0, 95.0), (15.0, 85.0), (20.0, 94.0), (5.0, 80.0), (5.0, 80.0)]
    # (15, 85) loses to (10, 90); (20, 94) to (20, 95); the two (5, 80) tie and both stay.
    assert pareto_front(points) == [4, 5, 0, 1]
    assert pareto_front([]) == []


def test_config_files_json_and_yaml(tmp_path):
    (tmp_path / "run.json").write_text('{"alpha": 0.5, "quantize": ["none"], "teacher_epochs": 3}')
    (tmp_path / "run.yaml").write_text("student_kwargs:\n  widths: [2, 4]\nprune: 0.25\n")
    assert run_lib.read_config(tmp_path / "run.json") == {
        "alpha": 0.5,
        "quantize": ("none",),
        "teacher_epochs": 3,
    }
    assert run_lib.read_config(tmp_path / "run.yaml") == {
        "student_kwargs": {"widths": [2, 4]},
        "prune": 0.25,
    }
    (tmp_path / "epochs.json").write_text('{"epochs": 3, "student_epochs": 5}')
    assert run_lib.read_config(tmp_path / "epochs.json") == {
        "teacher_epochs": 3,
        "student_epochs": 5,
    }
    (tmp_path / "bad.json").write_text('{"alpah": 0.5, "epoch": 3}')
    with pytest.raises(ValueError, match=r"keys \['alpah', 'epoch'\] are unknown; valid keys"):
        run_lib.read_config(tmp_path / "bad.json")
    for text, message in (
        ('{"teacher_epochs": "3"}', "'teacher_epochs' must be an integer, got '3'"),
        ('{"prune": "0.5"}', "'prune' must be a number, got '0.5'"),
        ('{"qat": 1}', "'qat' must be true or false, got 1"),
    ):
        (tmp_path / "typed.json").write_text(text)
        with pytest.raises(ValueError, match=message):
            run_lib.read_config(tmp_path / "typed.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "yaml", None)
        with pytest.raises(ValueError, match="needs PyYAML: pip install pyyaml"):
            run_lib.read_config(tmp_path / "run.yaml")
    (tmp_path / "broken.yaml").write_text("a: [")
    with pytest.raises(ValueError, match="does not parse"):
        run_lib.read_config(tmp_path / "broken.yaml")


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
    from tfdistill.hints import FeatureHint

    config = run_lib.RunConfig(out="unused", method="kd+at", beta=10.0)
    assert isinstance(training.features_of(config), AttentionTransfer)
    assert training.features_of(config).beta == 10.0
    gat = training.features_of(run_lib.RunConfig(out="unused", method="gat"))
    assert isinstance(gat, GradientAttentionTransfer) and gat.beta == 0.1
    assert training.features_of(run_lib.RunConfig(out="unused")) is None
    hint = training.features_of(
        run_lib.RunConfig(out="unused", method="fitnet", method_kwargs={"pairs": "all"})
    )
    assert isinstance(hint, FeatureHint) and (hint.pairs, hint.beta) == ("all", 100.0)
    with pytest.raises(ValueError, match=r"method_kwargs \['beta'\] do not apply"):
        run_lib.RunConfig(out="unused", method="kd+fitnet", method_kwargs={"beta": 1.0})
    with pytest.raises(ValueError, match="Unknown method 'fitnets'; choose from"):
        run_lib.RunConfig(out="unused", method="fitnets")

    ds = data.load("digits").raw_pixels()
    teacher = training.classifier("convnet", {"widths": (4, 8)}, ds, "teacher")
    init = training.classifier("convnet", {"widths": (2, 4)}, ds, "student").get_weights()
    labeled = data.label_subset(ds.y_train, 3, seed=0)
    for method, term in (("at", "attention_loss"), ("kd+fitnet", "hint_loss")):
        config = run_lib.RunConfig(
            out="unused",
            method=method,
            teacher_kwargs={"widths": (4, 8)},
            student_kwargs={"widths": (2, 4)},
            student_epochs=1,
            batch_size=256,
        )
        images = training.distillation_elements(config, ds, None, labeled)
        trained = training.distil(config, ds, teacher, images, init)
        student, history = dataclasses.astuple(trained)
        assert history[term][0] > 0 and history["distillation_loss"][0] > 0
        assert not np.allclose(student.get_weights()[1], init[1])
    assert not any("hint" in w.path for w in student.weights)


def test_learning_rate_schedules_by_hand():
    step = training.lr_schedule(1.0, 100, "step")
    values = [float(step(s)) for s in (0, 30, 31, 60, 61, 80, 81, 99)]
    assert values == pytest.approx([1, 1, 0.2, 0.2, 0.04, 0.04, 0.008, 0.008])
    cosine = training.lr_schedule(1.0, 100, "cosine")
    assert [float(cosine(s)) for s in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-6)
    assert training.lr_schedule(0.3, 100, "constant") == 0.3


def test_augmentation_is_for_natural_images_and_keeps_the_teacher_online():
    def config(**kwargs):
        return run_lib.RunConfig(out="unused", **kwargs)

    assert not training.augments(config())
    assert training.augments(config(dataset="cifar10"))
    assert training.augments(config(dataset="folder:/photos"))
    assert not training.augments(config(dataset="cifar10", augment=False))
    assert training.augments(config(augment=True))
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (8, 6, 6, 1)).astype("float32")
    ds = data.Dataset(
        "toy", x, np.arange(8) % 2, x, np.arange(8) % 2, 2, ("a", "b"), pixel_max=255.0
    )
    teacher = training.classifier("convnet", {"widths": (2,)}, ds, "teacher")
    augmented = config(augment=True, batch_size=8)
    online = training.distillation_elements(augmented, ds, teacher, [0, 1])
    assert online[0] is ds.x_train and online[1].tolist() == [0, 1, -1, -1, -1, -1, -1, -1]
    for batches in (
        training.epoch_batches(augmented, ds, online, [(6, 6)]),
        training.stream_of(augmented, ds, online, [(6, 6)])(0),
    ):
        images, labels = next(iter(batches))
        assert images.shape == (8, 6, 6, 1) and sorted(labels.numpy().tolist()).count(-1) == 6
        assert sorted(np.unique(images)) != sorted(np.unique(x))  # crops pad with zeros
    (inputs, labels) = training.distillation_elements(config(batch_size=8), ds, teacher, [0, 1])
    assert set(inputs) == {"inputs", "teacher_logits"} and labels.tolist() == online[1].tolist()
    np.testing.assert_allclose(inputs["teacher_logits"], teacher(x), rtol=1e-5, atol=1e-5)


def test_a_given_teacher_is_checked_against_the_data(tiny_run, tmp_path):
    digits = data.load("digits").raw_pixels()
    teacher, warning = training.load_teacher(tiny_run.out / "teacher.keras", digits)
    assert teacher.name == "teacher" and warning is None
    fewer = dataclasses.replace(digits, num_classes=3, class_names=("0", "1", "2"))
    with pytest.raises(ValueError, match=r"maps \(32, 32, 1\) images to 10 classes, but "):
        training.load_teacher(tiny_run.out / "teacher.keras", fewer)
    plain = keras.Sequential(
        [keras.Input((32, 32, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    plain.save(tmp_path / "plain.keras")
    _, warning = training.load_teacher(tmp_path / "plain.keras", digits)
    assert "does not start with a Rescaling layer" in warning and "[0, 16]" in warning
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras' does not load"):
        training.load_teacher(tmp_path / "broken.keras", digits)
    with pytest.raises(FileNotFoundError, match="teacher_weights 'missing.keras' is not a file"):
        run_lib.RunConfig(out="unused", teacher_weights="missing.keras")
    given = run_lib.RunConfig(out="unused", teacher_weights=str(tiny_run.out / "teacher.keras"))
    assert run_lib.stage_work(given, digits)["teacher"] == 0
    assert run_lib.stage_work(tiny_run.config, digits) == {
        "data": 0,
        "teacher": 12,
        "scratch": 24,
        "distil": 24,
        "prune_channels": 12,
        "prune": 12,
        "qat": 12,
        "export": 0,
        "bench": 0,
        "report": 0,
    }
    digest = hashlib.sha256((tiny_run.out / "teacher.keras").read_bytes()).hexdigest()
    assert run_lib.fingerprinted(given)["teacher_weights_sha256"] == digest


def test_training_stages_run_under_a_mirrored_strategy(mirrored):
    ds = data.load("digits").raw_pixels()
    ds = dataclasses.replace(ds, x_train=ds.x_train[:256], y_train=ds.y_train[:256])
    config = run_lib.RunConfig(
        out="unused", teacher_kwargs={"widths": (2, 4)}, teacher_epochs=1, batch_size=64
    )
    with mirrored.scope():
        trained = training.train_teacher(config, ds)
    kernel = trained.model.trainable_variables[0].value
    assert isinstance(kernel, tf.distribute.DistributedValues)
    assert trained.model.jit_compile is False  # XLA is off under tf.distribute
    assert len(trained.history["loss"]) == 1 and np.isfinite(trained.history["loss"][0])


def test_xla_setting_decides_jit_compile(mirrored, xla_auto):
    """ "auto" is off on this CPU-only machine (a run's few hundred steps do not repay XLA's
    compilation); "on" and "off" are taken as given, also under a strategy."""
    assert not tf.config.list_physical_devices("GPU")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    decide = training.use_xla
    assert decide(run_lib.RunConfig(out="unused"), model) is False
    assert decide(run_lib.RunConfig(out="unused", xla="on"), model) is True
    assert decide(run_lib.RunConfig(out="unused", xla="off"), model) is False
    with mirrored.scope():
        replicated = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert decide(run_lib.RunConfig(out="unused", xla="on"), replicated) is True
    with pytest.raises(ValueError, match=r"Unknown xla 'yes'; choose from \['auto', 'on', 'off'\]"):
        run_lib.RunConfig(out="unused", xla="yes")
    with pytest.raises(ValueError, match="xla='on' and deterministic cannot go together"):
        run_lib.RunConfig(out="unused", xla="on", deterministic=True)
    assert "xla" not in run_lib.fingerprinted(run_lib.RunConfig(out="unused"))
    assert run_lib.fingerprinted(run_lib.RunConfig(out="unused", xla="off"))["xla"] == "off"


def test_progress_estimates_the_time_left_from_the_pace_so_far():
    now = [0.0]
    lines = []
    work = {"data": 0, "teacher": 50, "a": 100, "b": 300, "c": 0}
    progress = Progress(
        work, kinds={"a": "student", "b": "student"}, log=lines.append, clock=lambda: now[0]
    )
    for stage, seconds in (("data", 1.0), ("teacher", 60.0)):
        progress.start(stage)
        now[0] += seconds
        progress.finish(stage)
    assert progress.eta() is None  # no student stage has run yet
    progress.start("a", "first")
    now[0] += 20.0
    assert progress.finish("a") == 20.0
    progress.start("b")
    assert lines[-1] == "── stage 4/5 b · about 1 min 00 s of training left"
    now[0] += 30.0
    progress.finish("b", skipped=True)
    assert progress.eta() is None
    resumed = Progress({"a": 100, "b": 100}, kinds={"a": "s", "b": "s"}, clock=lambda: now[0])
    resumed.start("a")
    now[0] += 1.0
    resumed.finish("a", paced=False)  # ran a tenth of its steps after a resume
    assert resumed.eta() is None
    assert lines[4:6] == ["── stage 3/5 a: first", "   a: done in 20 s"]
    assert (progress_duration(59.4), progress_duration(3725)) == ("59 s", "1 h 02 min")
    silent = Progress({"a": 1}, quiet=True, log=lines.append)
    silent.start("a")
    assert silent.fit_verbose == 0 and len(lines) == 8


def test_the_ledger_refuses_a_damaged_file_and_the_epoch_log_rewrites_resumed_epochs(tmp_path):
    (tmp_path / resume.LEDGER).write_text("{not json")
    with pytest.raises(ValueError, match="run.json is not a tfdistill run ledger"):
        resume.Ledger(tmp_path, {"seed": 0})
    log = resume.EpochLog(tmp_path / "epochs.json")
    for epoch in range(3):
        log.on_epoch_end(epoch, {"loss": float(epoch)})
    again = resume.EpochLog(tmp_path / "epochs.json")
    again.on_epoch_end(1, {"loss": 9.0})
    assert again.history == {"loss": [0.0, 9.0]}
    assert resume.fingerprint({"a": 1, "b": 2}) == resume.fingerprint({"b": 2, "a": 1})
    (tmp_path / resume.LEDGER).unlink()
    ledger = resume.Ledger(tmp_path, {"seed": 0})
    for stage in "abc":
        ledger.finish(stage, {"seconds": 1})
    ledger.backup_dir("b").mkdir(parents=True)
    ledger.start("b", ["a", "b", "c"], keep_backup=True)
    assert list(resume.Ledger(tmp_path, {"seed": 0}).stages) == ["a"]
    assert ledger.backup_dir("b").is_dir()
    ledger.start("b", ["a", "b", "c"], keep_backup=False)
    assert not ledger.backup_dir("b").exists()


def test_backups_are_spaced_in_time(tmp_path):
    now = [0.0]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    backup = resume.SpacedBackup(str(tmp_path), interval_s=10.0, clock=lambda: now[0])
    backup.set_model(model)
    backup.on_train_begin()
    saved = []
    for epoch, seconds in enumerate((4.0, 4.0, 4.0, 12.0)):
        now[0] += seconds
        backup.on_epoch_end(epoch)
        metadata = tmp_path / "training_metadata.json"
        saved.append(json.loads(metadata.read_text())["epoch"] if metadata.exists() else None)
    assert saved == [None, None, 3, 4]


def test_a_new_folder_drops_stray_backups_and_changed_data_is_refused(tmp_path):
    (tmp_path / ".backup" / "teacher").mkdir(parents=True)
    (tmp_path / ".backup" / "teacher" / "epochs.json").write_text("[]")
    config = run_lib.RunConfig(out=str(tmp_path), **TINY)
    ledger = resume.Ledger(tmp_path, run_lib.fingerprinted(config))
    assert not (tmp_path / ".backup").exists()
    assert json.loads((tmp_path / "run.json").read_text())["stages"] == {}
    ledger.finish("data", {"digest": "0" * 16, "seconds": 0.1})
    with pytest.raises(ValueError, match="--dataset=digits holds other images or labels than"):
        run_lib.run(config, log=lambda _: None)


def test_a_damaged_backup_is_a_clear_error_not_a_silent_restart(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")
    _, callbacks = resume.fit_callbacks(tmp_path / "stage", interval_s=0)
    model.fit(x, y, epochs=1, verbose=0, callbacks=callbacks)
    (tmp_path / "stage" / "checkpoint" / "latest.weights.h5").write_bytes(b"torn write")
    _, callbacks = resume.fit_callbacks(tmp_path / "stage", interval_s=0)
    with pytest.raises(ValueError, match=r"backup in '.*checkpoint' does not load \(.*delete that"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)


def test_a_backup_torn_between_its_weights_and_its_epoch_is_refused(tmp_path):
    """Weights are renamed into place before the epoch count: a kill between the two leaves
    weights one backup newer than the count, which the saved optimizer step gives away."""
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")

    def fit(epochs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        _, callbacks = resume.fit_callbacks(tmp_path / "stage", interval_s=0)
        model.fit(x, y, epochs=epochs, verbose=0, callbacks=callbacks)

    checkpoint = tmp_path / "stage" / "checkpoint"
    fit(1)
    older = (checkpoint / "training_metadata.json").read_text()
    assert json.loads(older) == {"epoch": 1, "batch": 0, "iterations": 1, "seed_states": []}
    fit(2)
    (checkpoint / "training_metadata.json").write_text(older)  # the newer one never landed
    with pytest.raises(ValueError, match="weights are from optimizer step 2 but its epoch count "):
        fit(3)
    (checkpoint / "training_metadata.json").unlink()
    with pytest.raises(ValueError, match=r"it holds weights without the epoch\); delete"):
        fit(3)
    (checkpoint / "training_metadata.json").write_text(older)
    (checkpoint / "latest.weights.h5").unlink()
    with pytest.raises(ValueError, match="it holds an epoch without its weights"):
        fit(3)
    (tmp_path / "stage" / "epochs.json").write_text('{"loss": 1')
    with pytest.raises(ValueError, match=r"stage' does not load \(epochs.json: .*delete that"):
        resume.EpochLog(tmp_path / "stage" / "epochs.json")
    (tmp_path / "stage" / "epochs.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"epochs.json: ValueError: not a list of"):
        resume.EpochLog(tmp_path / "stage" / "epochs.json")


def test_a_resumed_fit_draws_the_dropout_masks_an_unbroken_one_draws(tmp_path):
    """The random generators' states (Dropout's here) ride in the backup: `save_weights`
    leaves them out, and a resumed fit would otherwise redraw the first epochs' masks."""
    x = np.random.default_rng(0).random((16, 4), dtype="float32")
    y = x.sum(axis=1, keepdims=True)

    def fit(epochs, callbacks=()):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(8),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(1),
            ]
        )
        model.compile(keras.optimizers.SGD(0.05), "mse")
        model.fit(x, y, batch_size=4, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
        return model.get_weights()

    unbroken = fit(4)
    fit(2, resume.fit_callbacks(tmp_path / "stage", 0.0)[1])
    resumed = fit(4, resume.fit_callbacks(tmp_path / "stage", 0.0)[1])
    for a, b in zip(unbroken, resumed, strict=True):
        np.testing.assert_array_equal(b, a)


class Precisions(keras.callbacks.Callback):
    """(model class, jit_compile, compute dtype of the trained network) of every Keras 3 fit."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, bool, str]] = []

    def on_train_begin(self, logs=None):
        network = self.model.student if isinstance(self.model, Distiller) else self.model
        dtypes = {layer.compute_dtype for layer in network.layers[1:]}
        self.seen.append((type(self.model).__name__, self.model.jit_compile, *sorted(dtypes)))


def test_a_mixed_precision_run_trains_in_bfloat16_and_exports_float32(tmp_path):
    """The teacher, scratch and distilled students train under mixed_bfloat16; the
    channel-pruning and pruning stages and the .tflite files get float32 copies; the global
    policy is float32 afterwards. Another --mixed_precision is another config."""
    config = run_lib.RunConfig(
        out=str(tmp_path / "run"),
        **{**TINY, "student_epochs": 1, "batch_size": 256, "qat": False},
        quantize=("none",),
        mixed_precision="bfloat16",
        quiet=True,
    )
    precisions = Precisions()
    result = run_lib.run(config, log=lambda _: None, callbacks=(precisions,))
    assert keras.config.dtype_policy().name == "float32"
    assert precisions.seen == [
        ("Functional", False, "bfloat16"),
        ("Functional", False, "bfloat16"),
        ("Distiller", False, "bfloat16"),
        ("Distiller", False, "float32"),  # prune_channels, on the float32 copy
    ]
    for history in result["history"].values():
        assert np.all(np.isfinite(history["loss"]))
    saved = keras.models.load_model(tmp_path / "run" / "student_distilled.keras")
    assert saved.layers[-1].compute_dtype == "bfloat16"
    pruned = keras.models.load_model(tmp_path / "run" / "student_pruned.keras")
    assert {layer.compute_dtype for layer in pruned.layers} == {"float32"}
    assert [row["file"] for row in result["tflite"]] == [
        "student_distilled_fp32.tflite",
        "student_pruned_channels_fp32.tflite",
        "student_pruned_fp32.tflite",
        "student_pruned_int8.tflite",
        "teacher_fp32.tflite",
    ]
    for row in result["tflite"]:
        interpreter = litert_interpreter(tmp_path / "run" / row["file"])
        assert interpreter.get_input_details()[0]["dtype"] == np.float32, row["file"]
        if row["quantization"] == "none":
            assert interpreter.get_output_details()[0]["dtype"] == np.float32, row["file"]
            assert row["agreement"] == 1.0 and row["max_abs_error"] < 1e-3, row
    distilled = result["students"]["distilled"]["accuracy"]
    assert result["tflite"][0]["accuracy"] == pytest.approx(distilled, abs=1e-9)
    with pytest.raises(ValueError, match="holds a run of another config"):
        run_lib.run(dataclasses.replace(config, mixed_precision="float16"), log=print)
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow  # a whole run (about 30 s); the README's test command is near its budget
def test_a_run_distils_from_an_ensemble_of_teacher_files(tiny_run, tmp_path):
    """Two `.keras` teachers (the tiny run's and an untrained one): the students distil from
    the mean of their probabilities (cached as (N, 2, C)), and the report lists each teacher
    with its accuracy, size and latency beside the ensemble's."""
    from tfdistill import ensemble

    digits = data.load("digits").raw_pixels()
    keras.utils.set_random_seed(3)
    other = training.classifier("convnet", {"widths": (2, 4)}, digits, "teacher")
    other.save(tmp_path / "other.keras")
    files = [str(tiny_run.out / "teacher.keras"), str(tmp_path / "other.keras")]
    with pytest.raises(ValueError, match="drop teacher_views, or give one teacher"):
        run_lib.RunConfig(out="unused", teacher_weights=",".join(files), teacher_views=2)
    config = run_lib.RunConfig(
        out=str(tmp_path / "run"),
        **{
            **TINY,
            "prune": None,
            "qat": False,
            "prune_channels": None,
            "teacher_views": 0,
            "augment": False,
            "student_epochs": 1,
        },
        quantize=("none",),
        teacher_weights=",".join(files),
    )
    logs: list[str] = []
    result = run_lib.run(config, log=logs.append)
    assert any("the ensemble of 2 teachers from" in line for line in logs)
    teacher = result["teacher"]
    assert teacher["model"] == "ensemble" and [m["file"] for m in teacher["members"]] == files
    assert teacher["members"][0]["accuracy"] == pytest.approx(
        tiny_run.result["teacher"]["accuracy"]
    )
    assert teacher["params"] == sum(m["params"] for m in teacher["members"])
    rows = {row["model"]: row for row in result["tflite"]}
    assert {"teacher", "teacher_0", "teacher_1"} <= set(rows)
    assert all(rows[m]["latency_us"] > 0 and rows[m]["agreement"] > 0.99 for m in rows)
    saved = keras.models.load_model(tmp_path / "run" / "teacher.keras")
    members, weights = ensemble.members_of(saved)
    assert len(members) == 2 and weights == (0.5, 0.5)
    probabilities = [keras.activations.softmax(m(digits.x_test[:64])) for m in members]
    expected = np.log((np.asarray(probabilities[0]) + np.asarray(probabilities[1])) / 2)
    np.testing.assert_allclose(saved(digits.x_test[:64]), expected, rtol=1e-4, atol=1e-5)
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "| teacher (ensemble) |" in markdown and "other.keras) |" in markdown
