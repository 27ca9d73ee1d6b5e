import keras
import numpy as np
import pytest

from tests.helpers import softmax
from tfdistill.losses import HardTargetLoss, SoftTargetLoss

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
