"""TFMOT compression through the tf_keras bridge: equal twins, magnitude pruning to a target
sparsity with distillation, quantization-aware training exported to int8 and run in LiteRT."""

import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("tensorflow_model_optimization", reason="needs the compress extra")
tf_keras = pytest.importorskip("tf_keras", reason="needs the compress extra")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from helpers import softmax  # noqa: E402
from test_compress_channels import randomize_bn  # noqa: E402

from tfdistill import compress, data, models  # noqa: E402
from tfdistill.compress import tuner  # noqa: E402
from tfdistill.export import evaluate_tflite, file_size, to_tflite  # noqa: E402

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

X = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
FAMILIES = {"convnet": {"widths": (4, 8)}, "resnet": {"depth": 8, "shortcut": "A"}}


def every_layer_kind() -> keras.Model:
    """One small graph with every layer type the zoo uses: grouped and depthwise convolutions,
    BatchNorm, ReLU and ReLU6, Add, Concatenate, ChannelShuffle, ChannelSplit,
    SubsampleZeroPad, Identity, pooling, a regularized Dense."""
    inputs = keras.Input((32, 32, 3), name="images")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="c1")(inputs)
    x = keras.layers.ReLU(6.0, name="r1")(keras.layers.BatchNormalization(name="b1")(x))
    left, right = models.ChannelSplit(2, name="split")(x)
    right = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(right)
    right = keras.layers.Conv2D(4, 1, name="pw")(right)
    x = models.ChannelShuffle(2, name="shuffle")(
        keras.layers.Concatenate(name="cat")([left, right])
    )
    y = keras.layers.Conv2D(16, 3, strides=2, padding="same", groups=4, name="grouped")(x)
    x = keras.layers.Add(name="add")([y, models.SubsampleZeroPad(16, 2, name="pad")(x)])
    x = keras.layers.MaxPooling2D(name="max")(keras.layers.Identity(name="identity")(x))
    x = keras.layers.AveragePooling2D(2, name="avg")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.ReLU(name="r2")(x))
    dense = keras.layers.Dense(10, kernel_regularizer=keras.regularizers.L2(1e-3), name="logits")
    return keras.Model(inputs, dense(x))


@pytest.fixture(scope="module")
def digits():
    ds = data.load("digits")
    return ds.x_train, ds.y_train, ds.x_test, ds.y_test


@pytest.fixture(scope="module")
def trained(digits):
    """A (8, 16, 32) digits convnet and a (16, 32, 64) teacher, 4 and 3 epochs: about 93%."""
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    built = []
    for widths, epochs in (((8, 16, 32), 4), ((16, 32, 64), 3)):
        model = models.get("convnet", input_shape=(32, 32, 1), num_classes=10, widths=widths)
        schedule = keras.optimizers.schedules.CosineDecay(1e-2, epochs * 45)
        model.compile(
            keras.optimizers.Adam(schedule),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
        built.append(model)
    return tuple(built)


@pytest.mark.parametrize("family", ["every_layer_kind", *sorted(FAMILIES)])
def test_tf_keras_twin_gives_equal_outputs_and_weights_come_back(family):
    if family == "every_layer_kind":
        model = every_layer_kind()
    else:
        model = models.get(family, input_shape=(32, 32, 3), num_classes=10, **FAMILIES[family])
    randomize_bn(model)
    twin = compress.to_tf_keras(model)
    assert isinstance(twin, tf_keras.Model)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    dropout = any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    for training in (False,) if dropout else (False, True):
        np.testing.assert_allclose(
            twin(X, training=training).numpy(),
            keras.ops.convert_to_numpy(model(X, training=training)),
            rtol=1e-5,
            atol=1e-5,
        )
    for w in twin.trainable_weights:
        w.assign(w * 0.5)
    back = compress.to_keras(twin, like=model)
    assert isinstance(back, keras.Model) and back is not model
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(back(X)), twin(X).numpy(), rtol=1e-5, atol=1e-5
    )


def scale_layer(base: type) -> type:
    """A layer multiplying by a constant, subclassing `base` (Keras 3 or tf_keras Layer)."""

    class Scale(base):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    return Scale


Scale, TfKerasScale = scale_layer(keras.layers.Layer), scale_layer(tf_keras.layers.Layer)


