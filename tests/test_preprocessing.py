"""`models.with_preprocessing`: a flat model over the original layers that takes raw pixels, keeps
stage taps, BatchNorm folding, the `.keras` format and channel pruning working, and exports to a
`.tflite` (float32 and int8) that takes raw pixels and agrees with Keras."""

import keras
import numpy as np
import pytest

from tfdistill import compress, models
from tfdistill.export import evaluate_tflite, to_tflite
from tfdistill.folding import folded_forward, folded_pairs
from tfdistill.profile import profile

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

RAW = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1)).astype("float32")


def with_statistics(model: keras.Model, x: np.ndarray) -> keras.Model:
    """`model` with every BatchNorm's moving statistics and affine terms set from batch `x`, as
    training would leave them (the initial ones make logits all but equal)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    rng = np.random.default_rng(1)
    for layer in norms:
        layer.momentum = 0.0
        layer.gamma.assign(rng.random(layer.gamma.shape) + 0.5)
        layer.beta.assign(rng.normal(size=layer.beta.shape) * 0.1)
    model(x, training=True)
    for layer in norms:
        layer.momentum = 0.9
    return model


@pytest.fixture(scope="module")
def wrapped():
    """(original convnet on [0, 1] images, the same behind Rescaling(1/255))."""
    keras.utils.set_random_seed(0)
    model = models.get("convnet", widths=(4, 8), input_shape=(8, 8, 1), num_classes=3)
    with_statistics(model, RAW / 255.0)
    return model, models.with_preprocessing(model, 1 / 255)


def test_raw_pixels_give_what_the_original_gives_on_scaled_pixels(wrapped):
    model, raw = wrapped
    np.testing.assert_allclose(raw(RAW), model(RAW / 255.0), rtol=1e-6, atol=1e-6)
    assert raw.name == model.name and raw is not model
    (before,), (after,) = model.inputs, raw.inputs
    assert (after.shape, after.dtype, after.name) == (before.shape, before.dtype, before.name)
    assert [layer.name for layer in raw.layers] == [
        "images",
        "preprocess",
        *[layer.name for layer in model.layers[1:]],
    ]
    rescaling = raw.get_layer("preprocess")
    assert isinstance(rescaling, keras.layers.Rescaling)
    assert rescaling.get_config()["scale"] == pytest.approx(1 / 255)
    assert raw.get_layer("s0b0_conv") is not model.get_layer("s0b0_conv")
    assert models.stage_outputs(raw) == models.stage_outputs(model) == ["stage1_out", "stage2_out"]
    assert not any(isinstance(layer, keras.Model) for layer in raw.layers)

    centered = models.with_preprocessing(model, 2 / 255, offset=-1.0)
    np.testing.assert_allclose(centered(RAW), model(RAW * (2 / 255) - 1.0), rtol=1e-6, atol=1e-6)


def test_keras_round_trip_and_folding(wrapped, tmp_path):
    model, raw = wrapped
    raw.save(tmp_path / "raw.keras")
    loaded = keras.models.load_model(tmp_path / "raw.keras")
    np.testing.assert_array_equal(loaded(RAW, training=False), raw(RAW, training=False))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in raw.layers]
    assert models.stage_outputs(loaded) == models.stage_outputs(raw)

    assert profile(raw).macs == profile(model).macs  # each layer counted once
    pairs = [("s0b0_conv", "s0b0_bn"), ("s1b0_conv", "s1b0_bn")]
    assert folded_pairs(raw) == folded_pairs(model) == pairs
    np.testing.assert_allclose(
        folded_forward(raw)(RAW), raw(RAW, training=False), rtol=1e-5, atol=1e-5
    )


def test_tflite_takes_raw_pixels_in_float_and_int8(wrapped, tmp_path):
    _, raw = wrapped
    plain = to_tflite(raw, tmp_path / "raw.tflite")
    checked = evaluate_tflite(plain, RAW, reference=raw)
    assert checked.agreement == 1.0 and checked.max_abs_error < 1e-5, checked
    int8 = to_tflite(raw, tmp_path / "int8.tflite", quantization="int8", representative_data=RAW)
    checked = evaluate_tflite(int8, RAW, reference=raw)
    assert checked.agreement >= 0.9 and checked.max_rel_error < 0.1, checked


def test_a_resnet_with_a_projection_shortcut_and_channel_pruning():
    keras.utils.set_random_seed(2)
    model = models.get("resnet", depth=8, input_shape=(8, 8, 3), num_classes=4, shortcut="B")
    x = np.random.default_rng(3).integers(0, 256, (4, 8, 8, 3)).astype("float32")
    with_statistics(model, x / 127.5 - 1.0)
    raw = models.with_preprocessing(model, 1 / 127.5, offset=-1.0)
    np.testing.assert_allclose(raw(x), model(x / 127.5 - 1.0), rtol=1e-5, atol=1e-5)
    assert models.stage_outputs(raw) == models.stage_outputs(model)
    assert folded_pairs(raw) == folded_pairs(model) != []
    np.testing.assert_allclose(folded_forward(raw)(x), raw(x, training=False), atol=1e-4)
    slim = compress.prune_channels(raw, 0.5)
    assert [layer.name for layer in slim.layers] == [layer.name for layer in raw.layers]
    assert slim.count_params() < raw.count_params() and slim(x).shape == (4, 4)


def test_refusals(wrapped):
    model, raw = wrapped

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional or Sequential.*Subclassed"):
        models.with_preprocessing(Subclassed(), 1 / 255)
    with pytest.raises(ValueError, match="already has a layer named 'preprocess'"):
        models.with_preprocessing(raw, 1 / 255)
    a, b = keras.Input((2,)), keras.Input((2,))
    two = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match="one input.*has 2"):
        models.with_preprocessing(two, 1 / 255)
