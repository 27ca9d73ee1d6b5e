"""ShuffleNet v1/v2: widths and complexity against the papers, the shuffle and split layers,
serialization and TFLite conversion; v1's split lowering of its grouped convolutions."""

from functools import cache

import keras
import numpy as np
import pytest

import tfdistill.models.shufflenet as shufflenet
from tfdistill.export import to_tflite
from tfdistill.export.interpreter import litert_interpreter
from tfdistill.models.layers import ChannelShuffle, ChannelSplit, SplitGroupedConv2D
from tfdistill.models.registry import get, names, stage_outputs
from tfdistill.profile import profile


def macs(model: keras.Model) -> int:
    """Mult-adds as the papers count them: convolutions, depthwise convolutions, classifier."""
    return profile(model).macs


def trainable_params(model: keras.Model) -> int:
    return profile(model).trainable_params


@cache
def v1(groups: int, scale: float) -> keras.Model:
    return shufflenet.shufflenet_v1(groups=groups, scale=scale)


@cache
def v2(scale: float) -> keras.Model:
    return shufflenet.shufflenet_v2(scale=scale)


def stage_channels(model: keras.Model) -> list[int]:
    return [model.get_layer(name).output.shape[-1] for name in stage_outputs(model)]


def stage_sizes(model: keras.Model) -> list[int]:
    return [model.get_layer(name).output.shape[1] for name in stage_outputs(model)]


# Zhang et al. 2018, Table 1: stage 2-4 widths and complexity of ShuffleNet 1×; parameters (not
# in the paper) from the authors' reference code.
@pytest.mark.parametrize(
    "groups, widths, mmacs, mparams",
    [
        (1, [144, 288, 576], 143, None),
        (2, [200, 400, 800], 140, None),
        (3, [240, 480, 960], 137, 1.9),
        (4, [272, 544, 1088], 133, None),
        (8, [384, 768, 1536], 137, 2.4),
    ],
)
def test_v1_table1(groups, widths, mmacs, mparams):
    model = v1(groups, 1.0)
    assert stage_channels(model) == widths
    assert stage_sizes(model) == [28, 14, 7]
    assert macs(model) / 1e6 == pytest.approx(mmacs, rel=0.03)
    if mparams is not None:
        assert trainable_params(model) / 1e6 == pytest.approx(mparams, rel=0.03)


# Table 2 (0.5×, 0.25×: 38M, 13M for every g) and Table 5 (1.5×: 292M, 2×: 524M, g = 3);
# parameters from the authors' reference code.
@pytest.mark.parametrize(
    "groups, scale, mmacs, rel, mparams",
    [
        (3, 0.25, 13, 0.10, None),
        (1, 0.25, 13, 0.10, None),
        (3, 0.5, 38, 0.10, 0.7),
        (8, 0.5, 38, 0.10, 1.0),
        (3, 1.5, 292, 0.03, 3.4),
        (3, 2.0, 524, 0.03, 5.4),
    ],
)
def test_v1_scaled(groups, scale, mmacs, rel, mparams):
    model = v1(groups, scale)
    assert stage_channels(model) == [int(c * scale) for c in shufflenet.V1_CHANNELS[groups]]
    assert macs(model) / 1e6 == pytest.approx(mmacs, rel=rel)
    if mparams is not None:
        assert trainable_params(model) / 1e6 == pytest.approx(mparams, rel=0.05)


def test_v1_rounding():
    assert shufflenet.v1_channels(2, 0.25) == (48, 104, 200)
    assert shufflenet.v1_channels(4, 1.5) == (416, 816, 1632)
    assert shufflenet.v1_stem_channels(8, 0.5) == 16
    for groups in shufflenet.V1_GROUPS:
        for scale in shufflenet.V1_SCALES:
            assert all(c % (4 * groups) == 0 for c in shufflenet.v1_channels(groups, scale))
            assert shufflenet.v1_stem_channels(groups, scale) % groups == 0


# Ma et al. 2018, Table 5.
@pytest.mark.parametrize(
    "scale, widths, mmacs, mparams",
    [
        (0.5, [48, 96, 192], 41, 1.4),
        (1.0, [116, 232, 464], 146, 2.3),
        (1.5, [176, 352, 704], 299, 3.5),
        (2.0, [244, 488, 976], 591, 7.4),
    ],
)
def test_v2_table5(scale, widths, mmacs, mparams):
    model = v2(scale)
    assert stage_channels(model) == widths
    assert stage_sizes(model) == [28, 14, 7]
    assert model.get_layer("conv5_conv").output.shape[-1] == (2048 if scale == 2.0 else 1024)
    assert macs(model) / 1e6 == pytest.approx(mmacs, rel=0.03)
    assert trainable_params(model) / 1e6 == pytest.approx(mparams, rel=0.03)


