"""Structured sparsity while training (`compress.StructuredSparsity`): network slimming's L1 on
BatchNorm scales and group lasso on filters, by hand in float64, through the Distiller's step
(one device and MirroredStrategy), its effect on unimportant channels, the tf_keras fine-tuner,
a `.keras` round trip, bad values, and `tfdistill run --sparsity_l1` reaching the stages."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdistill import Distiller, compress, data
from tfdistill import run as run_lib
from tfdistill.compress import slimming
from tfdistill.run import training

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

RNG = np.random.default_rng(0)
B = 8
X = RNG.normal(size=(B, 8, 8, 2)).astype("float32")
Y = RNG.integers(0, 3, size=B)
LAM, MU = 0.05, 0.02


def slim_net(seed: int = 0, classes: int = 3) -> keras.Model:
    """(B, 8, 8, 2) -> (B, classes): every kind of layer the penalty knows: convolution,
    BatchNorm, depthwise (multiplier 2), separable, transposed convolution (left out), a hidden
    dense layer and the classifier (left out of the group lasso)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    x = keras.layers.Conv2DTranspose(4, 3, padding="same", name="up")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, activation="relu", name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # scales of both signs, and one conv filter of zeros
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.normal(size=layer.gamma.shape).astype("float32"))
    kernel = model.get_layer("conv").kernel
    kernel.assign(tf.tensor_scatter_nd_update(kernel, [[0, 0, 0, 1]], [0.0]) * [1, 0, 1, 1])
    return model


