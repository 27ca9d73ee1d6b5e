"""Attention transfer: maps and losses by hand, layer pairing, the Distiller's loss with attention,
gradient attention by double backprop, MirroredStrategy, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import cnn, linear, softmax
from tfdistill import AttentionTransfer, Distiller, GradientAttentionTransfer, models
from tfdistill.data import cache_teacher_outputs
from tfdistill.losses import attention_map, attention_transfer_loss

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

RNG = np.random.default_rng(4)


def np_map(features, p=2.0):
    """(B, H, W, C) -> (B, H·W) in float64."""
    maps = (np.abs(features.astype("float64")) ** p).mean(-1).reshape(len(features), -1)
    return maps / np.linalg.norm(maps, axis=-1, keepdims=True)


def test_attention_map_by_hand():
    features = np.array([[[[1, -3], [2, 0]], [[0, 0], [-1, 1]]]], "float32")
    np.testing.assert_allclose(attention_map(features), [[5, 2, 0, 1] / np.sqrt(30)], rtol=1e-6)
    np.testing.assert_allclose(attention_map(features, p=1), [[2, 1, 0, 1] / np.sqrt(6)], 1e-6)
    np.testing.assert_allclose(attention_map(features, p=4), np_map(features, 4), rtol=1e-6)


def test_attention_transfer_loss_by_hand():
    teacher = np.zeros((2, 2, 2, 3), "float32")
    teacher[:, 0, 0] = 1.0
    student = np.zeros((2, 2, 2, 5), "float32")
    student[0, 0, 1] = -2.0
    student[1, 0, 0] = 7.0
    # Example 0: maps [0, 1, 0, 0] vs [1, 0, 0, 0], mean of squares 2 / 4; example 1: equal.
    assert float(attention_transfer_loss(student, teacher)) == pytest.approx(0.25, rel=1e-6)


def test_invariant_to_channel_order_and_scale():
    features = RNG.normal(size=(3, 4, 4, 6)).astype("float32")
    shuffled = features[..., RNG.permutation(6)]
    np.testing.assert_allclose(attention_map(shuffled), attention_map(features), rtol=1e-5)
    np.testing.assert_allclose(attention_map(3 * features), attention_map(features), rtol=1e-5)
    assert float(attention_transfer_loss(shuffled, features)) < 1e-12
    teacher = RNG.normal(size=(3, 4, 4, 2)).astype("float32")
    assert float(attention_transfer_loss(features, teacher)) == pytest.approx(
        ((np_map(features) - np_map(teacher)) ** 2).mean(), rel=1e-5
    )


def test_student_map_is_resampled_to_the_teacher_resolution():
    teacher = RNG.random((2, 2, 2, 3)).astype("float32")
    block = teacher.repeat(2, axis=1).repeat(2, axis=2)  # every pixel copied into a 2x2 block
    assert float(attention_transfer_loss(block, teacher)) < 1e-12
    student = RNG.random((2, 4, 4, 3)).astype("float32")
    pooled = (np.abs(student) ** 2).mean(-1).reshape(2, 2, 2, 2, 2).mean(axis=(2, 4))
    expected = pooled.reshape(2, -1) / np.linalg.norm(pooled.reshape(2, -1), axis=-1)[:, None]
    np.testing.assert_allclose(attention_map(student, size=(2, 2)), expected, rtol=1e-5)
    assert attention_map(teacher, size=(4, 4)).shape == (2, 16)
    with pytest.raises(ValueError, match="integer factor"):
        attention_transfer_loss(RNG.random((1, 3, 3, 1)), teacher)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        attention_map(RNG.random((2, 5)))
    with pytest.raises(ValueError, match="p must be >= 1"):
        attention_map(teacher, p=0.5)


X_IMG = RNG.random((8, 8, 8, 2)).astype("float32")
Y_IMG = RNG.integers(0, 3, 8)


def test_auto_pairs_take_the_last_layer_at_each_resolution():
    student, teacher = cnn((2, 3), "s", 0), cnn((4, 6), "t", 1)
    pairs = AttentionTransfer().resolve(student, teacher)
    assert [(p.student, p.teacher, p.student_size) for p in pairs] == [
        ("c1", "c1", (8, 8)),
        ("c2", "c2", (4, 4)),
    ]


def test_auto_pairs_zoo_stages_across_families_by_resolution():
    teacher = models.get("wide_resnet", depth=10, width=1, input_shape=(32, 32, 3))
    mobilenet = models.get("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3))
    shufflenet = models.get("shufflenet_v2", scale=0.5, input_shape=(32, 32, 3))
    by_mobilenet = AttentionTransfer().resolve(mobilenet, teacher)
    assert [(p.student, p.teacher, p.teacher_size[0]) for p in by_mobilenet] == [
        ("stage1_out", "stage1_out", 32),
        ("stage2_out", "stage2_out", 16),
        ("stage3_out", "stage3_out", 8),
    ]
    by_shufflenet = AttentionTransfer().resolve(shufflenet, teacher)
    assert [(p.student, p.teacher, p.teacher_size[0]) for p in by_shufflenet] == [
        ("stage1_out", "stage2_out", 16),
        ("stage2_out", "stage3_out", 8),
    ]


def make_distiller(attention, alpha=0.5, lr=0.05, seed=0, jit_compile="auto"):
    keras.utils.set_random_seed(seed)
    distiller = Distiller(cnn((2, 3), "s", 10 + seed), cnn((4, 6), "t", 20), attention=attention)
    distiller.compile(
        keras.optimizers.SGD(lr),
        alpha=alpha,
        temperature=2.0,
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return distiller


def fit_once(distiller, x=X_IMG, y=Y_IMG):
    history = distiller.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return {k: v[0] for k, v in history.history.items()}


def test_distiller_loss_adds_half_beta_times_the_attention_sum():
    beta, alpha = 300.0, 0.4
    distiller = make_distiller(AttentionTransfer(beta=beta), alpha=alpha)
    s_taps = keras.Model(
        distiller.student.inputs, [distiller.student.get_layer(n).output for n in ("c1", "c2")]
    )
    t_taps = keras.Model(
        distiller.teacher.inputs, [distiller.teacher.get_layer(n).output for n in ("c1", "c2")]
    )
    expected = sum(
        ((np_map(s) - np_map(t)) ** 2).mean()
        for s, t in zip(
            s_taps.predict(X_IMG, verbose=0), t_taps.predict(X_IMG, verbose=0), strict=True
        )
    )
    logs = fit_once(distiller)
    assert logs["attention_loss"] == pytest.approx(expected, rel=1e-4)
    kd = alpha * logs["student_loss"] + (1 - alpha) * logs["distillation_loss"]
    assert logs["loss"] == pytest.approx(kd + beta / 2 * expected, rel=1e-5)


def test_identical_networks_give_zero_attention_loss():
    teacher = models.get("convnet", widths=(4, 8), input_shape=(12, 12, 1), num_classes=3)
    for layer in teacher.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(RNG.normal(size=layer.moving_mean.shape))
            layer.moving_variance.assign(RNG.uniform(0.5, 2, size=layer.moving_variance.shape))
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    distiller = Distiller(
        student, teacher, attention=[AttentionTransfer(), GradientAttentionTransfer()]
    )
    distiller.compile(alpha=0.5)
    x, y = RNG.random((6, 12, 12, 1)).astype("float32"), RNG.integers(0, 3, 6)
    logs = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert [p.student for p in distiller.pairs] == ["stage1_out", "stage2_out"]
    assert logs["attention_loss"] < 1e-10
    assert logs["gradient_attention_loss"] < 1e-5
    assert logs["distillation_loss"] < 1e-6


D, C, B = 5, 3, 6
X = RNG.normal(size=(B, D)).astype("float32")
Y = RNG.integers(0, C, B)
W_S, B_S = RNG.normal(size=(D, C)).astype("float32"), RNG.normal(size=C).astype("float32")
W_T, B_T = RNG.normal(size=(D, C)).astype("float32"), RNG.normal(size=C).astype("float32")


def reference_gat_loss(w_s, b_s, alpha, temperature, beta, y=Y):
    """(total loss, mean ‖J_s − J_t‖) for linear models; J = (softmax(xW + b) − onehot(y)) Wᵀ,
    with the teacher's top class where y is -1."""
    s, t = X @ w_s + b_s, X @ W_T + B_T
    targets = np.eye(C)[np.where(y >= 0, y, t.argmax(-1))]
    labeled = y >= 0
    hard = -np.log(softmax(s)[labeled, y[labeled]]).mean()
    pt, ps = softmax(t / temperature), softmax(s / temperature)
    soft = temperature**2 * (pt * np.log(pt / ps)).sum(-1).mean()
    j_s, j_t = (softmax(s) - targets) @ w_s.T, (softmax(t) - targets) @ W_T.T
    gat = np.linalg.norm(j_s - j_t, axis=-1).mean()
    return alpha * hard + (1 - alpha) * soft + beta / 2 * gat, gat


