import functools

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from tests.helpers import linear, reference_loss, softmax
from tfdistill import Distiller, models, precision
from tfdistill.data import cache_teacher_outputs
from tfdistill.distiller import resolve_jit_compile

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

RNG = np.random.default_rng(0)
D, C, B = 6, 4, 8
X = RNG.normal(size=(B, D)).astype("float32")
Y = RNG.integers(0, C, size=B)
W_S, B_S = RNG.normal(size=(D, C)).astype("float32"), RNG.normal(size=C).astype("float32")
W_T, B_T = (2 * RNG.normal(size=(D, C))).astype("float32"), RNG.normal(size=C).astype("float32")


def make(alpha=0.3, temperature=2.5, lr=0.5, teacher_softmax=False, **compile_kwargs):
    student = linear(W_S, B_S, "student")
    teacher = linear(W_T, B_T, "teacher", softmax_out=teacher_softmax)
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.SGD(lr), alpha=alpha, temperature=temperature, **compile_kwargs
    )
    return distiller


def one_step(distiller, x=X, y=Y, **kwargs):
    history = distiller.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0, **kwargs)
    return {k: v[0] for k, v in history.history.items()}


@pytest.mark.parametrize("jit_compile", [True, False])
def test_loss_and_gradient_match_hand_computation(jit_compile):
    """With and without XLA: both match the float64 reference within 1e-5."""
    alpha, temperature, lr = 0.3, 2.5, 0.5
    loss, hard, soft, grad_w, grad_b = reference_loss(X, Y, W_S, B_S, W_T, B_T, alpha, temperature)
    distiller = make(alpha, temperature, lr, jit_compile=jit_compile)
    assert distiller.jit_compile is jit_compile
    logs = one_step(distiller)
    assert logs["student_loss"] == pytest.approx(hard, rel=1e-5)
    assert logs["distillation_loss"] == pytest.approx(soft, rel=1e-4)
    assert logs["loss"] == pytest.approx(loss, rel=1e-4)
    w, b = distiller.student.get_layer("student_dense").get_weights()
    np.testing.assert_allclose(w, W_S - lr * grad_w, atol=1e-5)
    np.testing.assert_allclose(b, B_S - lr * grad_b, atol=1e-5)


@pytest.mark.parametrize(
    "string, obj",
    [
        ("kl_divergence", keras.losses.KLDivergence()),
        ("categorical_crossentropy", keras.losses.CategoricalCrossentropy()),
        ("categorical_crossentropy", keras.losses.CategoricalCrossentropy(from_logits=True)),
    ],
)
def test_string_and_object_losses_agree(string, obj):
    by_string = one_step(make(distillation_loss_fn=string))
    by_object = one_step(make(distillation_loss_fn=obj))
    assert by_object["distillation_loss"] == pytest.approx(by_string["distillation_loss"], 1e-5)


def test_crossentropy_differs_from_kl_by_teacher_entropy():
    temperature = 2.5
    pt = softmax((X @ W_T + B_T) / temperature)
    entropy = -(pt * np.log(pt)).sum(-1).mean()
    kl = one_step(make(distillation_loss_fn="kl_divergence"))["distillation_loss"]
    ce = one_step(make(distillation_loss_fn="categorical_crossentropy"))["distillation_loss"]
    assert ce - kl == pytest.approx(temperature**2 * entropy, rel=1e-4)


def test_softmax_teacher_is_detected():
    assert one_step(make(teacher_softmax=True))["distillation_loss"] == pytest.approx(
        one_step(make())["distillation_loss"], rel=1e-4
    )
    assert make(teacher_softmax=True)._teacher_kind == "probabilities"


def test_alpha_extremes_select_one_term():
    _, hard, soft, *_ = reference_loss(X, Y, W_S, B_S, W_T, B_T, 0.0, 2.5)
    assert one_step(make(alpha=1.0))["loss"] == pytest.approx(hard, rel=1e-5)
    assert one_step(make(alpha=0.0))["loss"] == pytest.approx(soft, rel=1e-4)


