import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdistill import models
from tfdistill.folding import folded_forward, folded_pairs

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

RNG = np.random.default_rng(0)


def randomize_batchnorm(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(RNG.normal(size=shape))
            layer.moving_variance.assign(RNG.random(shape) + 0.5)
            if layer.scale:
                layer.gamma.assign(RNG.random(shape) + 0.5)
            if layer.center:
                layer.beta.assign(RNG.normal(size=shape))
    return model


def mixed_model():
    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(6, 3, padding="same", groups=2, name="grouped")(inputs)
    a = keras.layers.BatchNormalization(name="bn_grouped", center=False, scale=False)(a)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(inputs)
    b = keras.layers.BatchNormalization(name="bn_after_relu")(b)
    c = keras.layers.Conv2D(4, 1, name="shared_out")(inputs)
    c_bn = keras.layers.BatchNormalization(name="bn_shared")(c)
    x = keras.layers.Concatenate()([a, b, c_bn, c])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, name="dense")(x)
    outputs = keras.layers.BatchNormalization(name="bn_dense")(x)
    return keras.Model(inputs, outputs)


def test_convnet_folds_every_batchnorm_and_matches():
    model = randomize_batchnorm(models.get("convnet", widths=(8, 16), depth=2))
    assert len(folded_pairs(model)) == 4
    x = RNG.random((5, 32, 32, 1), dtype="float32")
    np.testing.assert_allclose(folded_forward(model)(x), model(x, training=False), atol=1e-5)


def test_only_safe_pairs_fold():
    model = randomize_batchnorm(mixed_model())
    assert sorted(folded_pairs(model)) == [("dense", "bn_dense"), ("grouped", "bn_grouped")]
    x = RNG.random((3, 8, 8, 4), dtype="float32")
    forward = tf.function(folded_forward(model))
    np.testing.assert_allclose(forward(x), model(x, training=False), atol=1e-5)


def test_folding_reads_live_weights():
    model = models.get("convnet", widths=(4,))
    forward = folded_forward(model)
    randomize_batchnorm(model)
    model.layers[1].kernel.assign(RNG.normal(size=model.layers[1].kernel.shape))
    x = RNG.random((2, 32, 32, 1), dtype="float32")
    np.testing.assert_allclose(forward(x), model(x, training=False), atol=1e-5)


def test_sequential_and_subclassed_models():
    sequential = randomize_batchnorm(
        keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(3), keras.layers.BatchNormalization()]
        )
    )
    assert len(folded_pairs(sequential)) == 1
    x = RNG.random((4, 6), dtype="float32")
    np.testing.assert_allclose(folded_forward(sequential)(x), sequential(x, training=False), 1e-5)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x, training=None):
            return self.dense(x)

    subclassed = Subclassed()
    assert folded_pairs(subclassed) == []
    np.testing.assert_allclose(folded_forward(subclassed)(x), subclassed(x), rtol=1e-6)


def test_dropout_is_off_in_the_folded_pass():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.9),
            keras.layers.Dense(3),
        ]
    )
    x = RNG.random((4, 6), dtype="float32")
    np.testing.assert_allclose(folded_forward(model)(x), model(x, training=False), atol=1e-5)
