"""MobileNet v1/v2: parameter counts against keras.applications, Mult-Adds against the papers,
stage outputs, serialization, TFLite conversion and argument checks."""

from functools import cache

import keras
import numpy as np
import pytest

import tfdistill.models.mobilenet  # noqa: F401  (registers the families)
from tfdistill.models import get, names, stage_outputs
from tfdistill.profile import profile


@cache
def build(family: str, alpha: float = 1.0, size: int = 224) -> keras.Model:
    """A model shared by the tests that only inspect it."""
    return get(family, input_shape=(size, size, 3), alpha=alpha)


def test_registered():
    assert {"mobilenet_v1", "mobilenet_v2"} <= set(names())


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.25])
def test_v1_params_match_keras_applications(alpha):
    reference = keras.applications.MobileNet(
        weights=None, alpha=alpha, input_shape=(224, 224, 3)
    ).count_params()
    assert build("mobilenet_v1", alpha).count_params() == reference
    if alpha == 1.0:
        assert reference == 4_253_864


@pytest.mark.parametrize("alpha", [0.35, 0.5, 0.75, 1.0, 1.4])
def test_v2_params_match_keras_applications(alpha):
    reference = keras.applications.MobileNetV2(
        weights=None, alpha=alpha, input_shape=(224, 224, 3)
    ).count_params()
    assert build("mobilenet_v2", alpha).count_params() == reference


@pytest.mark.parametrize(
    "alpha, size, millions",
    [
        (1.0, 224, 569),
        (0.75, 224, 325),
        (0.5, 224, 149),
        (0.25, 224, 41),
        (1.0, 192, 418),
        (1.0, 160, 290),
        (1.0, 128, 186),
    ],
)
def test_v1_mult_adds_match_paper(alpha, size, millions):
    assert abs(round(profile(build("mobilenet_v1", alpha, size)).macs / 1e6) - millions) <= 1


@pytest.mark.parametrize("alpha, millions", [(1.0, 300), (1.4, 585), (0.35, 59)])
def test_v2_mult_adds_match_paper(alpha, millions):
    assert profile(build("mobilenet_v2", alpha)).macs / 1e6 == pytest.approx(millions, rel=0.02)


@pytest.mark.parametrize("family", ["mobilenet_v1", "mobilenet_v2"])
@pytest.mark.parametrize("alpha, size", [(1.0, 224), (0.25, 32)])
def test_stage_outputs_halve(family, alpha, size):
    model = build(family, alpha, size)
    stages = stage_outputs(model)
    assert stages == [f"stage{i}_out" for i in range(1, 6)]
    sides = [model.get_layer(s).output.shape[1] for s in stages]
    first = size // 2 if size > 64 else size
    assert sides == [first >> i for i in range(5)]
    assert model.get_layer("pool").input is model.get_layer(stages[-1]).output


@pytest.mark.parametrize(
    "family, size, stem, strides",
    [("mobilenet_v1", 64, "imagenet", 2), ("mobilenet_v2", 96, "cifar", 1)],
)
def test_stem_override(family, size, stem, strides):
    model = get(family, input_shape=(size, size, 3), alpha=0.25, num_classes=10, stem=stem)
    assert model.get_layer("stem_conv").strides == (strides, strides)
    assert model.get_layer("stage5_out").output.shape[1] == size // (16 * strides)
    assert model.output.shape == (None, 10)