def test_unlabeled_examples_only_feed_the_soft_term():
    y = Y.copy()
    y[: B // 2] = -1
    labeled = slice(B // 2, B)
    _, hard, *_ = reference_loss(X[labeled], Y[labeled], W_S, B_S, W_T, B_T, 0.5, 2.5)
    _, _, soft, *_ = reference_loss(X, Y, W_S, B_S, W_T, B_T, 0.5, 2.5)
    logs = one_step(make(alpha=0.5, metrics=["accuracy"]), y=y)
    assert logs["student_loss"] == pytest.approx(hard, rel=1e-5)
    assert logs["distillation_loss"] == pytest.approx(soft, rel=1e-4)
    assert logs["loss"] == pytest.approx(0.5 * hard + 0.5 * soft, rel=1e-4)
    predicted = (X[labeled] @ W_S + B_S).argmax(-1)
    assert logs["accuracy"] == pytest.approx((predicted == Y[labeled]).mean())


def test_one_hot_labels_equal_sparse():
    one_hot = np.eye(C, dtype="float32")[Y]
    assert one_step(make(), y=one_hot)["student_loss"] == pytest.approx(
        one_step(make())["student_loss"], rel=1e-6
    )


def test_sample_weights_weight_each_example():
    weights = np.zeros(B, "float32")
    weights[:2] = 1.0
    _, hard, *_ = reference_loss(X[:2], Y[:2], W_S, B_S, W_T, B_T, 0.5, 2.5)
    logs = one_step(make(alpha=1.0), sample_weight=weights)
    assert logs["student_loss"] == pytest.approx(hard * 2 / B, rel=1e-5)


def test_teacher_is_frozen():
    keras.utils.set_random_seed(1)
    teacher = keras.Sequential(
        [
            keras.Input((D,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(momentum=0.5),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(C),
        ]
    )
    before = [v.numpy().copy() for v in teacher.weights]
    distiller = Distiller(linear(W_S, B_S, "student"), teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(1.0), alpha=0.0)
    distiller.fit(X, Y, batch_size=4, epochs=2, verbose=0)
    assert not teacher.trainable
    assert len(distiller.trainable_variables) == 2
    for old, new in zip(before, teacher.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    assert not np.allclose(distiller.student.get_weights()[0], W_S)


def test_student_batchnorm_moves_once_per_step():
    momentum = 0.8
    student = keras.Sequential(
        [
            keras.Input((D,)),
            keras.layers.BatchNormalization(momentum=momentum),
            keras.layers.Dense(C),
        ]
    )
    distiller = Distiller(student, linear(W_T, B_T, "teacher"))
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    one_step(distiller)
    moving_mean = student.layers[0].moving_mean.numpy()
    np.testing.assert_allclose(moving_mean, (1 - momentum) * X.mean(0), rtol=1e-5, atol=1e-6)


def test_evaluate_reports_the_students_own_loss_and_metrics():
    distiller = make(metrics=["accuracy"])
    student = linear(W_S, B_S, "alone")
    student.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    ours = distiller.evaluate(X, Y, verbose=0, return_dict=True)
    alone = student.evaluate(X, Y, verbose=0, return_dict=True)
    assert ours["loss"] == pytest.approx(alone["loss"], rel=1e-5)
    assert ours["accuracy"] == pytest.approx(alone["accuracy"])
    np.testing.assert_allclose(distiller.predict(X, verbose=0), X @ W_S + B_S, rtol=1e-4, atol=1e-5)


def test_student_regularization_is_in_the_loss():
    inputs = keras.Input((D,))
    dense = keras.layers.Dense(C, kernel_regularizer=keras.regularizers.L2(0.1))
    student = keras.Model(inputs, dense(inputs))
    dense.set_weights([W_S, B_S])
    distiller = Distiller(student, linear(W_T, B_T, "teacher"))
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=1.0)
    logs = one_step(distiller)
    assert logs["loss"] - logs["student_loss"] == pytest.approx(0.1 * (W_S**2).sum(), rel=1e-4)


def test_string_losses_and_weighted_metrics_survive_saving(tmp_path):
    distiller = make(
        distillation_loss_fn="categorical_crossentropy",
        student_loss_fn="sparse_categorical_crossentropy",
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="weighted_accuracy")],
    )
    distiller.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    assert loaded.soft_loss.base == "categorical_crossentropy"
    assert loaded.hard_loss.base == "sparse_categorical_crossentropy"
    assert one_step(loaded) == pytest.approx(one_step(distiller))
    assert "weighted_accuracy" in one_step(loaded)


def test_save_load_round_trip(tmp_path):
    distiller = make(
        alpha=0.25,
        temperature=4.0,
        lr=0.1,
        metrics=["accuracy"],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
    )
    one_step(distiller)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, Distiller)
    assert (loaded.alpha, loaded.temperature) == (0.25, 4.0)
    assert isinstance(loaded.soft_loss._base_fn, keras.losses.KLDivergence)
    assert isinstance(loaded.optimizer, keras.optimizers.SGD)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), distiller.predict(X, verbose=0))
    np.testing.assert_array_equal(loaded.teacher.get_weights()[0], W_T)
    assert not loaded.teacher.trainable
    assert one_step(loaded) == pytest.approx(one_step(distiller))
    np.testing.assert_allclose(
        loaded.student.get_weights()[0], distiller.student.get_weights()[0], rtol=1e-6
    )
    distiller.student.save(tmp_path / "student.keras")
    alone = keras.models.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(  # the Distiller predicts with XLA, the student alone without
        alone.predict(X, verbose=0), distiller.predict(X, verbose=0), rtol=1e-6, atol=1e-6
    )


