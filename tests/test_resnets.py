"""ResNet, Wide ResNet and ResNeXt: sizes against the papers, stage taps, saving, TFLite;
ResNeXt's split lowering of its grouped convolutions."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
from test_shufflenet import check_split_pair, run_tflite, split_pair, tflite_ops

from tfdistill.export import to_tflite
from tfdistill.models import resnet, resnext, wide_resnet  # noqa: F401  (registers the families)
from tfdistill.models.layers import SplitGroupedConv2D, SubsampleZeroPad
from tfdistill.models.registry import get, names, stage_outputs
from tfdistill.profile import profile

IMAGENET = {"input_shape": (224, 224, 3), "num_classes": 1000}
SMALL = [
    ("resnet", {"depth": 8}),
    ("wide_resnet", {"depth": 10, "width": 1}),
    ("resnext", {"depth": 29, "cardinality": 2, "bottleneck_width": 4}),
]


def trainable(model: keras.Model) -> int:
    """Parameters as the papers count them: without BatchNorm's moving statistics."""
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


@functools.cache
def build(family: str, **kwargs) -> keras.Model:
    return get(family, **kwargs)


def test_registered():
    assert {"resnet", "wide_resnet", "resnext"} <= set(names())


@pytest.mark.parametrize(
    "depth, millions, digits", [(20, 0.27, 2), (32, 0.46, 2), (56, 0.85, 2), (110, 1.7, 1)]
)
def test_resnet_cifar_params_match_table_6(depth, millions, digits):
    assert round(trainable(build("resnet", depth=depth)) / 1e6, digits) == millions


def test_resnet_shortcut_b_adds_the_two_projections():
    a, b = build("resnet", depth=20), build("resnet", depth=20, shortcut="B")
    assert trainable(b) - trainable(a) == 16 * 32 + 32 * 64 + 2 * (32 + 64)
    assert "s2b1_shortcut_conv" in {layer.name for layer in b.layers}
    assert isinstance(a.get_layer("s2b1_shortcut"), SubsampleZeroPad)


def test_option_a_shortcut_subsamples_and_pads_zeros():
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(SubsampleZeroPad(8, 2)(x))
    assert y.shape == (2, 3, 3, 8)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2])
    assert not y[..., 3:].any()


@pytest.mark.parametrize(
    "depth, millions, gmacs", [(18, 11.7, 1.8), (34, 21.8, 3.6), (50, 25.6, 4.1)]
)
def test_resnet_imagenet_params_and_macs(depth, millions, gmacs):
    model = build("resnet", depth=depth, **IMAGENET)
    assert round(trainable(model) / 1e6, 1) == millions
    assert profile(model).macs / 1e9 == pytest.approx(gmacs, rel=0.03)


def test_resnet50_matches_keras_applications_but_for_conv_biases():
    ours = build("resnet", depth=50, stride_in_1x1=True, **IMAGENET)
    theirs = keras.applications.ResNet50(weights=None)
    assert theirs.count_params() == 25_636_712

    def kernels(model):
        return sorted(
            tuple(layer.kernel.shape) for layer in model.layers if hasattr(layer, "kernel")
        )

    assert kernels(ours) == kernels(theirs)
    conv_biases = sum(
        layer.filters for layer in ours.layers if isinstance(layer, keras.layers.Conv2D)
    )
    assert conv_biases == 26_560
    assert ours.count_params() + conv_biases == theirs.count_params()
    assert profile(ours).macs == profile(theirs).macs
    assert profile(ours).macs / 1e9 == pytest.approx(3.86, abs=0.01)
    assert profile(build("resnet", depth=50, **IMAGENET)).macs / 1e9 == pytest.approx(
        4.09, abs=0.01
    )


@pytest.mark.parametrize(
    "depth, width, millions",
    [(16, 1, 0.175), (16, 2, 0.69), (16, 8, 11.0), (40, 4, 8.9), (28, 10, 36.5)],
)
def test_wide_resnet_params(depth, width, millions):
    model = build("wide_resnet", depth=depth, width=width)
    assert model.name == f"wrn_{depth}_{width}"
    assert trainable(model) / 1e6 == pytest.approx(millions, rel=0.02)


def test_wide_resnet_dropout_sits_between_the_convs():
    model = get("wide_resnet", depth=10, width=1, dropout=0.3)
    dropout = model.get_layer("s1b1_dropout")
    assert dropout.rate == 0.3
    assert dropout.input is model.get_layer("s1b1_1_relu").output