def test_activations_and_residuals():
    v1, v2 = build("mobilenet_v1"), build("mobilenet_v2")
    relus = [layer for layer in v1.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(relus) == 27 and all(layer.max_value is None for layer in relus)
    relu6 = [layer for layer in v2.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(relu6) == 35 and all(layer.max_value == 6.0 for layer in relu6)
    assert sum(isinstance(layer, keras.layers.Add) for layer in v2.layers) == 10
    assert v2.get_layer("head_conv").filters == 1280
    assert build("mobilenet_v2", 0.35).get_layer("head_conv").filters == 1280
    assert build("mobilenet_v2", 1.4).get_layer("head_conv").filters == 1792


def test_v1_depth_multiplier():
    model = get("mobilenet_v1", input_shape=(32, 32, 3), alpha=0.25, depth_multiplier=2)
    assert model.get_layer("block1_dw").output.shape[-1] == 2 * 8
    assert model.get_layer("block13_dw").output.shape[-1] == 2 * 256


def _small(family: str) -> keras.Model:
    model = get(family, input_shape=(32, 32, 3), alpha=0.25, num_classes=10)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 1.5, var.shape),
                ]
            )
    return model


def test_keras_round_trip(tmp_path):
    family = "mobilenet_v1"
    model = _small(family)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    path = tmp_path / f"{family}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    assert stage_outputs(loaded) == stage_outputs(model)


@pytest.mark.parametrize(
    "family, kwargs, match",
    [
        ("mobilenet_v1", {"alpha": 0.0}, "alpha"),
        ("mobilenet_v2", {"alpha": -1.0}, "alpha"),
        ("mobilenet_v1", {"depth_multiplier": 0}, "depth_multiplier"),
        ("mobilenet_v1", {"depth_multiplier": 1.5}, "depth_multiplier"),
        ("mobilenet_v1", {"dropout": 1.0}, "dropout"),
        ("mobilenet_v2", {"dropout": -0.1}, "dropout"),
        ("mobilenet_v1", {"input_shape": (224, 16, 3), "stem": "imagenet"}, "input_shape"),
        ("mobilenet_v2", {"input_shape": (31, 31, 3), "stem": "imagenet"}, "input_shape"),
        ("mobilenet_v2", {"input_shape": (8, 8, 3)}, "input_shape"),
        ("mobilenet_v2", {"input_shape": (32, 32)}, "input_shape"),
        ("mobilenet_v1", {"stem": "tiny"}, "stem"),
        ("mobilenet_v2", {"num_classes": 0}, "num_classes"),
        ("mobilenet_v1", {"bn_momentum": 1.0}, "bn_momentum"),
    ],
)
def test_invalid_arguments(family, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get(family, **kwargs)


def _op_counts(path) -> dict[str, int]:
    from collections import Counter

    from tfdistill.export.interpreter import litert_interpreter

    interpreter = litert_interpreter(path, use_xnnpack=False)
    return dict(Counter(op["op_name"] for op in interpreter._get_ops_details()))


@pytest.mark.parametrize(
    "family, application, alpha",
    [("mobilenet_v1", "MobileNet", 0.25), ("mobilenet_v2", "MobileNetV2", 0.35)],
)
def test_tflite_graph_matches_keras_applications(tmp_path, family, application, alpha):
    """What LiteRT latency parity with keras.applications rests on (benchmarks/inference.py
    times it): the same MACs, and the same ops once BatchNorm is folded and activations fused.
    v1's files differ only in the classifier: a FULLY_CONNECTED here, keras.applications' 1×1
    CONV_2D + RESHAPE."""
    from tfdistill.export import to_tflite

    shape = (96, 96, 3)
    ours = get(family, input_shape=shape, alpha=alpha)
    twin = getattr(keras.applications, application)(
        weights=None, input_shape=shape, alpha=alpha, classifier_activation=None
    )
    assert profile(ours).macs == profile(twin).macs
    counts = _op_counts(to_tflite(ours, tmp_path / "ours.tflite"))
    twin_counts = _op_counts(to_tflite(twin, tmp_path / "twin.tflite"))
    if family == "mobilenet_v1":
        twin_counts["CONV_2D"] -= 1
        assert twin_counts.pop("RESHAPE") == 1
        twin_counts["FULLY_CONNECTED"] = 1
    assert counts == twin_counts
    assert counts["DEPTHWISE_CONV_2D"] == (13 if family == "mobilenet_v1" else 17)