@pytest.mark.parametrize("unlabeled", [False, True])
def test_gradient_attention_value_and_double_backprop_gradient(unlabeled):
    alpha, temperature, beta = 0.3, 2.0, 0.8
    y = Y.copy()
    if unlabeled:
        y[:2] = -1
    student, teacher = linear(W_S, B_S, "student"), linear(W_T, B_T, "teacher")
    distiller = Distiller(student, teacher, attention=GradientAttentionTransfer(beta=beta))
    distiller.compile(keras.optimizers.SGD(1.0), alpha=alpha, temperature=temperature)
    logs = fit_once(distiller, X, y)
    w64, b64 = W_S.astype("float64"), B_S.astype("float64")
    total, gat = reference_gat_loss(w64, b64, alpha, temperature, beta, y)
    assert logs["gradient_attention_loss"] == pytest.approx(gat, rel=1e-4)
    assert logs["loss"] == pytest.approx(total, rel=1e-4)

    def numeric_grad(beta):
        """Central differences of the reference loss in W_s."""
        grad, eps = np.zeros_like(w64), 1e-6
        for i in np.ndindex(w64.shape):
            up, down = w64.copy(), w64.copy()
            up[i] += eps
            down[i] -= eps
            grad[i] = (
                reference_gat_loss(up, b64, alpha, temperature, beta, y)[0]
                - reference_gat_loss(down, b64, alpha, temperature, beta, y)[0]
            ) / (2 * eps)
        return grad

    step = W_S - student.get_weights()[0]
    np.testing.assert_allclose(step, numeric_grad(beta), rtol=2e-3, atol=2e-5)
    no_gat = numeric_grad(0.0)
    assert np.abs(step - no_gat).max() > 0.05 * np.abs(no_gat).max()