SMALL = {"shufflenet_v1": {"groups": 3, "scale": 0.25}, "shufflenet_v2": {"scale": 0.5}}


@cache
def small(family: str) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """A 32×32 CIFAR-stem model, a batch of inputs and the Keras predictions for it."""
    model = get(family, input_shape=(32, 32, 3), num_classes=10, **SMALL[family])
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    return model, x, model.predict(x, verbose=0)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_cifar_stem(family):
    assert family in names()
    model, _, expected = small(family)
    assert expected.shape == (2, 10)
    assert model.get_layer("conv1_conv").strides == (1, 1)
    assert "maxpool" not in [layer.name for layer in model.layers]
    assert stage_sizes(model) == [16, 8, 4]


def test_forced_imagenet_stem():
    model = get(
        "shufflenet_v2", input_shape=(64, 64, 3), num_classes=10, scale=0.5, stem="imagenet"
    )
    assert model.get_layer("conv1_conv").strides == (2, 2)
    assert stage_sizes(model) == [8, 4, 2]


def test_channel_shuffle_by_hand():
    x = np.arange(6, dtype="float32").reshape(1, 1, 1, 6)
    out = keras.ops.convert_to_numpy(ChannelShuffle(2)(x))
    np.testing.assert_array_equal(out[0, 0, 0], [0, 3, 1, 4, 2, 5])
    out = keras.ops.convert_to_numpy(ChannelShuffle(3)(x))
    np.testing.assert_array_equal(out[0, 0, 0], [0, 2, 4, 1, 3, 5])
    layer = ChannelShuffle(3, name="shuffle")
    clone = ChannelShuffle.from_config(layer.get_config())
    assert (clone.groups, clone.name) == (3, "shuffle")
    assert keras.layers.deserialize(keras.layers.serialize(layer)).groups == 3


def test_channel_split():
    x = np.arange(2 * 3 * 3 * 8, dtype="float32").reshape(2, 3, 3, 8)
    left, right = ChannelSplit(2)(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(left), x[..., :4])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(right), x[..., 4:])
    layer = ChannelSplit(2, name="split")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, ChannelSplit)
    assert (clone.num_splits, clone.name) == (2, "split")
    with pytest.raises(ValueError, match="does not divide"):
        ChannelSplit(3)(keras.Input((4, 4, 8)))


@pytest.mark.parametrize("family", sorted(SMALL))
def test_save_load(family, tmp_path):
    model, x, expected = small(family)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert stage_outputs(loaded) == ["stage1_out", "stage2_out", "stage3_out"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "family, kwargs, match",
    [
        ("shufflenet_v1", {"groups": 5}, r"groups=5 .*\[1, 2, 3, 4, 8\]"),
        ("shufflenet_v1", {"scale": 0.75}, r"scale=0.75 .*\[0.25, 0.5, 1.0, 1.5, 2.0\]"),
        ("shufflenet_v1", {"grouped_conv": "fancy"}, r"grouped_conv='fancy' .*'native', 'split'"),
        ("shufflenet_v2", {"scale": 0.25}, r"scale=0.25 .*\[0.5, 1.0, 1.5, 2.0\]"),
        ("shufflenet_v2", {"stem": "tiny"}, "stem must be one of"),
    ],
)
def test_bad_arguments(family, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get(family, **kwargs)


def test_unit_channel_checks():
    x = keras.Input((8, 8, 24))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        shufflenet.v1_unit(x, 100, groups=3, strides=2, name="u")
    with pytest.raises(ValueError, match="groups=8 must divide"):
        shufflenet.v1_unit(x, 120, groups=8, strides=2, name="u")
    with pytest.raises(ValueError, match="C_in = C_out"):
        shufflenet.v1_unit(x, 48, groups=2, strides=1, name="u")
    with pytest.raises(ValueError, match="cannot build"):
        shufflenet.v2_unit(x, 48, strides=1, name="u")


@pytest.mark.parametrize(
    "groups, strides, use_bias",
    [(3, 1, True), (3, 2, False), (4, 2, True), (1, 1, True), (1, 2, False)],
)
def test_split_grouped_conv_equals_native_grouped_conv(groups, strides, use_bias):
    native = keras.layers.Conv2D(
        12, 3, strides=strides, padding="same", groups=groups, use_bias=use_bias, activation="relu"
    )
    split = SplitGroupedConv2D.from_config(native.get_config())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 9, 12)).astype("float32")
    native.build(x.shape)
    split.build(x.shape)
    assert [w.shape for w in split.weights] == [w.shape for w in native.weights]
    assert split.kernel.shape == (3, 3, 12 // groups, 12)
    weights = [rng.normal(size=w.shape).astype("float32") for w in native.get_weights()]
    native.set_weights(weights)
    split.set_weights(weights)
    expected = keras.ops.convert_to_numpy(native(x))
    side = -(-9 // strides)
    assert expected.shape == (2, side, side, 12)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(split(x)), expected, atol=1e-5)


def split_pair(builder, seed: int = 0, **kwargs) -> tuple[keras.Model, keras.Model]:
    """The same network built twice from `seed`, grouped_conv "native" then "split", with the
    native one's BatchNorm statistics randomized and its weights copied into the split one."""
    built = []
    for grouped_conv in ("native", "split"):
        keras.utils.set_random_seed(seed)
        built.append(builder(grouped_conv=grouped_conv, **kwargs))
    native, split = built
    rng = np.random.default_rng(seed)
    for layer in native.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.moving_mean.assign(rng.normal(size=shape) * 0.1)
            layer.moving_variance.assign(rng.random(shape) + 0.5)
            layer.gamma.assign(rng.random(shape) + 0.5)
    assert [w.shape for w in split.weights] == [w.shape for w in native.weights]
    split.set_weights(native.get_weights())
    return native, split


def check_split_pair(native: keras.Model, split: keras.Model, grouped: int) -> np.ndarray:
    """Asserts the split model is the native one with its `grouped` grouped Conv2D layers
    lowered, and equal in parameters, MACs and outputs; returns the random input."""
    kinds = {
        layer.name: type(layer)
        for layer in split.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.groups > 1
    }
    assert len(kinds) == grouped and set(kinds.values()) == {SplitGroupedConv2D}
    assert all(type(native.get_layer(name)) is keras.layers.Conv2D for name in kinds)
    assert split.count_params() == native.count_params()
    native_profile, split_profile = profile(native), profile(split)
    assert split_profile.macs == native_profile.macs
    assert split_profile.by_type == native_profile.by_type
    assert split_profile.by_type["grouped"]["macs"] > 0
    x = np.random.default_rng(2).normal(size=(2, *native.input_shape[1:])).astype("float32")
    expected = keras.ops.convert_to_numpy(native(x, training=False))
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(split(x, training=False)), expected, atol=1e-5
    )
    return x