@pytest.mark.parametrize(
    "kwargs, millions, gmacs",
    [
        ({"depth": 29}, 34.4, None),
        ({"depth": 50, **IMAGENET}, 25.0, 4.2),
        ({"depth": 101, **IMAGENET}, 44.2, 8.0),
    ],
)
def test_resnext_params_and_macs(kwargs, millions, gmacs):
    model = build("resnext", **kwargs)
    assert round(trainable(model) / 1e6, 1) == millions
    if gmacs:
        assert profile(model).macs / 1e9 == pytest.approx(gmacs, rel=0.03)


def test_resnext_widths():
    model = build("resnext", depth=50, **IMAGENET)
    assert model.name == "resnext50_32x4d"
    conv = model.get_layer("s4b1_2_conv")
    assert (conv.groups, conv.filters, conv.strides) == (32, 1024, (2, 2))
    assert model.get_layer("s4b3_3_conv").filters == 2048


@pytest.mark.parametrize(
    "family, kwargs, sides",
    [
        *[(family, kwargs, (32, 16, 8)) for family, kwargs in SMALL],
        ("resnet", {"depth": 18, **IMAGENET}, (56, 28, 14, 7)),
        ("resnext", {"depth": 50, **IMAGENET}, (56, 28, 14, 7)),
    ],
)
def test_stage_outputs_halve_resolution(family, kwargs, sides):
    model = build(family, **kwargs)
    taps = stage_outputs(model)
    assert taps == [f"stage{i}_out" for i in range(1, len(sides) + 1)]
    assert tuple(model.get_layer(tap).output.shape[1] for tap in taps) == sides


@pytest.mark.parametrize(
    "family, kwargs", [*SMALL, ("resnext", {**dict(SMALL)["resnext"], "grouped_conv": "split"})]
)
def test_keras_round_trip(family, kwargs, tmp_path):
    model = get(family, **kwargs)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    path = tmp_path / f"{family}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert stage_outputs(loaded) == stage_outputs(model)
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]


@pytest.mark.parametrize(
    "family, kwargs, match",
    [
        ("resnet", {"depth": 21}, r"6n\+2"),
        ("resnet", {"depth": 2}, r"6n\+2"),
        ("resnet", {"shortcut": "C"}, "shortcut"),
        ("resnet", {"stem": "tiny"}, "stem"),
        ("wide_resnet", {"depth": 15}, r"6n\+4 .*16, 22, 28, 40"),
        ("wide_resnet", {"depth": 4}, r"6n\+4"),
        ("wide_resnet", {"width": 0}, "width"),
        ("wide_resnet", {"dropout": 1.0}, "dropout"),
        ("resnext", {"depth": 38}, r"\[29, 50, 101\]"),
        ("resnext", {"cardinality": 0}, "cardinality"),
        ("resnext", {"bottleneck_width": 2.5}, "bottleneck_width"),
        ("resnext", {"grouped_conv": "fancy"}, r"grouped_conv='fancy' .*'native', 'split'"),
    ],
)
def test_invalid_arguments(family, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get(family, **kwargs)


RESNEXT_SPLIT = {"depth": 29, "cardinality": 4, "bottleneck_width": 2}


@functools.cache
def resnext_split_pair() -> tuple[keras.Model, keras.Model]:
    return split_pair(resnext.resnext, **RESNEXT_SPLIT)


def test_resnext_split_lowering_equals_native():
    native, split = resnext_split_pair()
    check_split_pair(native, split, grouped=9)
    conv = split.get_layer("s2b1_2_conv")
    assert isinstance(conv, SplitGroupedConv2D)
    assert (conv.groups, conv.filters, conv.strides) == (4, 16, (2, 2))


def test_resnext_split_lowering_converts_to_split_convs_and_concat(tmp_path):
    native, split = resnext_split_pair()
    x = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype("float32")
    native_path = to_tflite(native, tmp_path / "native.tflite")
    split_path = to_tflite(split, tmp_path / "split.tflite")
    native_ops, split_ops = tflite_ops(native_path), tflite_ops(split_path)
    assert "SPLIT" not in native_ops and "CONCATENATION" not in native_ops
    assert split_ops.count("SPLIT") == split_ops.count("CONCATENATION") == 9
    for elementwise in ("MUL", "ADD"):
        assert split_ops.count(elementwise) == native_ops.count(elementwise)
    assert split_ops.count("CONV_2D") == native_ops.count("CONV_2D") + 9 * 3
    np.testing.assert_allclose(run_tflite(split_path, x), run_tflite(native_path, x), atol=1e-4)