def test_mirrored_strategy_matches_single_device_with_attention(mirrored):
    """The one device runs the step compiled by XLA, the whole of it (double backprop
    included) in one program with no Python on the host, as TPUStrategy needs; the two
    replicas run it without XLA. Both give the same numbers."""
    y = Y_IMG.copy()
    y[:2] = -1

    def build(jit_compile):
        attention = [AttentionTransfer(beta=500.0), GradientAttentionTransfer(beta=0.5)]
        return make_distiller(attention, alpha=0.3, jit_compile=jit_compile)

    single = build(True)
    with mirrored.scope():
        replicated = build(False)
    assert single.jit_compile and not replicated.jit_compile
    fit = {"batch_size": 4, "epochs": 2, "shuffle": False, "verbose": 0}
    single_logs = single.fit(X_IMG, y, **fit).history
    mirrored_logs = replicated.fit(X_IMG, y, **fit).history
    assert {"attention_loss", "gradient_attention_loss"} <= set(single_logs)
    for key, values in single_logs.items():
        np.testing.assert_allclose(mirrored_logs[key], values, rtol=1e-5, err_msg=key)
    for a, b in zip(single.student.get_weights(), replicated.student.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_cross_family_students_train_with_attention():
    keras.utils.set_random_seed(0)
    x = RNG.random((4, 32, 32, 3)).astype("float32")
    y = RNG.integers(0, 10, 4)
    teacher = models.get("wide_resnet", depth=10, width=1, input_shape=(32, 32, 3), num_classes=10)
    # ShuffleNet's pairing is covered by test_auto_pairs_zoo_stages_across_families_by_resolution.
    for family, kwargs, attention in (
        ("mobilenet_v1", {"alpha": 0.25}, [AttentionTransfer(), GradientAttentionTransfer()]),
    ):
        student = models.get(family, input_shape=(32, 32, 3), num_classes=10, **kwargs)
        before = [w.copy() for w in student.get_weights()]
        distiller = Distiller(student, teacher, attention=attention)
        distiller.compile(keras.optimizers.SGD(0.01), alpha=0.5)
        logs = fit_once(distiller, x, y)
        assert all(np.isfinite(v) for v in logs.values()), logs
        assert logs["attention_loss"] > 0 and logs.get("gradient_attention_loss", 1) > 0
        changed = [
            not np.allclose(a, b) for a, b in zip(before, student.get_weights(), strict=True)
        ]
        assert any(changed)


def test_explicit_pairs_resample_with_a_warning_and_save_round_trip(tmp_path):
    attention = [
        AttentionTransfer(pairs=[("c1", "c2")], beta=100.0, p=1.0),
        GradientAttentionTransfer(beta=0.25),
    ]
    with pytest.warns(UserWarning, match="8x8 map is resampled to the teacher's 4x4"):
        distiller = make_distiller(attention)
    fit_once(distiller)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.pairs == distiller.pairs
    at, gat = loaded.attention
    assert (at.pairs, at.beta, at.p, gat.beta) == ([("c1", "c2")], 100.0, 1.0, 0.25)
    assert fit_once(loaded) == pytest.approx(fit_once(distiller), rel=1e-5)


def test_bad_attention_arguments_are_named():
    student, teacher = cnn((2, 3), "s", 0), cnn((4, 6), "t", 1)
    with pytest.raises(ValueError, match="no layer named 'nope'; its stage outputs are"):
        Distiller(student, teacher, attention=AttentionTransfer(pairs=[("nope", "c1")]))
    with pytest.raises(ValueError, match="attention transfer and hints tap \\(B, H, W, C\\)"):
        Distiller(student, teacher, attention=AttentionTransfer(pairs=[("pool", "c1")]))
    with pytest.raises(ValueError, match="integer factor"):
        Distiller(
            cnn((2, 3), "s9", 0, input_shape=(9, 9, 2)),
            cnn((2, 3), "t9", 0, input_shape=(9, 9, 2)),
            attention=AttentionTransfer(pairs=[("c1", "c2")]),
        )
    with pytest.raises(ValueError, match='pairs must be "auto"'):
        AttentionTransfer(pairs="stages")
    with pytest.raises(ValueError, match="beta must be a number >= 0"):
        AttentionTransfer(beta=-1)
    with pytest.raises(ValueError, match="beta must be a number >= 0"):
        GradientAttentionTransfer(beta="high")
    with pytest.raises(ValueError, match="p must be >= 1"):
        AttentionTransfer(p=0.5)
    with pytest.raises(ValueError, match="at most one of each"):
        Distiller(student, teacher, attention=[AttentionTransfer(), AttentionTransfer()])
    with pytest.raises(ValueError, match="no spatial resolution shared"):
        Distiller(student, keras.Model(*_dense_only((8, 8, 2))), attention=AttentionTransfer())

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(tf.reduce_mean(x, axis=(1, 2)))

    with pytest.raises(ValueError, match="subclassed or unbuilt"):
        Distiller(Subclassed(), teacher, attention=AttentionTransfer())
    distiller = make_distiller(AttentionTransfer())
    cached = cache_teacher_outputs(
        tf.data.Dataset.from_tensor_slices((X_IMG, Y_IMG)).batch(4), distiller.teacher
    )
    with pytest.raises(ValueError, match="Cached teacher outputs hold only the teacher's logits"):
        distiller.fit(cached, epochs=1, verbose=0, shuffle=False)


def _dense_only(input_shape):
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    return inputs, keras.layers.Dense(3)(x)


class CallCounter(keras.layers.Layer):
    """Identity that counts how many times the graph runs through it."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="n")

    def call(self, x):
        self.calls.assign_add(1.0)
        return x


def counted_cnn(widths, name, seed):
    inputs = keras.Input((8, 8, 2))
    base = cnn(widths, f"{name}_base", seed)
    x = CallCounter(name="counter")(inputs)
    for layer in base.layers[1:]:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def test_each_network_runs_forward_once_per_step():
    student, teacher = counted_cnn((2, 3), "s", 0), counted_cnn((4, 6), "t", 1)
    distiller = Distiller(
        student, teacher, attention=[AttentionTransfer(), GradientAttentionTransfer()]
    )
    distiller.compile(keras.optimizers.SGD(0.01))
    distiller.fit(X_IMG, Y_IMG, batch_size=4, epochs=1, verbose=0)
    assert [p.student for p in distiller.pairs] == ["c1", "c2"]
    assert float(student.get_layer("counter").calls) == 2.0  # 8 images, 2 steps
    assert float(teacher.get_layer("counter").calls) == 2.0


@pytest.mark.parametrize(
    "policy, rtol, gradient_rtol",
    [("mixed_float16", 1e-3, 1e-3), ("mixed_bfloat16", 2e-2, 0.15)],
)
def test_mixed_precision_attention_terms_are_float32(policy, rtol, gradient_rtol):
    """16-bit features and input gradients, float32 maps and distances: one step's logs match
    the float32 models' within `rtol`. The input gradients themselves are backpropagated
    through 16-bit layers; with bfloat16's 8 significant bits, ‖J_s − J_t‖ of two similar
    gradients moves by up to 6% here, hence `gradient_rtol`."""
    attention = [AttentionTransfer(beta=500.0), GradientAttentionTransfer(beta=0.5)]
    y = Y_IMG.copy()
    y[:2] = -1
    reference = fit_once(make_distiller(attention, alpha=0.3, jit_compile=False), X_IMG, y)
    keras.config.set_dtype_policy(policy)
    try:
        distiller = make_distiller(attention, alpha=0.3, jit_compile=False)
    finally:
        keras.config.set_dtype_policy("float32")
    features = distiller._student_forward([X_IMG])[1:]
    assert {f.dtype for f in features} == {tf.dtypes.as_dtype(policy.removeprefix("mixed_"))}
    logs = fit_once(distiller, X_IMG, y)
    assert set(logs) == set(reference)
    for key, value in reference.items():
        assert np.isfinite(logs[key]), key
        tolerance = gradient_rtol if key == "gradient_attention_loss" else rtol
        if key != "accuracy":
            assert logs[key] == pytest.approx(value, rel=tolerance), key
    assert distiller.attention_loss_tracker.result().dtype == tf.float32


def test_stage_maps_are_the_maps_the_loss_compares_and_get_drawn(tmp_path):
    """`attention.stage_maps` against the numpy map of the tapped outputs, (B, H, W) each;
    `delivery.attention_pictures` pairs the stages of a teacher and two students on the digits
    test images and `plots.attention_maps` draws them."""
    from tfdistill import data, plots
    from tfdistill.attention import stage_maps
    from tfdistill.run import delivery

    keras.utils.set_random_seed(3)
    teacher = models.get("convnet", input_shape=(32, 32, 1), num_classes=10, widths=(4, 8))
    student = models.get("convnet", input_shape=(32, 32, 1), num_classes=10, widths=(2, 4))
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype("float32")
    names = [layer.name for layer in teacher.layers if layer.name.endswith("_out")]
    maps = stage_maps(teacher, names, x)
    taps = keras.Model(teacher.inputs, [teacher.get_layer(n).output for n in names])(x)
    for got, out in zip(maps, taps, strict=True):
        out = np.asarray(out, dtype="float64")
        assert got.shape == out.shape[:3]
        np.testing.assert_allclose(got.reshape(3, -1), np_map(out), rtol=1e-5, atol=1e-7)
    ds = data.load("digits")
    pictures = delivery.attention_pictures(ds, teacher, {"distilled": student, "scratch": student})
    assert pictures["stages"] == names and pictures["images"].shape == (4, 32, 32, 1)
    assert sorted(pictures["maps"]) == ["distilled", "scratch", "teacher"]
    assert [m.shape[1:] for m in pictures["maps"]["teacher"]] == [t.shape[1:3] for t in taps]
    assert 0.0 <= pictures["images"].min() and pictures["images"].max() == 1.0
    png = plots.attention_maps(pictures, tmp_path / "maps.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    flat = keras.Sequential(
        [keras.Input((32, 32, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    assert delivery.attention_pictures(ds, flat, {"distilled": student}) is None


def test_the_report_pictures_attention_only_for_attention_methods():
    from types import SimpleNamespace

    from tfdistill import data
    from tfdistill import run as run_lib
    from tfdistill.run import stages

    teacher = models.get("convnet", input_shape=(32, 32, 1), num_classes=10, widths=(4, 8))
    student = models.get("convnet", input_shape=(32, 32, 1), num_classes=10, widths=(2, 4))
    found = {"teacher": teacher, "student_distilled": student, "student_scratch": student}
    ds = data.load("digits")
    for method, pictured in (("at", True), ("gat", True), ("kd", False), ("fitnet", False)):
        config = run_lib.RunConfig(out="unused", method=method)
        run = SimpleNamespace(config=config, ds=ds, float32=found.__getitem__)
        pictures = stages.pictures_of(run)
        assert (pictures is not None) == pictured
        if pictured:
            assert sorted(pictures["maps"]) == ["distilled", "scratch", "teacher"]