@cache
def v1_split_pair() -> tuple[keras.Model, keras.Model]:
    return split_pair(
        shufflenet.shufflenet_v1, input_shape=(32, 32, 3), num_classes=10, **SMALL["shufflenet_v1"]
    )


def test_v1_split_lowering_equals_native():
    native, split = v1_split_pair()
    # Every unit's grouped 1×1s but the first unit's dense pw1: 16 units × 2 - 1.
    check_split_pair(native, split, grouped=31)


def test_v1_split_save_load(tmp_path):
    _, split = v1_split_pair()
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    path = tmp_path / "split.keras"
    split.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("s3u2_pw1_conv")) is SplitGroupedConv2D
    np.testing.assert_array_equal(loaded(x, training=False), split(x, training=False))


def run_tflite(path, x: np.ndarray) -> np.ndarray:
    """(N, *input) -> (N, C): the .tflite file at `path` in LiteRT, one example at a time."""
    interpreter = litert_interpreter(path, num_threads=1)
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for example in x:
        interpreter.set_tensor(source["index"], example[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"])[0])
    return np.stack(outputs)


def tflite_ops(path) -> list[str]:
    interpreter = litert_interpreter(path, use_xnnpack=False)
    return [op["op_name"] for op in interpreter._get_ops_details()]


def test_v1_split_lowering_converts_to_split_convs_and_concat(tmp_path):
    native, split = v1_split_pair()
    x = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype("float32")
    outputs, ops = {}, {}
    for kind, model in (("native", native), ("split", split)):
        path = to_tflite(model, tmp_path / f"{kind}.tflite")
        ops[kind] = tflite_ops(path)
        outputs[kind] = run_tflite(path, x)
    groups = SMALL["shufflenet_v1"]["groups"]
    assert "SPLIT" not in ops["native"]
    assert ops["split"].count("SPLIT") == 31
    assert ops["split"].count("CONV_2D") == ops["native"].count("CONV_2D") + 31 * (groups - 1)
    assert ops["split"].count("CONCATENATION") == ops["native"].count("CONCATENATION") + 31
    for elementwise in ("MUL", "ADD"):
        assert ops["split"].count(elementwise) == ops["native"].count(elementwise)
    reference = keras.ops.convert_to_numpy(native(x, training=False))
    np.testing.assert_allclose(outputs["native"], reference, atol=1e-4)
    np.testing.assert_allclose(outputs["split"], outputs["native"], atol=1e-4)