def test_bridge_names_what_it_cannot_translate():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L2(0.01))(
        Scale(3.0, name="scale")(inputs)
    )
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match=r"'scale' \(custom class Scale\).*register_tf_keras_twin"):
        compress.to_tf_keras(model)
    compress.register_tf_keras_twin(Scale, TfKerasScale)
    twin = compress.to_tf_keras(model)
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(twin(x).numpy(), keras.ops.convert_to_numpy(model(x)), rtol=1e-6)
    assert twin.layers[-1].kernel_regularizer.get_config() == {"l2": pytest.approx(0.01)}

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional or Sequential"):
        compress.to_tf_keras(Sub())
    with pytest.raises(ValueError, match="Keras 3 optimizer"):
        tuner.optimizer_from(keras.optimizers.Adam())


def test_bridge_refuses_the_split_grouped_lowering_and_names_the_native_one():
    inputs = keras.Input((8, 8, 8))
    conv = models.SplitGroupedConv2D(8, 3, groups=4, name="grouped")
    split = keras.Model(inputs, conv(inputs))
    with pytest.raises(
        ValueError, match=r"'grouped' is a SplitGroupedConv2D.*grouped_conv=.native"
    ):
        compress.to_tf_keras(split)
    native = keras.Model(inputs, keras.layers.Conv2D(8, 3, groups=4, name="grouped")(inputs))
    native.set_weights(split.get_weights())
    twin = compress.to_tf_keras(native)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype("float32")
    np.testing.assert_allclose(
        twin(x).numpy(), keras.ops.convert_to_numpy(split(x)), rtol=1e-5, atol=1e-5
    )


def test_pruning_end_step_lands_on_a_mask_update():
    # 45 steps an epoch, 3 epochs: prune over the first two (90 steps), updates every 10.
    assert compress.pruning_end_step(45, 3, 0, None, 10) == 90
    assert compress.pruning_end_step(45, 1, 5, None, 10) == 45
    assert compress.pruning_end_step(45, 2, 0, 40, 10) == 40
    with pytest.raises(ValueError, match="no mask update.*at most 11"):
        compress.pruning_end_step(45, 2, 0, None, 100)
    with pytest.raises(ValueError, match="not a multiple of frequency=10.*end_step=40"):
        compress.pruning_end_step(45, 2, 0, 45, 10)
    with pytest.raises(ValueError, match="within the run's 90 steps"):
        compress.pruning_end_step(45, 2, 0, 100, 10)
    assert compress.expected_sparsity(0.5, 27) == pytest.approx(1 - 14 / 27)
    assert compress.expected_sparsity(0.99, 10) == pytest.approx(0.9)


def test_the_default_frequency_comes_from_the_schedule():
    # About ten mask updates over the span, every step on short ones, every 100 at most.
    assert compress.pruning_frequency(8, 2) == 1  # 256 images, batch 32: 8 steps to prune in
    assert compress.pruning_frequency(45, 3) == 9
    assert compress.pruning_frequency(45, 3, begin_step=40) == 5
    assert compress.pruning_frequency(782, 6) == 100  # CIFAR-10 at batch 64
    assert compress.pruning_frequency(45, 2, 0, 45) == 3  # divides the span: lands on end_step
    assert compress.pruning_frequency(45, 2, 0, 41) == 1
    assert compress.pruning_frequency(45, 2, begin_step=50) == 1  # pruning_end_step refuses it
    for steps, epochs in ((8, 2), (45, 3), (782, 6), (3, 1)):
        frequency = compress.pruning_frequency(steps, epochs)
        end = compress.pruning_end_step(steps, epochs, 0, None, frequency)
        assert end // frequency >= min(10, end), (steps, epochs)


def test_prune_on_a_short_schedule_picks_its_own_frequency(trained, digits):
    """256 images, 2 epochs of batch 32 (16 steps): TFMOT's fixed frequency of 100 left no
    mask update; the default now updates every step of the first epoch."""
    student, _ = trained
    x, y, _, _ = digits
    pruned = compress.prune(student, (x[:256], y[:256]), epochs=2, batch_size=32, seed=0)
    assert compress.overall_sparsity(pruned) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match=r"frequency=100 leaves no mask update.*at most 2"):
        compress.prune(student, (x[:256], y[:256]), epochs=2, batch_size=32, frequency=100)


