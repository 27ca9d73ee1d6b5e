"""Export to `.tflite`: every zoo family in every quantization mode, float32 files that match
Keras, an int8 digits student that agrees with its Keras model, and the refusals (Flex ops,
int8 without calibration data, unknown modes) that leave an existing file alone."""

import math
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from test_zoo import SMALL

from tfdistill import data, models
from tfdistill.export import QUANTIZATIONS, evaluate_tflite, inference_function, to_tflite

CALIBRATION = np.random.default_rng(0).random((8, 32, 32, 3)).astype("float32")


@pytest.fixture(scope="module")
def zoo():
    """family -> (its SMALL model at 32×32×3, the model's inference function), built and traced
    once. Each BatchNorm's moving statistics are set from one batch, as training would: with
    the initial ones (mean 0, variance 1) deep families' logits shrink to ~1e-17, below what
    int8 or int16 can represent. Seeded per family (`keras.utils.set_random_seed`, which also
    reseeds the worker's global generators), so the weights do not depend on which tests ran
    before in the worker."""
    built = {}

    def get(family: str) -> tuple[keras.Model, tf.types.experimental.ConcreteFunction]:
        if family not in built:
            keras.utils.set_random_seed(sorted(SMALL).index(family))
            model = models.get(family, input_shape=(32, 32, 3), num_classes=10, **SMALL[family])
            norms = [
                layer
                for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)
            ]
            for layer in norms:
                layer.momentum = 0.0
            model(CALIBRATION, training=True)
            for layer in norms:
                layer.momentum = 0.9
            built[family] = model, inference_function(model)
        return built[family]

    return get


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def student(digits):
    """The `tfdistill run` student (convnet, widths (4, 8, 16), 32×32×1 -> 10 logits), trained
    on every digits training label: 12 epochs of Adam with a cosine decay."""
    keras.utils.set_random_seed(0)
    model = models.get("convnet", widths=(4, 8, 16), input_shape=(32, 32, 1), num_classes=10)
    epochs, batch = 12, 32
    steps = math.ceil(len(digits.x_train) / batch) * epochs
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-2, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    train = digits.as_tf_dataset("train", batch, shuffle=True, seed=0)
    model.fit(train, epochs=epochs, verbose=0, shuffle=False)
    return model


class _Inverse(keras.layers.Layer):
    """(B, 16) -> (B, 16): the inverses of 4×4 matrices (TF's MatrixInverse, a Flex op)."""

    def call(self, x):
        return tf.reshape(tf.linalg.inv(tf.reshape(x, (-1, 4, 4))), (-1, 16))


class _Erfinv(keras.layers.Layer):
    """(B, 16) -> (B, 16): erfinv, which has neither a builtin nor a Flex kernel."""

    def call(self, x):
        return tf.math.erfinv(x)


def _model_with(layer: keras.layers.Layer) -> keras.Model:
    inputs = keras.Input((16,))
    return keras.Model(inputs, keras.layers.Dense(16)(layer(inputs)))


def _ops_and_dtypes(path) -> tuple[set[str], set[type]]:
    interpreter = Interpreter(model_path=str(path))
    return (
        {op["op_name"] for op in interpreter._get_ops_details()},
        {t["dtype"] for t in interpreter.get_tensor_details()},
    )


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
@pytest.mark.parametrize("family", sorted(SMALL))
def test_every_family_converts_in_every_mode(zoo, family, quantization, tmp_path):
    """Converts the function `to_tflite(model)` traces (the same file, see
    `test_signature_is_a_static_batch_of_one`), traced once per family instead of per mode."""
    model, function = zoo(family)
    calibration = CALIBRATION
    if quantization == "int16x8":
        calibration = tf.data.Dataset.from_tensor_slices(CALIBRATION).batch(3)
    path = to_tflite(
        function,
        tmp_path / f"{family}.tflite",
        quantization=quantization,
        representative_data=calibration,
    )
    assert path == tmp_path / f"{family}.tflite" and path.stat().st_size > 0
    ops, dtypes = _ops_and_dtypes(path)
    assert not {op for op in ops if op.startswith("Flex") or op == "CUSTOM"}
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    result = evaluate_tflite(path, x, reference=model if quantization == "none" else None)
    assert result.outputs.shape == (2, 10) and np.all(np.isfinite(result.outputs))
    if quantization == "none":
        assert result.max_rel_error < 1e-4
        assert not dtypes & {np.float16, np.int8, np.int16}
    elif quantization == "float16":
        assert np.float16 in dtypes
    elif quantization == "int16x8":
        assert np.int16 in dtypes and np.int8 in dtypes
    elif quantization == "int8" or max(math.prod(w.shape) for w in model.weights) >= 1024:
        assert np.int8 in dtypes


def test_signature_is_a_static_batch_of_one(student, tmp_path):
    path = to_tflite(student, tmp_path / "s.tflite")
    traced = to_tflite(inference_function(student), tmp_path / "traced.tflite")
    assert path.read_bytes() == traced.read_bytes()
    interpreter = Interpreter(model_path=str(path))
    (detail,) = interpreter.get_input_details()
    assert list(detail["shape"]) == [1, 32, 32, 1]
    assert list(detail["shape_signature"]) == [1, 32, 32, 1]
    assert list(interpreter.get_output_details()[0]["shape_signature"]) == [1, 10]


