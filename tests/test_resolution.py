"""Teacher and student at different resolutions: two-view batches, one view resized to the
teacher's size, attention transfer across sizes (float64 references), gradient attention
pulled back to the student's pixels, saving, the teacher-output cache and MirroredStrategy."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests.test_distribute import assert_replicas_fit_as_one
from tfdistill import AttentionTransfer, Distiller, GradientAttentionTransfer, resolution
from tfdistill.batches import INPUTS, TEACHER_INPUTS, TEACHER_LOGITS, split_views, two_views
from tfdistill.data import cache_teacher_outputs, teacher_logits
from tfdistill.losses import attention_transfer_per_example

RNG = np.random.default_rng(19)
X_S = RNG.random((6, 8, 8, 2)).astype("float32")
X_T = RNG.random((6, 16, 16, 2)).astype("float32")  # "the same images" at 16x16, by fiat
Y = RNG.integers(0, 3, 6)
T = 2.0


def cnn(widths, name, seed, size=8):
    """`helpers.cnn` on (size, size, 2) images."""
    return helpers.cnn(widths, name, seed, input_shape=(size, size, 2))


def distiller_of(teacher_size=16, student_size=8, attention=None, **kwargs):
    keras.utils.set_random_seed(0)
    student, teacher = cnn((2, 3), "s", 1, student_size), cnn((4, 6), "t", 2, teacher_size)
    distiller = Distiller(student, teacher, attention=attention, **kwargs)
    distiller.compile(keras.optimizers.SGD(0.1), alpha=0.3, temperature=T)
    return distiller


def soft_loss(t_logits, s_logits):
    """float64 mean over the batch of T² · KL(softmax(t/T) ‖ softmax(s/T))."""

    def log_softmax(z):
        z = np.asarray(z, "float64") / T
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    log_t, log_s = log_softmax(t_logits), log_softmax(s_logits)
    return float((T * T * (np.exp(log_t) * (log_t - log_s)).sum(-1)).mean())


# KL of float32 softmaxes near 1e-3: about 1e-5 relative is lost to cancellation.


def evaluated(distiller, x, y=Y):
    return distiller.evaluate(x, y, batch_size=len(Y), verbose=0, return_dict=True)


def test_split_views_reads_all_three_formats():
    assert split_views(X_S) == (X_S, None, None)
    views = split_views(two_views(X_S, X_T))
    assert views.student is X_S and views.teacher is X_T and views.teacher_logits is None
    with pytest.raises(ValueError, match="needs the student's images"):
        split_views({TEACHER_INPUTS: X_T})


def test_two_view_batches_give_the_teacher_its_own_view():
    distiller = distiller_of()
    logs = evaluated(distiller, two_views(X_S, X_T))
    own = soft_loss(distiller.teacher(X_T), distiller.student(X_S))
    resized = soft_loss(distiller.teacher(tf.image.resize(X_S, (16, 16))), distiller.student(X_S))
    assert logs["distillation_loss"] == pytest.approx(own, rel=1e-4)
    assert abs(own - resized) > 0.1 * own  # the resized small view would not do
    np.testing.assert_array_equal(
        distiller.predict(two_views(X_S, X_T), verbose=0), distiller.student.predict(X_S, verbose=0)
    )


def test_one_view_is_resized_to_the_teacher_size_with_a_warning_when_it_upsamples():
    distiller = distiller_of()
    assert distiller._teacher_size == (16, 16)
    with pytest.warns(UserWarning, match="8x8 batch is upsampled to the teacher's 16x16"):
        logs = evaluated(distiller, X_S)
    up = tf.image.resize(X_S, (16, 16), method="bilinear")
    expected = soft_loss(distiller.teacher(up), distiller.student(X_S))
    assert logs["distillation_loss"] == pytest.approx(expected, rel=1e-4)

    smaller = distiller_of(teacher_size=4)
    down = tf.image.resize(X_S, (4, 4), method="bilinear", antialias=True)
    expected = soft_loss(smaller.teacher(down), smaller.student(X_S))
    assert evaluated(smaller, X_S)["distillation_loss"] == pytest.approx(expected, rel=1e-4)


def test_teacher_input_size_is_checked_and_none_needs_two_views():
    assert distiller_of(teacher_size=8)._teacher_size is None
    assert distiller_of(teacher_input_size=(16, 16))._teacher_size == (16, 16)
    with pytest.raises(ValueError, match="takes 16x16 images"):
        distiller_of(teacher_input_size=(12, 12))
    with pytest.raises(ValueError, match='"auto", None or \\(H, W\\)'):
        distiller_of(teacher_input_size=(16, 0))
    fixed = distiller_of(teacher_input_size=None)
    with pytest.raises(ValueError, match="teacher_input_size=None; give two views"):
        evaluated(fixed, X_S)
    assert np.isfinite(evaluated(fixed, two_views(X_S, X_T))["loss"])
    student = cnn((2, 3), "s", 1)
    three = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    with pytest.raises(ValueError, match="not in channels or rank"):
        Distiller(student, three)


def np_block_mean(maps, k):
    b, h, w = maps.shape
    return maps.reshape(b, h // k, k, w // k, k).mean(axis=(2, 4))


def np_at_teacher_to_student(student, teacher, k, p=2.0):
    """float64: the teacher's mean_c |A|^p block-averaged to the student's grid, both
    L2-normalised, mean over positions of the squared difference."""

    def normalised(q):
        q = q.reshape(len(q), -1)
        return q / np.linalg.norm(q, axis=-1, keepdims=True)

    q_s = (np.abs(student.astype("float64")) ** p).mean(-1)
    q_t = np_block_mean((np.abs(teacher.astype("float64")) ** p).mean(-1), k)
    return ((normalised(q_s) - normalised(q_t)) ** 2).mean(-1)


@pytest.mark.parametrize("p", [2.0, 3.0])
def test_teacher_maps_twice_the_student_size_match_a_float64_reference(p):
    student = RNG.normal(size=(3, 4, 4, 5)).astype("float32")
    teacher = RNG.normal(size=(3, 8, 8, 7)).astype("float32")
    got = attention_transfer_per_example(student, teacher, p, teacher_to_student=True)
    np.testing.assert_allclose(got, np_at_teacher_to_student(student, teacher, 2, p), rtol=1e-5)
    odd = attention_transfer_per_example(student, teacher[:, :6, :6], p, teacher_to_student=True)
    assert odd.shape == (3,) and np.all(np.isfinite(odd))


def test_same_size_attention_is_unchanged_bit_for_bit():
    student = RNG.normal(size=(3, 4, 4, 5)).astype("float32")
    teacher = RNG.normal(size=(3, 4, 4, 7)).astype("float32")
    plain = attention_transfer_per_example(student, teacher)
    flagged = attention_transfer_per_example(student, teacher, teacher_to_student=True)
    np.testing.assert_array_equal(plain, flagged)


def test_distiller_pairs_stages_by_stride_and_resamples_the_teacher_maps():
    distiller = distiller_of(attention=AttentionTransfer(beta=100.0))
    pairs = [(p.student, p.teacher, p.student_size, p.teacher_size) for p in distiller.pairs]
    assert pairs == [("c1", "c1", (8, 8), (16, 16)), ("c2", "c2", (4, 4), (8, 8))]
    assert all(p.teacher_to_student for p in distiller.pairs)
    taps = {
        role: keras.Model(m.input, [m.get_layer(n).output for n in ("c1", "c2")])
        for role, m in (("s", distiller.student), ("t", distiller.teacher))
    }
    s_feats, t_feats = taps["s"](X_S), taps["t"](X_T)
    expected = sum(
        np_at_teacher_to_student(np.asarray(s), np.asarray(t), 2).mean()
        for s, t in zip(s_feats, t_feats, strict=True)
    )
    logs = evaluated(distiller, two_views(X_S, X_T))
    assert logs["attention_loss"] == pytest.approx(expected, rel=1e-4)


def test_gradient_attention_pulls_the_teacher_gradient_back_to_the_student_pixels():
    """A teacher view that is the resized student view gives the one-view loss: the pull-back
    through the resize is the gradient through it."""
    x_t = tf.image.resize(X_S, (16, 16), method="bilinear").numpy()
    with pytest.warns(UserWarning, match="upsampled"):
        one = evaluated(distiller_of(attention=GradientAttentionTransfer(beta=1.0)), X_S)
    two = evaluated(
        distiller_of(attention=GradientAttentionTransfer(beta=1.0)), two_views(X_S, x_t)
    )
    assert two["gradient_attention_loss"] == pytest.approx(one["gradient_attention_loss"], 1e-5)
    assert one["gradient_attention_loss"] > 0
    grad = np.ones((2, 8, 8, 3), "float32")
    pulled = resolution.pull_back(grad, np.zeros((2, 4, 4, 3), "float32"))
    np.testing.assert_allclose(pulled, 4.0 * np.ones((2, 4, 4, 3)), rtol=1e-6)  # k² = 4


def test_get_config_and_keras_file_round_trip(tmp_path):
    distiller = distiller_of(teacher_input_size=(16, 16), attention=AttentionTransfer(beta=10.0))
    assert distiller.get_config()["teacher_input_size"] == [16, 16]
    assert distiller_of().get_config()["teacher_input_size"] == "auto"
    assert distiller_of(teacher_input_size=None).get_config()["teacher_input_size"] is None
    distiller.fit(two_views(X_S, X_T), Y, batch_size=3, epochs=1, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.teacher_input_size == (16, 16) and loaded.pairs == distiller.pairs
    for x in (two_views(X_S, X_T), X_S):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the one-view batch is upsampled
            got, want = evaluated(loaded, x), evaluated(distiller, x)
        assert got == pytest.approx(want, rel=1e-5)


def test_cached_logits_from_the_teacher_view_equal_the_online_ones():
    distiller = distiller_of()
    online = distiller.teacher_logits(X_T).numpy()
    cached = cache_teacher_outputs((X_S, Y), distiller.teacher, teacher_x=X_T, batch_size=4)
    (inputs, _), *_ = list(cached.unbatch().batch(6))
    np.testing.assert_allclose(inputs[TEACHER_LOGITS], online, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(inputs[INPUTS], X_S)
    dataset = tf.data.Dataset.from_tensor_slices((two_views(X_S, X_T), Y)).batch(4)
    (from_dataset, _), *_ = list(
        cache_teacher_outputs(dataset, distiller.teacher).unbatch().batch(6)
    )
    np.testing.assert_allclose(from_dataset[TEACHER_LOGITS], online, rtol=1e-6, atol=1e-6)
    up = teacher_logits(X_S, distiller.teacher)  # one view, resized like the Distiller's
    with pytest.warns(UserWarning, match="upsampled"):
        cached_loss = evaluated(distiller, X_S)["distillation_loss"]
    assert soft_loss(up, distiller.student(X_S)) == pytest.approx(cached_loss, rel=1e-4)
    online_loss = evaluated(distiller, two_views(X_S, X_T))["distillation_loss"]
    cached_eval = distiller.evaluate(cached, verbose=0, return_dict=True)["distillation_loss"]
    assert cached_eval == pytest.approx(online_loss, rel=1e-4)


def test_mirrored_strategy_with_two_views_matches_one_device(mirrored):
    """Batches of 5, 5 and 1 two-view examples, split 3 + 2 and 1 + 0 over two replicas: the
    teacher's view is padded with the student's on the empty replica."""
    x_s = RNG.random((11, 8, 8, 2)).astype("float32")
    x_t = RNG.random((11, 16, 16, 2)).astype("float32")
    y = RNG.integers(0, 3, 11)
    y[:2] = -1
    data = tf.data.Dataset.from_tensor_slices((two_views(x_s, x_t), y)).batch(5)
    attention = [AttentionTransfer(beta=50.0), GradientAttentionTransfer(beta=0.5)]

    def fitted():
        distiller = distiller_of(attention=attention)
        history = distiller.fit(data, epochs=2, verbose=0, shuffle=False).history
        return history, distiller.student.get_weights()

    assert_replicas_fit_as_one(fitted, mirrored, steps=2 * 3, lr=0.1)


def test_the_resizes_compile_with_xla_and_match_tensorflow_resize():
    """XLA has no area or antialiased resize kernels: the resizes are matrices."""
    for size in ((16, 16), (4, 4), (12, 6)):
        shrinks = size[0] < 8 or size[1] < 8
        want = tf.image.resize(X_S, size, antialias=shrinks)
        np.testing.assert_allclose(resolution.resize_images(X_S, size), want, atol=1e-6)
    maps = tf.constant(X_T[..., 0])
    area = tf.image.resize(maps[..., None], (6, 6), method="area")[..., 0]
    np.testing.assert_allclose(resolution.resample_attention(maps, (6, 6)), area, atol=1e-6)
    attention = [AttentionTransfer(beta=50.0), GradientAttentionTransfer(beta=0.5)]
    fits = []
    for jit_compile in (True, False):
        distiller = distiller_of(teacher_size=12, attention=attention)
        distiller.compile(keras.optimizers.SGD(0.1), alpha=0.3, jit_compile=jit_compile)
        x = two_views(X_S, X_T[:, :12, :12])
        fits.append(distiller.fit(x, Y, batch_size=3, epochs=1, verbose=0).history)
    for key, values in fits[1].items():
        np.testing.assert_allclose(fits[0][key], values, rtol=1e-5, err_msg=key)


def test_images_of_unknown_size_are_resized_and_pulled_back_like_fixed_ones():
    dynamic = tf.TensorSpec((None, None, None, 2), tf.float32)
    resize = tf.function(lambda x: resolution.resize_images(x, (16, 16)), input_signature=[dynamic])
    np.testing.assert_allclose(resize(X_S), resolution.resize_images(X_S, (16, 16)), atol=1e-6)
    grad = tf.constant(X_T)
    pull = tf.function(lambda x: resolution.pull_back(grad, x), input_signature=[dynamic])
    np.testing.assert_allclose(pull(X_S), resolution.pull_back(grad, X_S), atol=1e-5)
