"""FitNets hints: the adapter and the hint term against float64 references, pairing, training
through `Distiller.fit`, the adapter kept out of the student, `.keras` round trips, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import cnn
from tfdistill import AttentionTransfer, Distiller, FeatureHint, HintAdapter, models
from tfdistill.data import cache_teacher_outputs

pytestmark = pytest.mark.smoke

RNG = np.random.default_rng(21)
X = RNG.random((6, 8, 8, 2)).astype("float32")
Y = np.array([0, 1, 2, 0, 1, 2])
EPS = 1e-3  # keras.layers.BatchNormalization's default epsilon


def taps(model, name):
    return keras.Model(model.inputs, model.get_layer(name).output).predict(X, verbose=0)


def np_adapter(features, kernel, training):
    """float64 FitNets regressor: 1×1 conv, then BatchNorm (γ 1, β 0) with the batch's
    statistics in training, the initial moving ones (0, 1) in inference."""
    mapped = np.einsum("bhwc,cd->bhwd", features.astype("float64"), kernel[0, 0])
    if not training:
        return mapped / np.sqrt(1 + EPS)
    mean, var = mapped.mean(axis=(0, 1, 2)), mapped.var(axis=(0, 1, 2))
    return (mapped - mean) / np.sqrt(var + EPS)


def hint_distiller(hint, alpha=0.5, lr=0.05, features=None):
    keras.utils.set_random_seed(0)
    distiller = Distiller(cnn((2, 3), "s", 10), cnn((4, 6), "t", 20), features=features or [hint])
    distiller.compile(keras.optimizers.SGD(lr), alpha=alpha, temperature=2.0, jit_compile=False)
    return distiller


def fit_once(distiller):
    history = distiller.fit(X, Y, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    return {k: v[0] for k, v in history.history.items()}


def test_hint_term_matches_the_mse_of_the_adapted_student_features():
    beta, alpha = 30.0, 0.4
    distiller = hint_distiller(FeatureHint(pairs=[("c2", "c2")], beta=beta), alpha=alpha)
    (adapter,) = distiller.hint_adapters
    kernel = adapter.conv.kernel.numpy()
    f_s, f_t = taps(distiller.student, "c2"), taps(distiller.teacher, "c2")
    expected = ((np_adapter(f_s, kernel, True) - f_t) ** 2).mean()
    logs = fit_once(distiller)
    assert logs["hint_loss"] == pytest.approx(expected, rel=1e-4)
    kd = alpha * logs["student_loss"] + (1 - alpha) * logs["distillation_loss"]
    assert logs["loss"] == pytest.approx(kd + beta * expected, rel=1e-5)
    assert not np.allclose(adapter.conv.kernel.numpy(), kernel)  # the adapter trains
    # Evaluation: inference-mode BatchNorm (moving statistics, one step from (0, 1)), with the
    # trained γ and β.
    norm = adapter.norm
    mapped = np.einsum("bhwc,cd->bhwd", taps(distiller.student, "c2"), adapter.conv.kernel[0, 0])
    normed = (mapped - norm.moving_mean) / np.sqrt(norm.moving_variance + EPS)
    evaluated = (normed * norm.gamma + norm.beta - f_t) ** 2
    logs = distiller.evaluate(X, Y, batch_size=len(X), verbose=0, return_dict=True)
    assert logs["hint_loss"] == pytest.approx(evaluated.mean(), rel=1e-4)


def test_mirrored_strategy_matches_single_device_with_hints(mirrored):
    def build():
        features = [AttentionTransfer(beta=100.0), FeatureHint(pairs="all", beta=20.0)]
        return hint_distiller(None, alpha=0.3, features=features)

    single = build()
    with mirrored.scope():
        replicated = build()
    fit = {"batch_size": 4, "epochs": 1, "shuffle": False, "verbose": 0}
    y = Y.copy()
    y[:2] = -1
    single_logs = single.fit(X, y, **fit).history
    mirrored_logs = replicated.fit(X, y, **fit).history
    for key, values in single_logs.items():
        np.testing.assert_allclose(mirrored_logs[key], values, rtol=1e-5, err_msg=key)
    for a, b in zip(single.hint_adapters, replicated.hint_adapters, strict=True):
        for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_the_adapter_resamples_to_the_teacher_grid():
    adapter = HintAdapter(5, (2, 2))
    features = RNG.normal(size=(3, 4, 4, 3)).astype("float32")
    out = adapter(features, training=False).numpy()
    assert out.shape == (3, 2, 2, 5)
    mapped = tf.image.resize(
        np.einsum("bhwc,cd->bhwd", features, adapter.conv.kernel[0, 0]),
        (2, 2),
        method="bilinear",
        antialias=True,
    )
    np.testing.assert_allclose(out, mapped.numpy() / np.sqrt(1 + EPS), rtol=1e-4, atol=1e-5)
    assert HintAdapter.from_config(adapter.get_config()).size == (2, 2)


def test_auto_hints_the_middle_stage_and_all_hints_every_shared_stage():
    student = models.get("resnet", depth=8, num_classes=10, input_shape=(32, 32, 3))
    teacher = models.get("resnet", depth=14, num_classes=10, input_shape=(32, 32, 3))
    middle = FeatureHint().resolve(student, teacher)
    every = FeatureHint(pairs="all").resolve(student, teacher)
    assert [p.teacher_size for p in every] == [(32, 32), (16, 16), (8, 8)]
    assert [(p.student, p.teacher) for p in middle] == [(every[1].student, every[1].teacher)]


def test_adapters_are_not_part_of_the_student_and_survive_keras_files(tmp_path):
    distiller = hint_distiller(
        None, features=[AttentionTransfer(beta=10.0), FeatureHint(pairs="all", beta=5.0)]
    )
    params = distiller.student.count_params()
    logs = fit_once(distiller)
    assert {"attention_loss", "hint_loss"} <= set(logs)
    assert distiller.student.count_params() == params
    assert len(distiller.hint_adapters) == 2
    distiller.save(tmp_path / "d.keras")
    distiller.student.save(tmp_path / "s.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    hint = loaded.features[1]
    assert (hint.pairs, hint.beta) == ("all", 5.0) and loaded.hint_pairs == distiller.hint_pairs
    for a, b in zip(loaded.hint_adapters, distiller.hint_adapters, strict=True):
        for u, v in zip(a.weights, b.weights, strict=True):
            np.testing.assert_array_equal(u.numpy(), v.numpy())
    student = keras.models.load_model(tmp_path / "s.keras")
    assert not any("hint" in w.path for w in student.weights)
    assert student.count_params() == params
    assert loaded.attention is loaded.features  # the older name


def test_bad_hint_arguments_are_named():
    student, teacher = cnn((2, 3), "s", 0), cnn((4, 6), "t", 1)
    with pytest.raises(ValueError, match="no adapter maps it"):
        Distiller(student, teacher, features=FeatureHint(pairs=[("pool", "c1")]))
    with pytest.raises(ValueError, match='pairs must be "auto", "all"'):
        FeatureHint(pairs="middle")
    with pytest.raises(ValueError, match="FeatureHint beta must be a number >= 0"):
        FeatureHint(beta=-1.0)
    with pytest.raises(ValueError, match="at most one of each"):
        Distiller(student, teacher, features=[FeatureHint(), FeatureHint()])
    with pytest.raises(ValueError, match="not both"):
        Distiller(student, teacher, features=FeatureHint(), attention=AttentionTransfer())
    distiller = hint_distiller(FeatureHint())
    cached = cache_teacher_outputs(
        tf.data.Dataset.from_tensor_slices((X, Y)).batch(3), distiller.teacher
    )
    with pytest.raises(ValueError, match="attention transfer and hints need its features"):
        distiller.fit(cached, epochs=1, verbose=0)