def test_int8_student_agrees_with_keras(student, digits, tmp_path):
    path = to_tflite(
        student, tmp_path / "s.tflite", quantization="int8", representative_data=digits.x_train
    )
    assert Interpreter(model_path=str(path)).get_input_details()[0]["dtype"] == np.float32
    result = evaluate_tflite(path, digits.x_test, digits.y_test, reference=student)
    keras_accuracy = np.mean(np.argmax(student(digits.x_test), -1) == digits.y_test)
    assert result.num_examples == 360
    assert result.agreement >= 0.97, result
    assert abs(result.accuracy - keras_accuracy) <= 0.03, (result, keras_accuracy)
    assert keras_accuracy >= 0.85


def test_int8_io_has_int8_tensors_and_still_agrees(student, digits, tmp_path):
    path = to_tflite(
        student,
        tmp_path / "s.tflite",
        quantization="int8",
        int8_io=True,
        representative_data=digits.as_tf_dataset("train", 64),
        num_calibration_samples=100,
    )
    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    result = evaluate_tflite(path, digits.x_test, digits.y_test, reference=student)
    assert result.agreement >= 0.97, result


def test_float_file_matches_keras_and_sparsity_converts(student, digits, tmp_path):
    for sparsity in (False, True):
        path = to_tflite(student, tmp_path / f"s{sparsity}.tflite", sparsity=sparsity)
        result = evaluate_tflite(path, digits.x_test[:50], digits.y_test[:50], reference=student)
        assert result.agreement == 1.0 and result.max_rel_error < 1e-4


def test_probabilities_are_compared_with_probabilities(student, digits, tmp_path):
    path = to_tflite(student, tmp_path / "s.tflite")
    with_softmax = keras.Sequential([student, keras.layers.Softmax()])
    result = evaluate_tflite(path, digits.x_test[:20], reference=with_softmax)
    assert result.accuracy is None
    assert result.agreement == 1.0 and result.max_abs_error < 1e-5
    assert result.to_dict()["num_examples"] == 20


def test_labels_as_integers_one_hot_or_unlabeled(student, digits, tmp_path):
    path = to_tflite(student, tmp_path / "s.tflite")
    x, y = digits.x_test[:20], digits.y_test[:20]
    accuracy = evaluate_tflite(path, x, y).accuracy
    assert evaluate_tflite(path, x, np.eye(10)[y]).accuracy == accuracy
    half = np.where(np.arange(20) < 10, y, -1)
    assert evaluate_tflite(path, x, half).accuracy == evaluate_tflite(path, x[:10], y[:10]).accuracy
    assert evaluate_tflite(path, x, np.full(20, -1)).accuracy is None


def test_int8_without_representative_data_is_refused(student, tmp_path):
    with pytest.raises(ValueError, match="needs representative data"):
        to_tflite(student, tmp_path / "s.tflite", quantization="int8")
    with pytest.raises(ValueError, match=r"examples of shape \(28, 28, 1\).*\(32, 32, 1\)"):
        to_tflite(
            student,
            tmp_path / "s.tflite",
            quantization="int8",
            representative_data=np.zeros((4, 28, 28, 1), "float32"),
        )
    assert not list(tmp_path.iterdir())


def test_unknown_mode_lists_the_choices(student, tmp_path):
    with pytest.raises(ValueError, match="'none', 'float16', 'dynamic', 'int8', 'int16x8'"):
        to_tflite(student, tmp_path / "s.tflite", quantization="int4")


def test_int8_io_needs_int8(student, tmp_path):
    with pytest.raises(ValueError, match="int8_io"):
        to_tflite(student, tmp_path / "s.tflite", quantization="dynamic", int8_io=True)


@pytest.mark.parametrize(
    "layer, op, needs",
    [(_Inverse, "MatrixInverse", r"TF \(Flex\) ops"), (_Erfinv, "Erfinv", "custom ops")],
    ids=["flex", "custom"],
)
def test_ops_outside_the_builtins_are_named_and_the_old_file_survives(layer, op, needs, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"the previous export")
    with pytest.raises(ValueError, match=f"{op} would need {needs}"):
        to_tflite(_model_with(layer()), path)
    assert path.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


def test_any_callable_with_tf_keras_style_inputs_converts(student, digits, tmp_path):
    """tf_keras models (the compression stage's) give `inputs` with TensorShape shapes and
    DType dtypes and take `training`; their own tests live with that stage."""
    calls = []

    class TfKerasLike:
        inputs = [types.SimpleNamespace(shape=tf.TensorShape([None, 32, 32, 1]), dtype=tf.float32)]

        def __call__(self, x, training=None):
            calls.append(training)
            return student(x, training=training)

    path = to_tflite(TfKerasLike(), tmp_path / "s.tflite")
    assert calls and set(calls) == {False}
    result = evaluate_tflite(path, digits.x_test[:20], reference=student)
    assert result.max_rel_error < 1e-4

    plain = to_tflite(lambda x: tf.nn.softmax(x * 2.0), tmp_path / "p.tflite", input_shape=(10,))
    x = np.random.default_rng(0).normal(size=(3, 10)).astype("float32")
    np.testing.assert_allclose(
        evaluate_tflite(plain, x).outputs, tf.nn.softmax(x * 2.0), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="input_shape"):
        to_tflite(lambda x: x, tmp_path / "q.tflite")
    dynamic = tf.function(lambda x: x, input_signature=[tf.TensorSpec((None, 4))])
    with pytest.raises(ValueError, match=r"static shape \(1, ...\), got \(None, 4\)"):
        to_tflite(dynamic.get_concrete_function(), tmp_path / "q.tflite")


def test_evaluate_rejects_inputs_of_the_wrong_shape(student, tmp_path):
    path = to_tflite(student, tmp_path / "s.tflite")
    x = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match=r"\(2, 32, 32, 3\).*\(32, 32, 1\)"):
        evaluate_tflite(path, x)
