"""What every registered family must do: stage taps that halve, a BatchNorm momentum that suits
small data and can be changed, a .keras round trip, exact BatchNorm folding. The SMALL
configurations also convert to TFLite in every mode and agree with Keras in LiteRT
(tests/test_export.py)."""

import keras
import numpy as np
import pytest

from tfdistill import models
from tfdistill.folding import folded_forward, folded_pairs

SMALL = {
    "convnet": {"widths": (4, 8)},
    "mobilenet_v1": {"alpha": 0.25},
    "mobilenet_v2": {"alpha": 0.35},
    "shufflenet_v1": {"groups": 3, "scale": 0.25},
    "shufflenet_v2": {"scale": 0.5},
    "resnet": {"depth": 8},
    "wide_resnet": {"depth": 10, "width": 1},
    "resnext": {"depth": 29, "cardinality": 2, "bottleneck_width": 4},
    # the BatchNorm variant, so the momentum and folding checks apply: the reference has none
    # (tests/test_squeezenet.py)
    "squeezenet": {"version": "1.1", "batch_norm": True},
}


def small(family, **kwargs):
    return models.get(
        family, input_shape=(32, 32, 3), num_classes=10, **{**SMALL[family], **kwargs}
    )


def test_every_family_is_covered():
    assert sorted(SMALL) == models.names()


@pytest.mark.parametrize("family", sorted(SMALL))
def test_stage_taps_halve_and_momentum_is_an_argument(family):
    model = small(family)
    stages = models.stage_outputs(model)
    assert len(stages) >= 2
    sides = [model.get_layer(name).output.shape[1] for name in stages]
    assert all(a >= b for a, b in zip(sides, sides[1:], strict=False)) and sides[-1] < sides[0]
    momenta = {
        layer.momentum
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert momenta == {0.9}
    changed = small(family, bn_momentum=0.99)
    assert {
        layer.momentum
        for layer in changed.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    } == {0.99}


@pytest.mark.parametrize("family", sorted(SMALL))
def test_keras_round_trip(family, tmp_path):
    model = small(family)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    assert models.stage_outputs(loaded) == models.stage_outputs(model)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_folded_teacher_pass_matches_inference(family):
    """The Distiller runs teachers with BatchNorm folded: exact for every family."""
    model = small(family)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape) * 0.1)
            layer.moving_variance.assign(rng.random(layer.moving_variance.shape) + 0.5)
            layer.gamma.assign(rng.random(layer.gamma.shape) + 0.5)
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        folded_forward(model)(x), model(x, training=False), rtol=1e-4, atol=1e-4
    )
    assert folded_pairs(model)
