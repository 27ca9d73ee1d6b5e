"""SqueezeNet v1.0 / v1.1: the reference parameter counts and sizes, fire modules, the ceil-mode
max pool, the CIFAR stem, serialization, TFLite with builtin ops, channel pruning, errors."""

from functools import cache

import keras
import numpy as np
import pytest

import tfdistill
from tfdistill import models, outputs
from tfdistill.compress import kept_channels, prune_channels
from tfdistill.export import to_tflite
from tfdistill.export.interpreter import litert_interpreter
from tfdistill.models import squeezenet as sq

# torchvision's SqueezeNet1_0_Weights / SqueezeNet1_1_Weights: num_params and GFLOPS (its
# "FLOPS" are multiply-adds: ResNet-18's 1.81); the sides of conv1 and the three stages at
# 224 px as torchvision computes them (unpadded conv1, ceil_mode max pools).
REFERENCE = {
    "1.0": (1_248_424, 820, (109, 54, 27, 13), (256, 512, 512)),
    "1.1": (1_235_496, 350, (111, 55, 27, 13), (128, 256, 512)),
}


@cache
def imagenet(version: str) -> keras.Model:
    return models.get("squeezenet", version=version)


@cache
def cifar(version: str = "1.1") -> keras.Model:
    return models.get("squeezenet", version=version, input_shape=(32, 32, 3), num_classes=10)


def stage_shapes(model: keras.Model) -> list[tuple[int, int]]:
    """(side, channels) of each stage output."""
    return [
        (model.get_layer(name).output.shape[1], model.get_layer(name).output.shape[-1])
        for name in models.stage_outputs(model)
    ]


@pytest.mark.parametrize("version", sorted(REFERENCE))
def test_reference_parameters_sizes_and_macs(version):
    params, mmacs, sides, channels = REFERENCE[version]
    model = imagenet(version)
    assert "squeezenet" in models.names()
    assert model.count_params() == params
    assert model.output.shape == (None, 1000)
    assert model.get_layer("conv1_conv").output.shape[1] == sides[0]
    assert stage_shapes(model) == list(zip(sides[1:], channels, strict=True))
    assert sq.stage_sides(224, version) == sides
    assert tfdistill.profile(model).macs / 1e6 == pytest.approx(mmacs, rel=0.01)
    assert not [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__]


def test_v1_1_has_2_4_times_less_computation():
    ratio = tfdistill.profile(imagenet("1.0")).macs / tfdistill.profile(imagenet("1.1")).macs
    assert ratio == pytest.approx(2.4, abs=0.06)


def test_parameters_do_not_depend_on_the_input_size():
    """With the reference's conv1 (the cifar stem's 3×3 conv1 changes v1.0's count)."""
    for version, (params, *_) in REFERENCE.items():
        for side in (32, 227):
            model = models.get(
                "squeezenet", version=version, input_shape=(side, side, 3), stem="imagenet"
            )
            assert model.count_params() == params


def test_fire_module_concatenates_its_expands():
    inputs = keras.Input((6, 5, 12))
    model = keras.Model(inputs, sq.fire(inputs, 4, 6, 10, name="fire"))
    assert model.output.shape == (None, 6, 5, 16)
    assert model.get_layer("fire_squeeze_conv").kernel.shape == (1, 1, 12, 4)
    assert model.get_layer("fire_expand1x1_conv").kernel.shape == (1, 1, 4, 6)
    assert model.get_layer("fire_expand3x3_conv").kernel.shape == (3, 3, 4, 10)
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape))
    x = rng.normal(size=(2, 6, 5, 12)).astype("float32")

    def conv(layer: str, t: np.ndarray) -> np.ndarray:
        layer = model.get_layer(layer)
        y = keras.ops.conv(t, layer.kernel, padding="same") + layer.bias
        return np.maximum(keras.ops.convert_to_numpy(y), 0.0)

    squeezed = conv("fire_squeeze_conv", x)
    expected = np.concatenate(
        [conv("fire_expand1x1_conv", squeezed), conv("fire_expand3x3_conv", squeezed)], axis=-1
    )
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-4)


