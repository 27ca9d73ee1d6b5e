"""keras.applications teachers: folded preprocessing, the fine-tuning recipe, safe-mode saving,
the offline error and a whole `tfdistill run` with one (weights=None, tiny inputs)."""

import json
import re
import urllib.error

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdistill import data
from tfdistill import run as run_lib
from tfdistill.models import ImageNetPreprocessing, applications
from tfdistill.run import training

MOBILENET = "keras.applications.MobileNetV2"
TINY_KWARGS = {"weights": None, "alpha": 0.35}
FAMILIES = {
    "keras.applications.MobileNetV2": ("tf", keras.applications.mobilenet_v2),
    "keras.applications.DenseNet121": ("torch", keras.applications.densenet),
    "keras.applications.ResNet50": ("caffe", keras.applications.resnet50),
    "keras.applications.EfficientNetV2B0": ("none", keras.applications.efficientnet_v2),
    "keras.applications.MobileNetV3Small": ("none", keras.applications.mobilenet_v3),
    "keras.applications.Xception": ("tf", keras.applications.xception),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_folded_preprocessing_equals_the_family_preprocess_input(name):
    mode, module = FAMILIES[name]
    assert applications.preprocessing_mode(name) == mode
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3))
    expected = module.preprocess_input(pixels.copy())  # float64 numpy path
    ours = keras.ops.convert_to_numpy(ImageNetPreprocessing(mode)(pixels.astype("float32")))
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=2e-5)
    # pixels on another scale (digits-like 0..16) are first brought to 0..255
    scaled = ImageNetPreprocessing(mode, pixel_max=16.0)((pixels * 16 / 255).astype("float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scaled), expected, atol=1e-4)


def test_every_application_is_named_and_has_a_mode():
    names = applications.names()
    assert MOBILENET in names and "keras.applications.ResNet50" in names
    assert {applications.preprocessing_mode(name) for name in names} == {
        "tf",
        "torch",
        "caffe",
        "none",
    }


def _ds(n=12, size=32, channels=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, channels)).astype("float32")
    y = np.arange(n) % classes
    names = tuple("abc"[:classes])
    return data.Dataset("generated", x, y, x[:6], y[:6], classes, names, pixel_max=255.0)


def test_teacher_maps_raw_pixels_to_logits_and_round_trips_in_safe_mode(tmp_path):
    model = applications.build(MOBILENET, 3, (32, 32, 3), **TINY_KWARGS)
    assert isinstance(model.layers[1], ImageNetPreprocessing)
    x = _ds().x_train[:4]
    logits = keras.ops.convert_to_numpy(model(x))
    assert logits.shape == (4, 3)
    path = tmp_path / "teacher.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), logits, atol=1e-5)


def test_clear_errors_for_grey_images_bad_arguments_and_names():
    with pytest.raises(ValueError, match="3 channels.*--teacher=convnet"):
        applications.build(MOBILENET, 10, (8, 8, 1), **TINY_KWARGS)
    with pytest.raises(ValueError, match=r"\['widths'\].*valid"):
        applications.check_kwargs(MOBILENET, {"widths": (4,)})
    with pytest.raises(ValueError, match="tfdistill sets"):
        applications.check_kwargs(MOBILENET, {"include_top": True})
    with pytest.raises(ValueError, match="Unknown teacher.*MobileNetV2"):
        applications.constructor("keras.applications.NoSuchNet")
    with pytest.raises(ValueError, match="does not build"):
        applications.build(MOBILENET, 3, (8, 8, 3), **TINY_KWARGS)  # below 32x32


def test_offline_weights_download_names_url_file_and_cache(monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network here")

    # Keras's get_file binds urlretrieve at import; the applications call it through there
    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    with pytest.raises(ValueError) as error:
        applications.build(MOBILENET, 3, (96, 96, 3), weights="imagenet", alpha=0.35)
    message = str(error.value)
    assert "https://" in message and "~/.keras/models/" in message
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5" in message
    assert '{"weights": null}' in message


def test_run_config_takes_application_teachers():
    config = run_lib.RunConfig(out="unused", teacher=MOBILENET)
    assert config.teacher_kwargs == {}  # the convnet's default arguments are dropped
    with pytest.raises(ValueError, match="keras.applications.NAME"):
        run_lib.RunConfig(out="unused", teacher="NoSuchNet")
    with pytest.raises(ValueError, match="not arguments"):
        run_lib.RunConfig(out="unused", teacher=MOBILENET, teacher_kwargs={"depth": 2})
    for method in ("at", "kd+at"):  # its stages are not paired yet: refused, not silent
        with pytest.raises(ValueError, match=f"method='{re.escape(method)}' pairs the student"):
            run_lib.RunConfig(out="unused", teacher=MOBILENET, method=method)
    assert run_lib.RunConfig(out="unused", teacher=MOBILENET, method="gat").method == "gat"


class Snapshots(keras.callbacks.Callback):
    """The base's conv kernels and BatchNorm weights at the start and end of every fit."""

    def __init__(self):
        super().__init__()
        self.fits = []

    def _state(self):
        base = applications.base_of(self.model)
        convs = [w.numpy().copy() for w in base.get_layer("Conv1").weights]
        bn = [w.numpy().copy() for w in base.get_layer("bn_Conv1").weights]
        return convs, bn

    def on_train_begin(self, logs=None):
        self.fits.append([self._state()])

    def on_train_end(self, logs=None):
        self.fits[-1].append(self._state())


def _changed(before, after):
    return [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]


def test_fine_tuning_head_first_then_everything_with_batch_norm_frozen(tmp_path):
    config = run_lib.RunConfig(
        out=str(tmp_path),
        teacher=MOBILENET,
        teacher_kwargs=TINY_KWARGS,
        teacher_epochs=3,
        batch_size=4,
        teacher_learning_rate=1e-2,
    )
    assert [training.head_epochs(n) for n in (1, 2, 3, 10)] == [1, 1, 1, 3]
    snapshots = Snapshots()
    backup = tmp_path / "backup"
    fitting = training.Fitting(callbacks=(snapshots,), backup_dir=backup, backup_interval_s=0)
    trained = training.fine_tune_teacher(config, _ds(), fitting)
    assert len(trained.history["loss"]) == 3
    (head_start, head_end), (all_start, all_end) = snapshots.fits
    assert _changed(head_start[0], head_end[0]) == [False] and not any(
        _changed(head_start[1], head_end[1])
    )
    assert _changed(all_start[0], all_end[0]) == [True]  # the conv kernel trains in phase 2
    assert not any(_changed(all_start[1], all_end[1]))  # gamma, beta, moving mean and variance
    assert sorted(p.name for p in backup.iterdir()) == ["all", "head"]
    assert len(json.loads((backup / "all" / "epochs.json").read_text())) == 2

    # resumed once the second phase has backed up: the head phase is not fitted again, and
    # the second phase comes back from its backup with both phases' histories
    resumed = training.fine_tune_teacher(config, _ds(), fitting)
    assert len(snapshots.fits) == 3 and len(resumed.history["loss"]) == 3
    np.testing.assert_array_equal(snapshots.fits[2][1][0][0], all_end[0][0])

    path = tmp_path / "teacher.keras"
    trained.model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert not applications.base_of(loaded).get_layer("bn_Conv1").trainable
    x = _ds().x_test
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trained.model.predict(x, verbose=0))


@pytest.mark.slow
def test_tfdistill_run_with_a_keras_applications_teacher(tmp_path):
    """The issue's done-when run: a 3-class folder of mixed-size JPEG and PNG photos, the
    student at 64 px, a MobileNetV2 teacher at 96 px; its .tflite files take 1x64x64x3."""
    from tfdistill.export.interpreter import litert_interpreter

    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        for i in range(8):
            h, w = rng.integers(48, 160, 2)
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            path = tmp_path / "photos" / name / f"{i}.{'jpg' if i % 2 else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes((tf.io.encode_jpeg if i % 2 else tf.io.encode_png)(image).numpy())
    config = run_lib.RunConfig(
        out=str(tmp_path / "run"),
        dataset=f"folder:{tmp_path / 'photos'}",
        image_size="64",
        teacher=MOBILENET,
        teacher_kwargs=TINY_KWARGS,
        teacher_image_size="96",
        student="mobilenet_v1",
        student_kwargs={"alpha": 0.25},
        teacher_epochs=2,
        student_epochs=1,
        labels_per_class=2,
        batch_size=8,
        quantize=("none", "int8"),
        bench_runs=1,
        quiet=True,
    )
    result = run_lib.run(config, log=lambda _: None)
    teacher = keras.models.load_model(tmp_path / "run" / "teacher.keras", safe_mode=True)
    assert tuple(teacher.inputs[0].shape) == (None, 96, 96, 3)
    assert len(result["history"]["teacher"]["loss"]) == 2
    for mode in ("fp32", "int8"):
        interpreter = litert_interpreter(tmp_path / "run" / f"student_distilled_{mode}.tflite")
        assert list(interpreter.get_input_details()[0]["shape"]) == [1, 64, 64, 3]
    assert result["dataset"]["input_shape"] == [64, 64, 3]