def numpy_of(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


def by_hand(model, lam: float, mu: float) -> float:
    """λ·Σ|γ| + μ·Σ_f ‖W_f‖₂ of `slim_net`, in float64."""
    gammas = [numpy_of(model.get_layer(name).gamma) for name in ("bn1", "bn2")]
    norms = [
        np.sqrt((numpy_of(model.get_layer("conv").kernel) ** 2).sum(axis=(0, 1, 2))),  # (4,)
        np.sqrt((numpy_of(model.get_layer("dw").kernel) ** 2).sum(axis=(0, 1))),
        np.sqrt((numpy_of(model.get_layer("sep").pointwise_kernel) ** 2).sum(axis=(0, 1, 2))),
        np.sqrt((numpy_of(model.get_layer("hidden").kernel) ** 2).sum(axis=0)),  # (5,)
    ]
    return lam * sum(np.abs(g).sum() for g in gammas) + mu * sum(n.sum() for n in norms)


def test_the_penalty_is_the_papers_formula_by_hand():
    model = slim_net()
    both = compress.StructuredSparsity(bn_l1=LAM, group_lasso=MU)
    targets = both.targets(model)
    assert [(t.layer, t.kind) for t in targets] == [
        ("bn1", "bn_l1"),
        ("bn2", "bn_l1"),
        ("conv", "group_lasso"),
        ("dw", "group_lasso"),
        ("sep", "group_lasso"),
        ("hidden", "group_lasso"),
    ]
    assert float(both.penalty(model)) == pytest.approx(by_hand(model, LAM, MU), rel=1e-6)
    l1 = compress.StructuredSparsity(bn_l1=LAM)
    assert float(l1.penalty(model)) == pytest.approx(by_hand(model, LAM, 0.0), rel=1e-6)
    assert float(compress.StructuredSparsity().penalty(model)) == 0.0
    assert model.losses == []
    both.apply(model)
    assert float(sum(model.losses)) == pytest.approx(by_hand(model, LAM, MU), rel=1e-6)
    # The zero filter has norm 0 and gradient 0, not NaN.
    conv = model.get_layer("conv").kernel
    with tf.GradientTape() as tape:
        value = both.penalty(model)
    gradient = tape.gradient(value, conv.value)
    assert np.all(np.isfinite(gradient)) and np.all(gradient.numpy()[..., 1] == 0.0)
    assert slimming.filter_norms(np.zeros((3, 3, 2, 4)))[0] == 0.0


def test_apply_adds_to_other_regularizers_replaces_itself_and_comes_off():
    inputs = keras.Input((8, 8, 2))
    conv = keras.layers.Conv2D(4, 3, kernel_regularizer=keras.regularizers.L2(0.1), name="conv")
    x = keras.layers.BatchNormalization(name="bn")(conv(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    l2 = 0.1 * float(np.sum(numpy_of(conv.kernel) ** 2))
    norms = np.sqrt((numpy_of(conv.kernel) ** 2).sum(axis=(0, 1, 2))).sum()
    compress.StructuredSparsity(bn_l1=1.0, group_lasso=1.0).apply(model)
    assert float(sum(model.losses)) == pytest.approx(l2 + norms + 4.0, rel=1e-5)  # γ = 1
    compress.StructuredSparsity(group_lasso=2.0).apply(model)  # replaces, does not stack
    assert float(sum(model.losses)) == pytest.approx(l2 + 2.0 * norms, rel=1e-5)
    compress.StructuredSparsity().apply(model)
    assert float(sum(model.losses)) == pytest.approx(l2, rel=1e-5)
    compress.StructuredSparsity(bn_l1=1.0).apply(model)
    slimming.remove(model)
    assert float(sum(model.losses)) == pytest.approx(l2, rel=1e-5)
    model.get_layer("bn").trainable = False  # a frozen layer is never penalized
    compress.StructuredSparsity(bn_l1=1.0).apply(model)
    assert float(sum(model.losses)) == pytest.approx(l2, rel=1e-5)


def test_a_keras_round_trip_drops_the_penalty_and_apply_puts_it_back(tmp_path):
    model = compress.StructuredSparsity(bn_l1=LAM, group_lasso=MU).apply(slim_net())
    model.save(tmp_path / "slim.keras")
    loaded = keras.models.load_model(tmp_path / "slim.keras")
    assert loaded.losses == []  # held by the variables, not the layer configs
    assert keras.models.clone_model(model).losses == []
    sparsity = compress.StructuredSparsity.from_config(
        compress.StructuredSparsity(bn_l1=LAM, group_lasso=MU).get_config()
    )
    sparsity.apply(loaded)
    assert float(sum(loaded.losses)) == pytest.approx(by_hand(model, LAM, MU), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bn_l1": -1e-4}, r"bn_l1 must be a number >= 0 \(0: off\), got -0.0001"),
        ({"group_lasso": "1e-4"}, "group_lasso must be a number >= 0"),
        ({"bn_l1": True}, "bn_l1 must be a number >= 0"),
        ({"bn_l1": float("nan")}, "bn_l1 must be a number >= 0"),
    ],
)
def test_bad_strengths_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compress.StructuredSparsity(**kwargs)


def test_bad_run_values_and_models_are_refused():
    with pytest.raises(ValueError, match="sparsity_l1 must be >= 0, got -0.001"):
        run_lib.RunConfig(out="unused", sparsity_l1=-1e-3)
    with pytest.raises(ValueError, match="sparsity_group_lasso must be >= 0"):
        run_lib.RunConfig(out="unused", sparsity_group_lasso=-1.0)
    with pytest.raises(ValueError, match="apply needs a Keras 3 model, got str"):
        compress.StructuredSparsity(bn_l1=1.0).apply("model")


def one_sgd_step(sparsity, lr: float, strategy=None) -> dict[str, np.ndarray]:
    """{variable path: value} of a `slim_net` student after one Distiller step of SGD(lr), and
    before it under the key "before/<path>"; the teacher carries a penalty too, which the
    Distiller must ignore."""
    scope = strategy.scope() if strategy is not None else tf.init_scope()
    with scope:
        student, teacher = slim_net(0), slim_net(1)
        sparsity.apply(student)
        compress.StructuredSparsity(bn_l1=100.0, group_lasso=100.0).apply(teacher)
        distiller = Distiller(student, teacher)
        distiller.compile(optimizer=keras.optimizers.SGD(lr), alpha=0.5, temperature=2.0)
    values = {f"before/{v.path}": numpy_of(v) for v in student.trainable_weights}
    distiller.fit(X, Y, batch_size=B, epochs=1, shuffle=False, verbose=0)
    return values | {v.path: numpy_of(v) for v in student.trainable_weights}


def check_penalty_gradient(plain: dict, penalized: dict, lr: float) -> None:
    """The penalty moved γ by -lr·λ·sign(γ) and filter W_f by -lr·μ·W_f/‖W_f‖₂ (0 for a zero
    filter), on top of the task's own step, which both runs share."""
    for path in plain:
        if path.startswith("before/"):
            continue
        before = plain[f"before/{path}"]
        expected = np.zeros_like(before)
        if path.endswith("gamma"):
            expected = -lr * LAM * np.sign(before)
        elif path in ("conv/kernel", "dw/kernel", "dw/depthwise_kernel", "sep/pointwise_kernel"):
            axes = (0, 1) if path.startswith("dw") else (0, 1, 2)
            norms = np.sqrt((before**2).sum(axis=axes, keepdims=True))
            expected = -lr * MU * np.divide(before, norms, where=norms > 0, out=expected)
        elif path == "hidden/kernel":
            expected = -lr * MU * before / np.sqrt((before**2).sum(axis=0, keepdims=True))
        np.testing.assert_allclose(penalized[path] - plain[path], expected, atol=2e-6, err_msg=path)


def test_the_distillers_step_takes_the_penalty_gradient_and_ignores_the_teachers():
    lr = 0.1
    plain = one_sgd_step(compress.StructuredSparsity(), lr)
    penalized = one_sgd_step(compress.StructuredSparsity(bn_l1=LAM, group_lasso=MU), lr)
    check_penalty_gradient(plain, penalized, lr)


def test_under_a_mirrored_strategy_the_penalty_counts_once(mirrored):
    """Each replica adds penalty / replicas; their gradients add up to the penalty's."""
    lr = 0.1
    plain = one_sgd_step(compress.StructuredSparsity(), lr, mirrored)
    penalized = one_sgd_step(compress.StructuredSparsity(bn_l1=LAM, group_lasso=MU), lr, mirrored)
    check_penalty_gradient(plain, penalized, lr)


def noisy_digits(split: str, seed: int) -> np.ndarray:
    """Digits at 8x8 (B, 8, 8, 2): channel 0 the image, channel 1 uniform noise."""
    images = data.load("digits").x_train if split == "train" else data.load("digits").x_test
    images = images[:, 2::4, 2::4]
    noise = np.random.default_rng(seed).random(images.shape).astype("float32")
    return np.concatenate([images, noise], axis=-1)


def two_branch_net(seed: int) -> keras.Model:
    """A grouped convolution: channels 0-3 see the image, channels 4-7 only the noise."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(8, 3, padding="same", groups=2, use_bias=False, name="conv")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(x))
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))


def test_slimming_drives_the_scales_of_unimportant_channels_to_zero():
    """Three epochs of distillation with SGD (momentum 0.9, as in the paper): at λ = 1e-2 the
    four channels that see only noise end near 0 (about 0.002 when written), those that see
    the digits keep scales near 0.6, and accuracy does not drop; without the penalty the noise
    channels keep scales near 0.4."""
    ds = data.load("digits")
    x, x_test = noisy_digits("train", 0), noisy_digits("test", 1)
    scales, accuracy = {}, {}
    for lam in (0.0, 1e-2):
        student, teacher = two_branch_net(0), two_branch_net(1)
        compress.StructuredSparsity(bn_l1=lam).apply(student)
        distiller = Distiller(student, teacher)
        distiller.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9), alpha=0.5, temperature=2.0
        )
        distiller.fit(x, ds.y_train, batch_size=32, epochs=3, verbose=0)
        scales[lam] = np.abs(numpy_of(student.get_layer("bn").gamma))
        predicted = np.argmax(student.predict(x_test, verbose=0), axis=-1)
        accuracy[lam] = np.mean(predicted == ds.y_test)
    plain, slim = scales[0.0], scales[1e-2]
    assert plain[4:].min() > 0.2 and slim[4:].max() < 0.05, (plain, slim)
    assert slim[:4].min() > 0.25, slim
    assert np.median(slim) < 0.6 * np.median(plain)
    assert accuracy[1e-2] >= accuracy[0.0] - 0.03 and accuracy[0.0] > 0.85, accuracy


def test_the_tf_keras_fine_tuner_adds_the_penalty():
    pytest.importorskip("tensorflow_model_optimization", reason="needs the compress extra")
    tf_keras = pytest.importorskip("tf_keras", reason="needs the compress extra")
    from tfdistill.compress import tuner

    student = slim_net()
    compress.StructuredSparsity(bn_l1=1.0).apply(student)
    twin = compress.to_tf_keras(student)
    assert twin.losses == []  # the bridge does not carry the variables' penalty over
    sparsity = compress.StructuredSparsity(bn_l1=LAM, group_lasso=MU)
    assert float(sparsity.penalty(twin)) == pytest.approx(by_hand(student, LAM, MU), rel=1e-6)
    with pytest.warns(UserWarning, match=r"in float.*sep \(SeparableConv2D\)"):
        quantized = compress.quantize_model(student)  # kernels held by TFMOT's wrappers
    assert [t.layer for t in sparsity.targets(quantized)] == [
        t.layer for t in sparsity.targets(student)
    ]
    assert float(sparsity.penalty(quantized)) == pytest.approx(by_hand(student, LAM, MU), rel=1e-6)

    def step(sparsity):
        """The logged loss of one SGD(0.1) step of the twin, and its weights after it."""
        twin = compress.to_tf_keras(student)
        fine_tuner = tuner.FineTuner(twin, None, sparsity=sparsity)
        fine_tuner.compile(optimizer=tf_keras.optimizers.SGD(0.1))
        loss = fine_tuner.train_on_batch(X, Y, return_dict=True)["loss"]
        names = {w.name: w.name.split(":")[0].replace("dw/depthwise_", "dw/") for w in twin.weights}
        return loss, {names[w.name]: numpy_of(w) for w in twin.trainable_weights}

    loss_plain, plain = step(None)
    loss_slim, slim = step(sparsity)
    assert loss_slim - loss_plain == pytest.approx(by_hand(student, LAM, MU), rel=1e-4)
    before = {f"before/{w.path}": numpy_of(w) for w in student.trainable_weights}
    check_penalty_gradient(plain | before, slim, 0.1)


def test_prune_and_quantize_aware_hand_the_penalty_to_the_fine_tuner(monkeypatch):
    pytest.importorskip("tensorflow_model_optimization", reason="needs the compress extra")
    from tfdistill.compress import tuner

    student = slim_net()
    sparsity = compress.StructuredSparsity(bn_l1=LAM, group_lasso=MU)
    handed = []

    def run(tuning, model, callbacks=None):  # what the fine-tuner would train, untrained
        model(X)  # QAT's wrappers now hold fake-quantized kernels
        handed.append((tuning.sparsity, [t.layer for t in sparsity.targets(model)]))
        handed.append(float(sparsity.penalty(model)))

    monkeypatch.setattr(tuner.Tuning, "run", run)
    kwargs = {"epochs": 2, "batch_size": 4, "sparsity": sparsity}
    compress.prune(student, (X, Y), **kwargs)
    with pytest.warns(UserWarning, match=r"in float.*sep \(SeparableConv2D\)"):
        compress.quantize_aware(student, (X, Y), **kwargs)
    layers = [t.layer for t in sparsity.targets(student)]
    assert handed[0] == handed[2] == (sparsity, layers)
    assert handed[1] == handed[3] == pytest.approx(by_hand(student, LAM, MU), rel=1e-5)
    with pytest.raises(
        ValueError, match="sparsity must be a StructuredSparsity or None, not float"
    ):
        compress.prune(student, (X, Y), epochs=2, batch_size=4, sparsity=1e-4)


def test_run_sparsity_reaches_the_distil_and_fine_tuning_stages(monkeypatch):
    config = run_lib.RunConfig(
        out="unused",
        sparsity_l1=1e-3,
        sparsity_group_lasso=1e-4,
        teacher_kwargs={"widths": (2,)},
        student_kwargs={"widths": (2, 4)},
        student_epochs=1,
        prune_channels=0.5,
    )
    assert run_lib.fingerprinted(config)["sparsity_l1"] == 1e-3
    assert run_lib.fingerprinted(config)["sparsity_group_lasso"] == 1e-4
    default = run_lib.fingerprinted(run_lib.RunConfig(out="unused"))
    assert "sparsity_l1" not in default and "sparsity_group_lasso" not in default
    expected = compress.StructuredSparsity(bn_l1=1e-3, group_lasso=1e-4)
    assert training.sparsity_of(config) == expected
    assert training.tfmot_fitting(config, None, None)["sparsity"] == expected

    fitted = []
    monkeypatch.setattr(training, "fit", lambda model, *args: fitted.append(model) or {})
    ds = data.load("digits").raw_pixels()
    ds = dataclasses.replace(ds, x_train=ds.x_train[:64], y_train=ds.y_train[:64])
    teacher = training.classifier("convnet", {"widths": (2,)}, ds, "teacher")
    init = training.classifier("convnet", {"widths": (2, 4)}, ds, "student").get_weights()
    elements = training.distillation_elements(config, ds, None, np.arange(8))
    distilled = training.distil(config, ds, teacher, elements, init).model
    channels = training.prune_channels(config, ds, distilled, teacher, elements).model
    for distiller, student in zip(fitted, (distilled, channels), strict=True):
        assert distiller.student is student
        penalty = float(expected.penalty(student))
        assert penalty > 0 and float(distiller._regularization()) == pytest.approx(penalty)