def test_fine_tuner_loss_is_the_distillers(trained, digits):
    student, teacher = trained
    x, y, _, _ = digits
    x, y = x[:16], y[:16].copy()
    y[::3] = -1
    twin = compress.to_tf_keras(student)
    fine_tuner = tuner.FineTuner(twin, teacher, alpha=0.3, temperature=4.0)
    fine_tuner.compile(optimizer=tf_keras.optimizers.SGD(0.0))
    logged = fine_tuner.train_on_batch(x, y, return_dict=True)
    s = twin(x, training=True).numpy()
    t = keras.ops.convert_to_numpy(teacher(x, training=False))
    labeled = y >= 0
    hard = -np.log(softmax(s)[np.arange(16), np.where(labeled, y, 0)])[labeled].mean()
    p_t, p_s = softmax(t / 4.0), softmax(s / 4.0)
    soft = 16.0 * np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=-1).mean()
    assert logged["loss"] == pytest.approx(0.3 * hard + 0.7 * soft, rel=1e-4)
    alone = tuner.FineTuner(twin, None)
    alone.compile(optimizer=tf_keras.optimizers.SGD(0.0))
    assert alone.train_on_batch(x, y, return_dict=True)["loss"] == pytest.approx(hard, rel=1e-4)

    probabilities = keras.Model(student.inputs, keras.layers.Softmax()(student.outputs[0]))
    tuning = tuner.prepare(
        probabilities,
        (x, y),
        teacher,
        batch_size=16,
        seed=0,
        alpha=0.3,
        temperature=4.0,
        optimizer="sgd",
        epochs=1,
        verbose=0,
    )
    kind = tuning.student_outputs
    assert kind == "probabilities"
    softmax_twin = compress.to_tf_keras(probabilities)
    fine_tuner = tuner.FineTuner(
        softmax_twin, teacher, alpha=0.3, temperature=4.0, student_outputs=kind
    )
    fine_tuner.compile(optimizer=tf_keras.optimizers.SGD(0.0))
    logged = fine_tuner.train_on_batch(x, y, return_dict=True)
    assert logged["loss"] == pytest.approx(0.3 * hard + 0.7 * soft, rel=1e-3)


def test_bad_fine_tuning_data_is_named_before_anything_is_built(trained, digits):
    student, teacher = trained
    x, y, _, _ = digits
    unbatched = tf.data.Dataset.from_tensor_slices((x[:8], y[:8]))
    with pytest.raises(ValueError, match=r"batch the dataset"):
        compress.prune(student, unbatched, frequency=1)
    with pytest.raises(ValueError, match=r"yields x of shape \(None, 16, 16, 1\)"):
        compress.quantize_aware(student, (x[:8, :16, :16], y[:8]))
    with pytest.raises(
        ValueError, match=r"labels must be -1 \(unlabeled\) or in \[0, 10\); found \[12\]"
    ):
        compress.prune(student, (x[:8], np.full(8, 12)), frequency=1)
    with pytest.raises(ValueError, match="yields \\(x, y\\)|\\(x, y\\) or"):
        compress.prune(student, tf.data.Dataset.from_tensor_slices(x[:8]).batch(4), frequency=1)
    other = models.get("convnet", input_shape=(32, 32, 1), num_classes=5, widths=(4,))
    with pytest.raises(ValueError, match="student predicts 10 classes but the teacher predicts 5"):
        compress.quantize_aware(student, (x[:8], y[:8]), teacher=other)