def test_a_distiller_whose_teacher_was_trained_loads_without_a_warning(tmp_path):
    """The teacher's own training optimizer is not restored with the Distiller: a load prints
    nothing (it used to warn that a fresh Adam's 2 variables do not match the saved 10)."""
    import warnings

    teacher = linear(W_T, B_T, "teacher")
    teacher.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    teacher.fit(X, Y, epochs=1, verbose=0)
    student = linear(W_S, B_S, "student")
    student.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    distiller = Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.5)
    one_step(distiller)
    distiller.save(tmp_path / "d.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(tmp_path / "d.keras")
    assert [str(w.message) for w in caught] == []
    assert getattr(loaded.teacher, "optimizer", None) is None
    np.testing.assert_array_equal(loaded.teacher.get_weights()[0], teacher.get_weights()[0])
    assert one_step(loaded) == pytest.approx(one_step(distiller))


def test_bad_inputs_name_the_numbers():
    student, teacher = linear(W_S, B_S, "s"), linear(W_T, B_T, "t")
    with pytest.raises(ValueError, match="student predicts 4 classes but the teacher predicts 3"):
        Distiller(student, linear(W_T[:, :3], B_T[:3], "t3"))
    with pytest.raises(ValueError, match=r"student \(6,\), teacher \(5,\)"):
        Distiller(student, linear(W_T[:5], B_T, "t5"))
    distiller = Distiller(student, teacher)
    with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\], got 1.5"):
        distiller.compile(alpha=1.5)
    with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\], got -0.1"):
        distiller.compile(alpha=-0.1)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        distiller.compile(temperature=0)
    with pytest.raises(ValueError, match="temperature must be > 0, got -2"):
        distiller.compile(temperature=-2.0)
    with pytest.raises(ValueError, match="'kl_divergence'"):
        distiller.compile(distillation_loss_fn="kl")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        distiller.compile(student_loss_fn="mse")
    with pytest.raises(ValueError, match="student_loss_fn"):
        distiller.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="'auto', 'logits', 'probabilities'"):
        Distiller(student, teacher, teacher_outputs="softmax")
    with pytest.raises(ValueError, match="compile"):
        Distiller(student, teacher).fit(X, Y, verbose=0)


