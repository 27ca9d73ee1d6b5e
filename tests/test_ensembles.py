"""Teacher ensembles: the combined soft targets against a float64 reference, the Distiller's
loss, `teacher_logits`, the cache, `.keras` round trips and the errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import cnn, linear, softmax
from tfdistill import DecoupledKD, Distiller, FeatureHint
from tfdistill.data import cache_teacher_outputs
from tfdistill.losses import ensemble_logits

pytestmark = pytest.mark.smoke

RNG = np.random.default_rng(7)
D, C = 5, 4
X = RNG.normal(size=(8, D)).astype("float32")
Y = np.array([0, 1, 2, 3, 0, 1, -1, -1])
W = [RNG.normal(size=(D, C)).astype("float32") for _ in range(3)]
B = [RNG.normal(size=(C,)).astype("float32") for _ in range(3)]


def np_mean_probs(logits, weights, temperature):
    """(B, K, C) float64 -> (B, C) Σ_k w_k softmax(t_k / T)."""
    weights = np.asarray(weights, "float64") / np.sum(weights)
    return np.einsum("k,bkc->bc", weights, softmax(logits.astype("float64") / temperature))


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_ensemble_logits_give_the_weighted_mean_of_the_teachers_probabilities(temperature):
    members = RNG.normal(scale=3.0, size=(6, 3, C)).astype("float32")
    weights = np.array([0.5, 0.3, 0.2])
    z = ensemble_logits(members, weights, temperature).numpy()
    expected = np_mean_probs(members, weights, temperature)
    np.testing.assert_allclose(softmax(z / temperature), expected, rtol=1e-5)
    if temperature == 1.0:
        np.testing.assert_allclose(z, np.log(expected), rtol=1e-5, atol=1e-5)
    one = ensemble_logits(members[:, :1], [1.0], temperature).numpy()
    np.testing.assert_allclose(
        softmax(one / temperature), softmax(members[:, 0] / temperature), rtol=1e-5, atol=1e-7
    )


def ensemble(weights=None, alpha=0.4, temperature=3.0, loss=None):
    student = linear(W[0] * 0.1, B[0] * 0.0, "student")
    teachers = [linear(W[i], B[i], f"teacher{i}") for i in (1, 2)]
    distiller = Distiller(student, teachers, ensemble_weights=weights)
    distiller.compile(
        keras.optimizers.SGD(0.1),
        alpha=alpha,
        temperature=temperature,
        distillation_loss_fn=loss,
        jit_compile=False,
    )
    return distiller


def first_logs(distiller, data=None):
    data = data if data is not None else tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    history = distiller.fit(data, epochs=1, verbose=0, shuffle=False)
    return {k: v[0] for k, v in history.history.items()}


def test_the_soft_term_distils_the_weighted_mean_of_the_teachers():
    weights, temperature = [3.0, 1.0], 3.0
    distiller = ensemble(weights, temperature=temperature)
    members = np.stack([X @ W[i] + B[i] for i in (1, 2)], axis=1)
    target = np_mean_probs(members, weights, temperature)
    student = X.astype("float64") @ (W[0] * 0.1)
    log_s = np.log(softmax(student / temperature))
    kl = (target * (np.log(target) - log_s)).sum(-1)
    logs = first_logs(distiller)
    assert logs["distillation_loss"] == pytest.approx(temperature**2 * kl.mean(), rel=1e-5)
    teacher = distiller.teacher_logits(X).numpy()
    np.testing.assert_allclose(teacher, np.log(np_mean_probs(members, weights, 1.0)), rtol=1e-5)
    assert distiller.ensemble_weights == (0.75, 0.25)


def test_cached_ensemble_batches_train_as_the_online_teachers_do():
    online, cached = ensemble(), ensemble()
    stored = cache_teacher_outputs((X, Y), list(cached.teachers), batch_size=8)
    (element, _) = next(iter(stored))
    assert element["teacher_logits"].shape == (8, 2, C)
    online_logs, cached_logs = first_logs(online), first_logs(cached, stored)
    for key, value in online_logs.items():
        assert cached_logs[key] == pytest.approx(value, rel=1e-5), key
    np.testing.assert_allclose(
        online.student.get_weights()[0], cached.student.get_weights()[0], rtol=1e-5
    )
    single = Distiller(linear(W[0], B[0], "s"), linear(W[1], B[1], "t"))
    single.compile(jit_compile=False)
    with pytest.raises(ValueError, match=r"\(several teachers\) but this Distiller has one"):
        single.fit(stored, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="needs cached logits"):
        one = cache_teacher_outputs((X, Y), cached.teacher, batch_size=8)
        cached.fit(one, epochs=1, verbose=0)


def test_methods_see_the_ensemble_at_their_own_temperature():
    dkd = DecoupledKD(temperature=2.0)
    distiller = ensemble(loss=dkd)
    members = tf.constant(np.stack([X @ W[i] + B[i] for i in (1, 2)], axis=1))
    z = ensemble_logits(members, (0.5, 0.5), 2.0)
    student = tf.constant(X @ (W[0] * 0.1))
    expected = dkd.compute(Y, z, student)
    assert first_logs(distiller)["distillation_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_an_ensemble_round_trips_in_a_keras_file(tmp_path):
    distiller = ensemble([1.0, 2.0])
    first_logs(distiller)
    distiller.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    assert len(loaded.teachers) == 2 and loaded.ensemble_weights == distiller.ensemble_weights
    np.testing.assert_allclose(loaded.teacher_logits(X), distiller.teacher_logits(X), rtol=1e-6)


def test_hints_come_from_the_first_teacher():
    teachers = [cnn((4, 6), "t0", 1), cnn((5, 7), "t1", 2)]
    distiller = Distiller(cnn((2, 3), "s", 0), teachers, features=FeatureHint(pairs="all"))
    assert [a.channels for a in distiller.hint_adapters] == [4, 6]


def test_bad_ensembles_are_named():
    student = linear(W[0], B[0], "s")
    other = linear(RNG.normal(size=(D, C + 1)).astype("float32"), np.zeros(C + 1), "t5")
    with pytest.raises(ValueError, match="predict different numbers of classes"):
        Distiller(student, [linear(W[1], B[1], "t"), other])
    with pytest.raises(ValueError, match="ensemble_weights must be None or 2 numbers"):
        Distiller(student, [linear(W[1], B[1], "t"), linear(W[2], B[2], "u")], ensemble_weights=[1])
    with pytest.raises(ValueError, match="ensemble is empty"):
        Distiller(student, [])
    with pytest.raises(ValueError, match="different sizes"):
        Distiller(
            cnn((2, 3), "s", 0),
            [cnn((4, 6), "t0", 1), cnn((4, 6), "t1", 1, input_shape=(16, 16, 2))],
        )


def test_an_ensemble_model_is_one_teacher_and_comes_apart_again(tmp_path):
    from tfdistill.ensemble import members_of, teacher_ensemble

    teachers = [cnn((4, 6), "t0", 1), cnn((5, 7), "t1", 2)]
    model = teacher_ensemble(teachers, [1.0, 3.0])
    x = np.random.default_rng(0).random((5, 8, 8, 2)).astype("float32")
    members = np.stack([np.asarray(t(x)) for t in teachers], axis=1)
    expected = np.log(np_mean_probs(members, [1.0, 3.0], 1.0))
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "e.keras")
    loaded = keras.models.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-5, atol=1e-6)
    found, weights = members_of(loaded)
    assert [t.name for t in found] == ["t0", "t1"] and weights == (0.25, 0.75)
    assert members_of(teachers[0]) is None
    distiller = Distiller(cnn((2, 3), "s", 0), loaded)
    assert len(distiller.teachers) == 2 and distiller.ensemble_weights == (0.25, 0.75)
    np.testing.assert_allclose(distiller.teacher_logits(x), expected, rtol=1e-5, atol=1e-6)
    cached = cache_teacher_outputs((x, np.zeros(5, "int64")), loaded, batch_size=5)
    np.testing.assert_allclose(next(iter(cached))[0]["teacher_logits"], members, rtol=1e-5)
    with pytest.raises(ValueError, match="at least two teachers"):
        teacher_ensemble(teachers[:1])


def test_the_tf_keras_fine_tuner_combines_an_ensemble_as_the_distiller_does():
    tf_keras = pytest.importorskip("tf_keras")
    from tfdistill import compress
    from tfdistill.compress import tuner
    from tfdistill.ensemble import teacher_ensemble

    teachers = [cnn((4, 6), "t0", 1), cnn((5, 7), "t1", 2)]
    student = cnn((2, 3), "s", 0)
    x = np.random.default_rng(1).random((6, 8, 8, 2)).astype("float32")
    y = np.array([0, 1, 2, 0, -1, -1])
    distiller = Distiller(student, teachers)
    distiller.compile(keras.optimizers.SGD(0.0), alpha=0.3, temperature=4.0, jit_compile=False)
    reference = distiller.fit(x, y, batch_size=6, verbose=0).history["loss"][0]
    twin = compress.to_tf_keras(student)
    online = tuner.FineTuner(twin, teacher_ensemble(teachers), alpha=0.3, temperature=4.0)
    online.compile(optimizer=tf_keras.optimizers.SGD(0.0))
    assert online.train_on_batch(x, y, return_dict=True)["loss"] == pytest.approx(reference, 1e-4)
    members = np.stack([np.asarray(t(x)) for t in teachers], axis=1)
    cached = tuner.FineTuner(twin, None, alpha=0.3, temperature=4.0)
    cached.compile(optimizer=tf_keras.optimizers.SGD(0.0))
    batch = {"inputs": x, "teacher_logits": members}
    logged = cached.train_on_batch(batch, y, return_dict=True)
    assert logged["loss"] == pytest.approx(reference, rel=1e-4)