def test_prune_reaches_the_target_with_a_teacher_and_exports_sparse(trained, digits, tmp_path):
    student, teacher = trained
    x, y, x_test, y_test = digits
    before = [w.copy() for w in student.get_weights()]
    pruned = compress.prune(
        student, (x[:512], y[:512]), teacher=teacher, target_sparsity=0.5, epochs=3, frequency=4
    )
    assert isinstance(pruned, keras.Model) and not isinstance(pruned, tf_keras.Model)
    assert [layer.name for layer in pruned.layers] == [layer.name for layer in student.layers]
    assert all(np.array_equal(a, b) for a, b in zip(before, student.get_weights(), strict=True))
    assert compress.overall_sparsity(student) == 0.0
    assert compress.overall_sparsity(pruned) == pytest.approx(0.5, abs=0.01)
    for name, value in compress.kernel_sparsity(pruned).items():
        size = pruned.get_layer(name).kernel.numpy().size
        assert value == pytest.approx(compress.expected_sparsity(0.5, size)), name
    accuracy = np.mean(np.argmax(pruned.predict(x_test, verbose=0), -1) == y_test)
    original = np.mean(np.argmax(student.predict(x_test, verbose=0), -1) == y_test)
    # 32 steps of pruning and 16 of recovery for a 7k-parameter network: it loses points, but
    # still classifies (0.80 when written).
    assert original > 0.85 and accuracy > 0.65, (original, accuracy)

    dense = to_tflite(pruned, tmp_path / "dense.tflite")
    sparse = to_tflite(pruned, tmp_path / "sparse.tflite", sparsity=True)
    assert file_size(sparse).raw_bytes < 0.8 * file_size(dense).raw_bytes
    assert file_size(dense).gzip_bytes < 0.8 * file_size(dense).raw_bytes
    checked = evaluate_tflite(sparse, x_test[:64], y_test[:64], reference=pruned)
    assert checked.agreement == 1.0 and checked.max_abs_error < 1e-4

    int8 = to_tflite(
        pruned, tmp_path / "int8.tflite", quantization="int8", representative_data=x[:64]
    )
    sparse_int8 = to_tflite(
        pruned,
        tmp_path / "sparse_int8.tflite",
        quantization="int8",
        representative_data=x[:64],
        sparsity=True,
    )
    assert file_size(sparse_int8).raw_bytes > file_size(int8).raw_bytes  # small: overhead wins
    with pytest.raises(RuntimeError, match="XNNPACK delegate cannot run.*use_xnnpack=False"):
        evaluate_tflite(sparse_int8, x_test[:8], y_test[:8])
    builtin = evaluate_tflite(sparse_int8, x_test[:64], y_test[:64], use_xnnpack=False)
    dense = evaluate_tflite(int8, x_test[:64], y_test[:64], use_xnnpack=False)
    np.testing.assert_allclose(builtin.outputs, dense.outputs, atol=1e-6)


def test_prune_refuses_bad_arguments(trained, digits):
    student, _ = trained
    x, y, _, _ = digits
    with pytest.raises(ValueError, match=r"target_sparsity must be in \[0, 1\)"):
        compress.prune(student, (x, y), target_sparsity=1.0)
    with pytest.raises(ValueError, match="no mask update"):
        compress.prune(student, (x, y), frequency=100)
    with pytest.raises(ValueError, match=r"frequency must be an integer >= 1, got 0"):
        compress.prune(student, (x, y), frequency=0)
    with pytest.raises(ValueError, match="tuple of arrays"):
        compress.prune(student, x, frequency=2)


def _quantizable_oddities() -> keras.Model:
    """Conv-BN-ReLU, a channel shuffle, an Identity, a residual add and a pre-activation
    BatchNorm that follows no convolution."""
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    y = models.ChannelShuffle(2)(x)
    y = keras.layers.Conv2D(6, 1, groups=2)(y)
    x = keras.layers.Identity()(keras.layers.Add()([x, y]))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def test_quantize_aware_exports_int8_that_runs_in_litert(digits, tmp_path):
    x, y, x_test, y_test = digits
    small_x = tf.image.resize(x, (16, 16)).numpy()
    small_test = tf.image.resize(x_test[:96], (16, 16)).numpy()
    keras.utils.set_random_seed(1)
    student = _quantizable_oddities()
    qat = compress.quantize_aware(student, (small_x, y), epochs=1, batch_size=64, seed=0)
    assert any("Quantize" in type(layer).__name__ for layer in qat.layers)
    path = to_tflite(qat, tmp_path / "qat_int8.tflite", quantization="int8")
    interpreter = Interpreter(str(path))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"CONV_2D", "QUANTIZE", "RESHAPE", "TRANSPOSE"} <= ops
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details() if "conv2d" in d["name"]}
    assert np.int8 in dtypes
    checked = evaluate_tflite(path, small_test, y_test[:96], reference=qat)
    assert checked.agreement >= 0.95, checked

    io = to_tflite(
        qat,
        tmp_path / "qat_int8_io.tflite",
        quantization="int8",
        representative_data=small_x[:32],
        int8_io=True,
    )
    interpreter = Interpreter(str(io))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert evaluate_tflite(io, small_test, y_test[:96], reference=qat).agreement >= 0.95