def test_mirrored_strategy_matches_single_device(mirrored, xla_auto):
    y = Y.copy()
    y[:3] = -1

    def build():
        keras.utils.set_random_seed(3)
        student = keras.Sequential(
            [keras.Input((D,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(C)]
        )
        distiller = Distiller(student, linear(W_T, B_T, "teacher"))
        distiller.compile(
            optimizer=keras.optimizers.SGD(0.5), alpha=0.4, temperature=2.0, metrics=["accuracy"]
        )
        return distiller

    single = build()
    with mirrored.scope():
        replicated = build()
    assert single.jit_compile and not replicated.jit_compile
    single_logs = single.fit(X, y, batch_size=B, epochs=2, shuffle=False, verbose=0).history
    mirrored_logs = replicated.fit(X, y, batch_size=B, epochs=2, shuffle=False, verbose=0).history
    for key, values in single_logs.items():
        np.testing.assert_allclose(mirrored_logs[key], values, rtol=1e-5, err_msg=key)
    for a, b in zip(single.student.get_weights(), replicated.student.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    single_eval = single.evaluate(X, y, batch_size=B, verbose=0, return_dict=True)
    mirrored_eval = replicated.evaluate(X, y, batch_size=B, verbose=0, return_dict=True)
    assert mirrored_eval == pytest.approx(single_eval, rel=1e-5)


def test_cached_teacher_outputs_train_like_the_teacher():
    keras.utils.set_random_seed(5)
    x = np.random.default_rng(1).random((40, 12, 12, 1), dtype="float32")
    y = np.random.default_rng(2).integers(0, C, 40)
    teacher = models.get("convnet", num_classes=C, input_shape=(12, 12, 1), widths=(8, 8))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    cached = cache_teacher_outputs(dataset, teacher)
    first = next(iter(cached))
    assert set(first[0]) == {"inputs", "teacher_logits"} and first[0]["inputs"].shape[0] == 16
    np.testing.assert_allclose(first[0]["teacher_logits"], teacher(x[:16], training=False), 1e-5)

    def train(data, teacher_model):
        keras.utils.set_random_seed(7)
        student = models.get("convnet", num_classes=C, input_shape=(12, 12, 1), widths=(4, 4))
        distiller = Distiller(student, teacher_model)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.5, metrics=["accuracy"])
        history = distiller.fit(data, epochs=2, verbose=0, shuffle=False).history
        return history, student.get_weights()

    uncached_logs, uncached_weights = train(dataset, teacher)
    scrambled = keras.models.clone_model(teacher)
    cached_logs, cached_weights = train(cached, scrambled)
    for key, values in uncached_logs.items():
        np.testing.assert_allclose(cached_logs[key], values, rtol=1e-5, err_msg=key)
    for a, b in zip(uncached_weights, cached_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    different_logs, _ = train(dataset, scrambled)
    assert different_logs["distillation_loss"] != pytest.approx(uncached_logs["distillation_loss"])


def test_cache_keeps_sample_weights_and_rejects_bad_input():
    teacher = linear(W_T, B_T, "teacher", softmax_out=True)
    cached = cache_teacher_outputs((X, Y, np.arange(B, dtype="float32")), teacher, batch_size=3)
    batches = list(cached)
    assert [len(b[1]) for b in batches] == [3, 3, 2] and len(batches[0]) == 3
    np.testing.assert_allclose(
        batches[0][0]["teacher_logits"], np.log(softmax(X[:3] @ W_T + B_T)), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="tuple of arrays"):
        cache_teacher_outputs(X, teacher)


def test_keras_peer_string_loss_skips_softmax_and_t_squared():
    """keras.distillation's "kl_divergence" string compares logits/T: the defect avoided here."""
    temperature = 2.5
    s, t = X @ W_S + B_S, X @ W_T + B_T
    peer = keras.distillation.LogitsDistillation(temperature=temperature, loss="kl_divergence")
    peer_value = float(peer.compute_loss(t, s))
    _, _, soft, *_ = reference_loss(X, Y, W_S, B_S, W_T, B_T, 0.0, temperature)
    ours = one_step(make(temperature=temperature, distillation_loss_fn="kl_divergence"))
    assert ours["distillation_loss"] == pytest.approx(soft, rel=1e-4)
    assert peer_value != pytest.approx(soft, rel=0.1)


class NoJit(keras.layers.Layer):
    """An identity layer that XLA cannot compile, as far as Keras knows."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_jit = False

    def call(self, inputs):
        return inputs


def with_no_jit_layer(model):
    inputs = keras.Input((D,))
    return keras.Model(inputs, model(NoJit()(inputs)))


def test_xla_is_on_by_default_also_on_cpu_and_an_explicit_choice_is_kept(xla_auto, monkeypatch):
    assert make().jit_compile is True
    assert resolve_jit_compile(linear(W_S, B_S, "alone")) is True
    assert make(jit_compile=False).jit_compile is False
    assert make(run_eagerly=True).jit_compile is False
    assert make().get_compile_config()["jit_compile"] == "auto"  # resolved again when loaded
    assert make(jit_compile=False).get_compile_config()["jit_compile"] is False
    monkeypatch.setenv("TFDISTILL_XLA", "off")
    assert make().jit_compile is False
    monkeypatch.setenv("TFDISTILL_XLA", "on")
    with pytest.raises(ValueError, match=r"TFDISTILL_XLA='on' is not allowed; choose one of"):
        make()


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_xla_is_off_by_default_when_a_layer_does_not_support_it(role, xla_auto):
    student, teacher = linear(W_S, B_S, "student"), linear(W_T, B_T, "teacher")
    if role == "student":
        student = with_no_jit_layer(student)
    else:
        teacher = with_no_jit_layer(teacher)
    distiller = Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    assert distiller.jit_compile is False
    assert np.isfinite(one_step(distiller)["loss"])


@pytest.mark.parametrize(
    "layer",
    [
        lambda: keras.layers.DepthwiseConv2D(3, padding="same"),
        lambda: keras.layers.SeparableConv2D(4, 3, padding="same"),
        lambda: keras.layers.Conv2D(4, 1, groups=2),
    ],
)
def test_xla_is_off_by_default_on_cpu_for_depthwise_and_grouped_convolutions(layer, xla_auto):
    """XLA's CPU backend trained MobileNet v1 and ShuffleNet v2 students about 4× slower
    (`benchmarks/xla_cpu.py`)."""
    assert not tf.config.list_physical_devices("GPU")

    def net(middle):
        inputs = keras.Input((6, 6, 2))
        x = middle(inputs) if middle else keras.layers.Conv2D(4, 1)(inputs)
        return keras.Model(inputs, keras.layers.Dense(C)(keras.layers.Flatten()(x)))

    distiller = Distiller(net(layer()), net(None))
    distiller.compile(optimizer="sgd")
    assert distiller.jit_compile is False
    plain = Distiller(net(None), net(None))
    plain.compile(optimizer="sgd")
    assert plain.jit_compile is True


def test_xla_is_off_by_default_under_op_determinism(xla_auto):
    tf.config.experimental.enable_op_determinism()
    try:
        assert make().jit_compile is False
        with pytest.warns(UserWarning, match="Proceeding with `jit_compile=False`"):
            assert make(jit_compile=True).jit_compile is False  # Keras's own rule
    finally:
        tf_config.disable_op_determinism()
    assert make().jit_compile is True


@pytest.fixture
def float32_afterwards():
    """Whatever a test sets, the global dtype policy is float32 again after it."""
    yield
    keras.config.set_dtype_policy("float32")


def built_under(policy, build):
    keras.config.set_dtype_policy(policy)
    try:
        return build()
    finally:
        keras.config.set_dtype_policy("float32")


def two_layer(name, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((D,))
    hidden = keras.layers.Dense(16, activation="relu", name=f"{name}_hidden")(inputs)
    hidden = keras.layers.BatchNormalization(name=f"{name}_bn")(hidden)
    return keras.Model(inputs, keras.layers.Dense(C, name=f"{name}_out")(hidden), name=name)


def mixed_fit(policy, distiller_under_policy=False, cached=False):
    """(history, distiller, initial student weights) of 4 epochs of 2 steps; the student and
    teacher built under `policy`, the Distiller too if `distiller_under_policy`."""
    student, teacher = built_under(policy, lambda: (two_layer("s", 1), two_layer("t", 2)))
    initial = student.get_weights()
    x = np.random.default_rng(3).normal(size=(16, D)).astype("float32")
    y = np.random.default_rng(4).integers(0, C, 16)
    y[:4] = -1

    def make_distiller():
        distiller = Distiller(student, teacher)
        distiller.compile(optimizer=keras.optimizers.Adam(0.01), alpha=0.3, temperature=2.0)
        return distiller

    distiller = built_under(policy, make_distiller) if distiller_under_policy else make_distiller()
    data = cache_teacher_outputs((x, y), teacher, batch_size=8) if cached else (x, y)
    if cached:
        assert next(iter(data))[0]["teacher_logits"].dtype == tf.float32
        history = distiller.fit(data, epochs=4, shuffle=False, verbose=0)
    else:
        history = distiller.fit(*data, batch_size=8, epochs=4, shuffle=False, verbose=0)
    return history.history, distiller, initial


@functools.cache
def float32_history(cached):
    return mixed_fit("float32", cached=cached)[0]


@pytest.mark.parametrize(
    "policy, distiller_under_policy, cached, rtol, xla",
    [
        ("mixed_float16", False, False, 5e-3, False),
        ("mixed_float16", True, True, 5e-3, True),
        ("mixed_bfloat16", False, True, 3e-2, True),
    ],
)
def test_mixed_precision_trains_like_float32(
    float32_afterwards, request, policy, distiller_under_policy, cached, rtol, xla
):
    """16-bit logits, float32 losses: finite, float32 logs within `rtol` of the float32 fit
    from the same weights (float16 keeps 11 significant bits, bfloat16 8; measured 3e-4 and
    8e-3), float32 variables that move, and loss scaling for float16 whatever policy the
    Distiller was made under; with XLA (the default outside the tests) for two of them."""
    reference = float32_history(cached)
    if xla:
        request.getfixturevalue("xla_auto")
    history, distiller, initial = mixed_fit(policy, distiller_under_policy, cached)
    assert distiller.jit_compile is xla
    student = distiller.student
    assert student.compute_dtype == policy.removeprefix("mixed_")
    assert distiller.teacher_logits(np.zeros((2, D), "float32")).dtype == tf.float32
    scaled = isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    assert set(history) == set(reference)
    for key, values in reference.items():
        assert np.all(np.isfinite(history[key])), key
        np.testing.assert_allclose(history[key], values, rtol=rtol, err_msg=key)
    for tracker in (
        distiller.loss_tracker,
        distiller.student_loss_tracker,
        distiller.distillation_loss_tracker,
    ):
        assert tracker.result().dtype == tf.float32
    assert {v.dtype for v in student.trainable_variables} == {"float32"}
    after = student.get_weights()
    assert all(w.dtype == np.float32 and np.all(np.isfinite(w)) for w in after)
    moved = [not np.allclose(a, b) for a, b in zip(initial, after, strict=True)]
    assert all(moved[:2]) and all(moved[-2:])  # both Dense layers' kernels and biases
    assert keras.config.dtype_policy().name == "float32"


def test_float32_copy_of_a_mixed_model_keeps_its_weights(float32_afterwards):
    mixed = built_under("mixed_bfloat16", lambda: two_layer("m", 5))
    copy = precision.float32_copy(mixed)
    assert {layer.compute_dtype for layer in copy.layers} == {"float32"}
    assert {layer.compute_dtype for layer in mixed.layers[1:]} == {"bfloat16"}
    assert copy.name == mixed.name and [w.name for w in copy.weights] == [
        w.name for w in mixed.weights
    ]
    for a, b in zip(copy.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert copy(X).dtype == tf.float32
    np.testing.assert_allclose(copy(X), tf.cast(mixed(X), tf.float32), rtol=0.05, atol=0.05)
    assert precision.float32_copy(copy) is copy
    with pytest.raises(RuntimeError), precision.dtype_policy("mixed_float16"):
        assert keras.config.dtype_policy().name == "mixed_float16"
        raise RuntimeError
    assert keras.config.dtype_policy().name == "float32"