def ceil_mode_max_pool(x: np.ndarray) -> np.ndarray:
    """(B, H, W, C) -> 3×3/2 max pool without padding, output sizes rounded up (PyTorch's
    ceil_mode=True: the last window may hang over the end)."""
    out_h, out_w = sq.pooled_side(x.shape[1]), sq.pooled_side(x.shape[2])
    result = np.empty((x.shape[0], out_h, out_w, x.shape[3]), x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            result[:, i, j] = x[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max(axis=(1, 2))
    return result


@pytest.mark.parametrize("shape", [(9, 9), (10, 10), (10, 9), (7, 12), (2, 3)])
def test_max_pool_rounds_up_as_ceil_mode(shape):
    inputs = keras.Input((*shape, 3))
    model = keras.Model(inputs, sq.max_pool(inputs, name="pool"))
    odd = shape[0] % 2 and shape[1] % 2
    x = np.random.default_rng(1).normal(size=(2, *shape, 3)).astype("float32")
    if not odd:  # the even sides' extra row or column is a zero or ignored: ReLU inputs
        x = np.abs(x)
    np.testing.assert_array_equal(model(x), ceil_mode_max_pool(x))
    padded = any(layer.name == "pool_pad" for layer in model.layers)
    assert padded == (shape[0] % 2 != shape[1] % 2)


def test_stage_sides_and_smallest_inputs():
    for side in (21, 32, 63, 64, 227):
        model = models.get("squeezenet", input_shape=(side, side, 3), stem="imagenet")
        assert sq.stage_sides(side, "1.0") == (
            model.get_layer("conv1_conv").output.shape[1],
            *(s for s, _ in stage_shapes(model)),
        )
    assert min(sq.stage_sides(20, "1.0")) == 0 and min(sq.stage_sides(21, "1.0")) == 1
    assert min(sq.stage_sides(16, "1.1")) == 0 and min(sq.stage_sides(17, "1.1")) == 1
    with pytest.raises(ValueError, match=r"version 1.0 with the 'imagenet' stem .* >= 21"):
        models.get("squeezenet", input_shape=(20, 40, 3), stem="imagenet")
    with pytest.raises(ValueError, match=r"version 1.1 with the 'cifar' stem .* >= 4"):
        models.get("squeezenet", version="1.1", input_shape=(3, 3, 3))


@pytest.mark.parametrize("version, channels", [("1.0", (256, 512, 512)), ("1.1", (128, 256, 512))])
def test_cifar_stem(version, channels):
    model = cifar(version)
    conv1 = model.get_layer("conv1_conv")
    assert (conv1.kernel_size, conv1.strides, conv1.padding) == ((3, 3), (1, 1), "same")
    assert "pool1" not in [layer.name for layer in model.layers]
    assert stage_shapes(model) == list(zip((32, 16, 8), channels, strict=True))
    assert models.stage_outputs(model) == ["stage1_out", "stage2_out", "stage3_out"]
    assert model.output.shape == (None, 10)


def test_outputs_are_relu_class_scores_treated_as_logits():
    model = cifar()
    x = np.random.default_rng(2).normal(size=(4, 32, 32, 3)).astype("float32")
    scores = keras.ops.convert_to_numpy(model(x, training=False))
    assert scores.shape == (4, 10) and scores.min() >= 0
    assert outputs.resolve_output_kind(model, "auto", "student_outputs") == "logits"


def test_without_the_final_relu_the_scores_are_plain_logits():
    model = models.get(
        "squeezenet", version="1.1", input_shape=(32, 32, 3), num_classes=10, final_relu=False
    )
    assert "conv10_relu" not in [layer.name for layer in model.layers]
    assert model.count_params() == cifar().count_params()
    model.set_weights(cifar().get_weights())
    x = np.random.default_rng(2).normal(size=(4, 32, 32, 3)).astype("float32")
    conv10 = keras.Model(model.input, model.get_layer("conv10").output)
    expected = keras.ops.convert_to_numpy(conv10(x)).mean(axis=(1, 2))
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        cifar()(x, training=False),
        np.maximum(keras.ops.convert_to_numpy(conv10(x)), 0).mean(axis=(1, 2)),
        rtol=1e-5,
        atol=1e-6,
    )
    assert expected.min() < 0


def test_batch_norm_variant():
    model = models.get(
        "squeezenet",
        version="1.1",
        input_shape=(32, 32, 3),
        num_classes=10,
        batch_norm=True,
        bn_momentum=0.99,
    )
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(norms) == len(convs) - 1 == 1 + 3 * 8
    assert {layer.momentum for layer in norms} == {0.99}
    assert [layer.name for layer in convs if layer.use_bias] == ["conv10"]
    assert model.get_layer("fire2_squeeze_bn").input.shape[-1] == 16


def test_keras_round_trip(tmp_path):
    model = cifar()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    assert models.stage_outputs(loaded) == models.stage_outputs(model)
    assert loaded.name == "squeezenet1_1"


def test_tflite_has_builtin_ops_and_matches_keras(tmp_path):
    """v1.0's reference layout at 66×64: uneven sides, so pool1 and pool4 pad one side."""
    model = models.get("squeezenet", input_shape=(66, 64, 3), num_classes=10, stem="imagenet")
    assert [layer.name for layer in model.layers if layer.name.endswith("_pad")] == [
        "pool1_pad",
        "pool4_pad",
    ]
    path = to_tflite(model, tmp_path / "squeezenet.tflite")
    interpreter = litert_interpreter(path, use_xnnpack=False)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= {"CONV_2D", "MAX_POOL_2D", "CONCATENATION", "PAD", "MEAN"}, ops
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    x = np.random.default_rng(4).random((2, 66, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    assert expected.max() > 0
    for example, reference in zip(x, expected, strict=True):
        interpreter.set_tensor(source["index"], example[None])
        interpreter.invoke()
        result = interpreter.get_tensor(target["index"])[0]
        np.testing.assert_allclose(result, reference, rtol=1e-4, atol=1e-4 * expected.max())


def test_prune_channels_shrinks_every_convolution_but_the_classifier():
    """conv1, every squeeze and both expands of every fire lose half their filters: the
    expands meet in a Concatenate, which lays their groups end to end, so the next squeeze
    (or conv10) takes the kept channels of both. conv10 gives the outputs and stays whole."""
    model = cifar()
    pruned = prune_channels(model, 0.5)
    assert pruned.output.shape == model.output.shape
    assert models.stage_outputs(pruned) == models.stage_outputs(model)
    kept = kept_channels(model, 0.5)
    parts = ("squeeze", "expand1x1", "expand3x3")
    shrunk = {"conv1_conv", *(f"fire{i}_{p}_conv" for i in range(2, 10) for p in parts)}
    assert {name for name in kept if name.endswith("_conv") or name == "conv10"} == shrunk
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            filters = pruned.get_layer(layer.name).filters
            assert filters == (layer.filters // 2 if layer.name in shrunk else layer.filters)
    assert tfdistill.profile(pruned).macs < tfdistill.profile(model).macs

    x = np.random.default_rng(5).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = pruned(x, training=False)
    for name in shrunk:
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        removed = np.setdiff1d(np.arange(layer.filters), kept[name])
        kernel[..., removed], bias[removed] = 0.0, 0.0
        layer.set_weights([kernel, bias])
    np.testing.assert_allclose(expected, model(x, training=False), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"version": "2.0"}, r"version='2.0' is not allowed; choose one of \['1.0', '1.1'\]"),
        ({"version": 1.2}, r"version='1.2' is not allowed; choose one of \['1.0', '1.1'\]"),
        ({"version": "1_1"}, r"version='1_1' is not allowed"),
        ({"bn_momentum": 0.99}, "bn_momentum applies .* only with batch_norm=True"),
        ({"batch_norm": True, "bn_momentum": 1.5}, "bn_momentum must be in"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"num_classes": 0}, "num_classes must be"),
        ({"stem": "tiny"}, "stem must be one of"),
        ({"input_shape": (32, 32)}, "input_shape must be"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.get("squeezenet", **kwargs)


def test_version_as_a_number():
    model = models.get("squeezenet", version=1.1, input_shape=(32, 32, 3), num_classes=10)
    assert model.name == "squeezenet1_1"