def test_a_raw_pixel_student_is_pruned_then_quantized_to_an_int8_file(tmp_path):
    """`with_preprocessing`'s Rescaling crosses the bridge, is not pruned, and is quantized at its
    output (TFMOT's prune-preserving registry would otherwise fail on it)."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (48, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 48)
    base = models.get("convnet", widths=(2, 4), input_shape=(8, 8, 1), num_classes=3)
    student = models.with_preprocessing(base, 1 / 255)
    twin = compress.to_tf_keras(student)
    assert isinstance(twin.get_layer("preprocess"), tf_keras.layers.Rescaling)
    np.testing.assert_allclose(
        twin(x).numpy(), keras.ops.convert_to_numpy(student(x)), rtol=1e-5, atol=1e-5
    )

    pruned = compress.prune(
        student, (x, y), target_sparsity=0.5, epochs=1, batch_size=16, frequency=1, seed=0
    )
    assert [layer.name for layer in pruned.layers] == [layer.name for layer in student.layers]
    assert isinstance(pruned.get_layer("preprocess"), keras.layers.Rescaling)
    for name, value in compress.kernel_sparsity(pruned).items():
        size = pruned.get_layer(name).kernel.numpy().size
        assert value == pytest.approx(compress.expected_sparsity(0.5, size)), name

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Quantization-aware training leaves")
        qat = compress.quantize_aware(
            pruned, (x, y), epochs=1, batch_size=16, preserve_sparsity=True, seed=0
        )
    assert "quant_preprocess" in [layer.name for layer in qat.layers]
    path = to_tflite(qat, tmp_path / "raw_int8.tflite", quantization="int8", representative_data=x)
    interpreter = Interpreter(str(path))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    ops = interpreter._get_ops_details()
    assert {"QUANTIZE", "MUL", "CONV_2D"} <= {op["op_name"] for op in ops}
    (output,) = interpreter.get_output_details()
    (last,) = [op for op in ops if output["index"] in op["outputs"]]
    assert last["op_name"] == "DEQUANTIZE"
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    step = tensors[last["inputs"][0]]["quantization"][0]
    checked = evaluate_tflite(path, x, y, reference=qat)
    assert checked.agreement >= 0.95 and checked.max_abs_error <= 1.001 * step, (checked, step)


def test_a_missing_extra_says_how_to_install_it(trained, digits, monkeypatch):
    student, _ = trained
    x, y, _, _ = digits
    monkeypatch.setitem(sys.modules, "tf_keras", None)
    for call in (
        lambda: compress.prune(student, (x, y), frequency=2),
        lambda: compress.quantize_aware(student, (x, y)),
        lambda: compress.to_tf_keras(student),
    ):
        with pytest.raises(ImportError, match=r"tf_keras is missing.*tfdistill\[compress\]"):
            call()


def test_an_interrupted_prune_resumes_its_schedule(trained, digits, tmp_path):
    student, _ = trained
    x, y, _, _ = digits

    class Stop(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    class Seen(tf_keras.callbacks.Callback):
        epochs: list[int] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    def backup():
        return tf_keras.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)

    kwargs = {"target_sparsity": 0.5, "epochs": 2, "frequency": 2, "seed": 0}
    with pytest.raises(KeyboardInterrupt):
        compress.prune(student, (x[:256], y[:256]), callbacks=[backup(), Stop()], **kwargs)
    assert (tmp_path / "chief" / "checkpoint").is_file()
    pruned = compress.prune(student, (x[:256], y[:256]), callbacks=[backup(), Seen()], **kwargs)
    assert Seen.epochs == [1]
    # Only the restored pruning step reaches the target in one epoch: started over, the
    # schedule would stop half-way.
    assert compress.overall_sparsity(pruned) == pytest.approx(0.5, abs=0.01)
