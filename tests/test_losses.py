import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import softmax
from tfdistill.losses import HardTargetLoss, SoftTargetLoss
from tfdistill.outputs import as_logits

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

TEACHER = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], "float32")
STUDENT = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]], "float32")


def test_soft_target_loss_by_hand():
    t = 2.0
    pt, ps = softmax(TEACHER / t), softmax(STUDENT / t)
    per_example = t * t * (pt * np.log(pt / ps)).sum(-1)
    loss = SoftTargetLoss(temperature=t)
    np.testing.assert_allclose(loss.call(TEACHER, STUDENT), per_example, rtol=1e-5)
    assert float(loss(TEACHER, STUDENT)) == pytest.approx(per_example.mean(), rel=1e-5)


def test_hard_target_loss_by_hand():
    labels = np.array([0, -1])
    expected = [-np.log(softmax(STUDENT)[0, 0]), 0.0]
    np.testing.assert_allclose(HardTargetLoss().call(labels, STUDENT), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "loss",
    [
        SoftTargetLoss(5.0, base=keras.losses.CategoricalCrossentropy(from_logits=True)),
        SoftTargetLoss(temperature=1.5, base="categorical_crossentropy"),
        HardTargetLoss(base=keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
        HardTargetLoss(),
    ],
)
def test_losses_survive_serialization(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    if isinstance(loss, SoftTargetLoss):
        args = (TEACHER, STUDENT)
    else:
        args = (np.array([2, 1]), STUDENT)
    np.testing.assert_allclose(restored.call(*args), loss.call(*args), rtol=1e-6)


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# Logits around ±60: exp(60) overflows float16 (max 65504), and at T = 1 a class the student
# rules out gets probability e^-120, far below float32's range and Keras's 1e-7 clip.
CONFIDENT_TEACHER = np.array([[60.0, -60.0, 10.0, 0.0], [-55.0, 58.0, -60.0, 30.0]])
CONFIDENT_STUDENT = np.array([[-60.0, 60.0, 0.0, 12.0], [59.0, -58.0, 40.0, -61.0]])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("base", ["kl_divergence", "categorical_crossentropy"])
def test_soft_target_loss_of_16_bit_logits_is_float64_exact(dtype, temperature, base):
    teacher = tf.constant(CONFIDENT_TEACHER, dtype)
    student = tf.constant(CONFIDENT_STUDENT, dtype)
    t64 = teacher.numpy().astype("float64") / temperature
    s64 = student.numpy().astype("float64") / temperature
    log_pt, log_ps = np_log_softmax(t64), np_log_softmax(s64)
    cross = -(np.exp(log_pt) * log_ps).sum(-1)
    entropy = -(np.exp(log_pt) * log_pt).sum(-1)
    expected = temperature**2 * (cross if base == "categorical_crossentropy" else cross - entropy)
    values = SoftTargetLoss(temperature, base=base).call(teacher, student)
    assert values.dtype == tf.float32
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values, expected, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_hard_target_loss_of_16_bit_logits_is_float64_exact(dtype):
    student = tf.constant(CONFIDENT_STUDENT, dtype)
    labels = np.array([0, 3])
    log_ps = np_log_softmax(student.numpy().astype("float64"))
    values = HardTargetLoss().call(labels, student)
    assert values.dtype == tf.float32
    np.testing.assert_allclose(values, -log_ps[[0, 1], labels], rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_probabilities_become_float32_log_probabilities(dtype):
    probabilities = tf.constant([[0.5, 0.25, 0.25, 0.0]], dtype)
    logits = as_logits(probabilities, "probabilities")
    assert logits.dtype == tf.float32
    np.testing.assert_allclose(logits, np.log([[0.5, 0.25, 0.25, 1e-7]]), rtol=1e-6)


def _log_softmax64(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_loss_share_by_hand_with_unlabeled_and_padding_rows():
    """Rows: labeled (weight 1), unlabeled (label -1, weight 0.5), labeled (weight 2), and a
    padding row (weight 0, not counted). Global batch: 3 real rows, 2 labeled."""
    from tfdistill.distiller import loss_share

    student = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, -1.0, 0.5], [9.0, 9.0, 9.0]])
    teacher = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    labels = np.array([2, -1, 0, 0])
    weights = np.array([1.0, 0.5, 2.0, 0.0])
    mask = np.array([1.0, 0.0, 1.0, 0.0])
    alpha, t = 0.3, 2.0

    log_s = _log_softmax64(student)
    ce = np.where(labels >= 0, -log_s[np.arange(4), np.maximum(labels, 0)], 0.0)
    log_pt, log_ps = _log_softmax64(teacher / t), _log_softmax64(student / t)
    kl = t * t * (np.exp(log_pt) * (log_pt - log_ps)).sum(-1)
    hard_sum = (weights * mask * ce).sum()
    soft_sum = (weights * kl).sum()
    expected = alpha * hard_sum / 2 + (1 - alpha) * soft_sum / 3

    f32 = lambda a: tf.constant(a, tf.float32)  # noqa: E731
    hard = HardTargetLoss().call(tf.constant(labels), f32(student))
    soft = SoftTargetLoss(temperature=t).call(f32(teacher), f32(student))
    terms = loss_share(hard, soft, f32(weights), f32(mask), tf.constant(3), alpha)
    assert float(terms.share) == pytest.approx(expected, rel=1e-5)
    assert float(terms.hard_sum) == pytest.approx(hard_sum, rel=1e-5)
    assert float(terms.soft_sum) == pytest.approx(soft_sum, rel=1e-5)
    np.testing.assert_array_equal(terms.local_counts, [3.0, 2.0])
    np.testing.assert_array_equal(terms.global_counts, [3.0, 2.0])

    no_teacher = loss_share(hard, None, f32(weights), f32(mask), tf.constant(3), alpha)
    assert float(no_teacher.share) == pytest.approx(hard_sum / 2, rel=1e-5)
    assert no_teacher.soft_sum is None


def test_loss_share_of_a_batch_without_labels_is_the_soft_term_alone():
    from tfdistill.distiller import loss_share

    ones = tf.ones([2])
    terms = loss_share(tf.zeros([2]), ones, ones, tf.zeros([2]), tf.constant(2), 0.5)
    assert float(terms.share) == pytest.approx(0.5 * 2 / 2)
