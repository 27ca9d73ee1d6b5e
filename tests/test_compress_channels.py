"""Structured channel pruning (Li et al. 2017): smaller dense models that stay consistent across
residual adds and depthwise layers, keep their output shape and can be distilled."""

import sys

import keras
import numpy as np
import pytest

import tfdistill
from tfdistill import models
from tfdistill.compress import kept_channels, prune_channels, require_tfmot

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

SMALL = {
    "convnet": {"widths": (4, 8)},
    "mobilenet_v1": {"alpha": 0.25},
    "mobilenet_v2": {"alpha": 0.35},
    "resnet": {"depth": 8},
    "wide_resnet": {"depth": 10, "width": 1},
}
OTHERS = {
    "shufflenet_v1": {"groups": 3, "scale": 0.25},
    "shufflenet_v2": {"scale": 0.5},
    "resnext": {"depth": 29, "cardinality": 2, "bottleneck_width": 4},
}
X = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")


def small(family):
    config = {**SMALL, **OTHERS}[family]
    return models.get(family, input_shape=(32, 32, 3), num_classes=10, **config)


def randomize_bn(model, seed=1):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.moving_mean.assign(rng.normal(size=shape) * 0.1)
            layer.moving_variance.assign(rng.random(shape) + 0.5)
            layer.gamma.assign(rng.random(shape) + 0.5)
            layer.beta.assign(rng.normal(size=shape) * 0.1)


def zero_removed(model, kept):
    """Zeroes, in place, every channel `prune_channels` removes: kernels and biases of the
    producers, depthwise kernels, BatchNorm gamma and beta, so each removed channel is 0."""
    for name, keep in kept.items():
        layer = model.get_layer(name)
        weights = layer.get_weights()
        if not weights:
            continue
        removed = np.setdiff1d(np.arange(layer.output.shape[-1]), keep)
        if isinstance(layer, keras.layers.BatchNormalization):
            weights[0][removed] = 0.0
            weights[1][removed] = 0.0
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            weights[0][..., removed, :] = 0.0
            for w in weights[1:]:
                w[removed] = 0.0
        else:
            weights[0][..., removed] = 0.0
            for w in weights[1:]:
                w[removed] = 0.0
        layer.set_weights(weights)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_family_pruned_is_smaller_and_equals_the_zeroed_original(family, tmp_path):
    model = small(family)
    randomize_bn(model)
    if not tfdistill.compress.prunable_groups(model):
        with pytest.raises(ValueError, match="has no prunable channels"):
            prune_channels(model, ratio=0.5)
        return
    pruned = prune_channels(model, ratio=0.5)
    assert pruned.output.shape == model.output.shape
    assert [layer.name for layer in pruned.layers] == [layer.name for layer in model.layers]
    assert models.stage_outputs(pruned) == models.stage_outputs(model)
    macs = tfdistill.profile(pruned).macs / tfdistill.profile(model).macs
    assert macs <= 0.6, macs
    assert pruned.count_params() < model.count_params()

    identical = prune_channels(model, ratio=0.0)
    np.testing.assert_allclose(identical(X), model(X), rtol=1e-6, atol=1e-6)

    kept = kept_channels(model, ratio=0.5)
    assert kept
    expected = pruned(X, training=False)
    zero_removed(model, kept)
    np.testing.assert_allclose(expected, model(X, training=False), rtol=1e-4, atol=1e-4)

    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.models.load_model(tmp_path / "pruned.keras")
    np.testing.assert_array_equal(loaded(X, training=False), expected)
    assert models.stage_outputs(loaded) == models.stage_outputs(model)


@pytest.mark.parametrize("family", sorted(OTHERS))
def test_grouped_and_shuffled_families_stay_valid_and_exact(family):
    """Grouped convolutions, ChannelShuffle, ChannelSplit and Concatenate keep their channels;
    whatever else shrinks still equals the original with the removed channels zeroed."""
    model = small(family)
    randomize_bn(model)
    if not tfdistill.compress.prunable_groups(model):
        with pytest.raises(ValueError, match="has no prunable channels"):
            prune_channels(model, ratio=0.5)
        return
    pruned = prune_channels(model, ratio=0.5)
    assert pruned.output.shape == model.output.shape
    assert models.stage_outputs(pruned) == models.stage_outputs(model)
    assert tfdistill.profile(pruned).macs <= tfdistill.profile(model).macs
    expected = pruned(X, training=False)
    zero_removed(model, kept_channels(model, ratio=0.5))
    np.testing.assert_allclose(expected, model(X, training=False), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", ["mobilenet_v1", "resnet", "wide_resnet"])
def test_pruned_trains_and_distills_from_the_original(family):
    model = small(family)
    pruned = prune_channels(model, ratio=0.5)
    y = np.random.default_rng(2).integers(0, 10, size=(8,))
    x = np.random.default_rng(3).normal(size=(8, 32, 32, 3)).astype("float32")
    pruned.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    before = [np.array(w) for w in pruned.trainable_weights]
    losses = pruned.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert all(
        not np.array_equal(a, b) for a, b in zip(before, pruned.trainable_weights, strict=True)
    )
    distiller = tfdistill.Distiller(pruned, model)
    distiller.compile(optimizer="adam", run_eagerly=True)
    history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][-1])


def one_conv(norms):
    """(B, 4, 4, 2) -> 1×1 conv "c" with filter L1 norms 1.5·`norms` -> GAP -> Dense (B, 3)."""
    inputs = keras.Input((4, 4, 2), name="x")
    x = keras.layers.Conv2D(len(norms), 1, name="c")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    kernel = np.zeros((1, 1, 2, len(norms)), "float32")
    kernel[0, 0, 0] = norms
    kernel[0, 0, 1] = -np.asarray(norms) / 2
    layer = model.get_layer("c")
    layer.set_weights([kernel, np.arange(len(norms), dtype="float32")])
    return model


@pytest.mark.parametrize(
    ("ratio", "keep"), [(0.5, [0, 2]), (0.25, [0, 2, 3]), (0.9, [2]), (0.0, [0, 1, 2, 3])]
)
def test_l1_keeps_the_largest_filters_in_order(ratio, keep):
    model = one_conv([3.0, 1.0, 4.0, 2.0])
    pruned = prune_channels(model, ratio=ratio)
    conv, dense = model.get_layer("c"), model.get_layer("logits")
    new_conv, new_dense = pruned.get_layer("c"), pruned.get_layer("logits")
    assert new_conv.filters == len(keep) and new_dense.units == 3
    np.testing.assert_array_equal(new_conv.kernel, np.asarray(conv.kernel)[..., keep])
    np.testing.assert_array_equal(new_conv.bias, np.asarray(conv.bias)[keep])
    np.testing.assert_array_equal(new_dense.kernel, np.asarray(dense.kernel)[keep])
    np.testing.assert_array_equal(new_dense.bias, dense.bias)
    if ratio:
        np.testing.assert_array_equal(kept_channels(model, ratio)["c"], keep)


def test_add_groups_are_chosen_jointly_and_concatenations_laid_end_to_end():
    inputs = keras.Input((4, 4, 2), name="x")
    a = keras.layers.Conv2D(4, 1, use_bias=False, name="a")(inputs)
    b = keras.layers.Conv2D(4, 1, use_bias=False, name="b")(a)
    joined = keras.layers.Add(name="add")([a, b])
    c = keras.layers.Conv2D(4, 1, use_bias=False, name="c")(joined)
    d = keras.layers.Conv2D(4, 1, use_bias=False, name="d")(joined)
    cat = keras.layers.Concatenate(name="cat")([c, d])
    e = keras.layers.Conv2D(2, 1, use_bias=False, name="e")(cat)
    on_input = keras.layers.Add(name="on_input")([inputs, e])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(on_input)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(pooled))
    norms = {"a": [1.0, 0.0, 0.0, 5.0], "b": [0.0, 3.0, 0.0, 0.0]}
    for name, values in norms.items():
        kernel = np.zeros((1, 1, model.get_layer(name).input.shape[-1], 4), "float32")
        kernel[0, 0, 0] = values
        model.get_layer(name).set_weights([kernel])

    kept = kept_channels(model, ratio=0.5)
    assert sorted(kept) == ["a", "add", "b", "c", "cat", "d"]
    np.testing.assert_array_equal(kept["add"], [1, 3])
    np.testing.assert_array_equal(kept["cat"], np.concatenate([kept["c"], 4 + kept["d"]]))
    pruned = prune_channels(model, ratio=0.5)
    assert [pruned.get_layer(n).filters for n in "abcde"] == [2, 2, 2, 2, 2]
    assert pruned.get_layer("e").kernel.shape == (1, 1, 4, 2)  # sliced by both groups
    x = np.random.default_rng(5).normal(size=(2, 4, 4, 2)).astype("float32")
    expected = pruned(x)
    zero_removed(model, kept)
    np.testing.assert_allclose(expected, model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ratio", [-0.1, 1, 1.5, True, "0.5", None])
def test_ratio_must_be_in_zero_one(ratio):
    with pytest.raises(ValueError, match=r"ratio must be a number in \[0, 1\)"):
        prune_channels(one_conv([1.0, 2.0]), ratio=ratio)


def test_unknown_criterion_names_the_choices():
    with pytest.raises(ValueError, match=r"criterion='l2'.*\('l1', 'bn_gamma', 'taylor'\)"):
        prune_channels(one_conv([1.0, 2.0]), criterion="l2")


def test_subclassed_models_are_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional or Sequential"):
        prune_channels(Net())


def test_require_tfmot_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_model_optimization", None)
    with pytest.raises(ImportError, match=r'pip install "tfdistill\[compress\]"') as info:
        require_tfmot()
    assert 'pip install -e ".[compress]"' in str(info.value)
    assert "tensorflow_model_optimization" in str(info.value)


def bn_net(gammas, betas):
    """(B, 4, 4, 2) -> conv "c" (4) -> BN "bn" (γ, β given; mean 0, var 1) -> ReLU -> conv "d"
    (3) -> GAP -> Dense (B, 3)."""
    inputs = keras.Input((4, 4, 2), name="x")
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="c")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(3, 1, name="d")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    bn = model.get_layer("bn")
    bn.gamma.assign(np.asarray(gammas, "float32"))
    bn.beta.assign(np.asarray(betas, "float32"))
    return model


def test_bn_gamma_removes_the_zero_scaled_channels_and_changes_nothing():
    model = bn_net([1.0, 0.0, -2.0, 0.0], [0.1, 0.0, 0.2, 0.0])
    np.testing.assert_array_equal(kept_channels(model, {"c": 0.5}, "bn_gamma")["c"], [0, 2])
    pruned = prune_channels(model, {"c": 0.5}, criterion="bn_gamma")
    assert pruned.get_layer("c").filters == 2 and pruned.get_layer("bn").gamma.shape == (2,)
    assert pruned.get_layer("d").filters == 3  # not named in the ratio dict: whole
    x = np.random.default_rng(8).normal(size=(3, 4, 4, 2)).astype("float32")
    np.testing.assert_allclose(pruned(x), model(x), rtol=1e-6, atol=1e-6)


def np_one_conv_loss(model, x, y, scale_filter=None, scale=1.0):
    """float64 mean cross-entropy of `one_conv` with filter `scale_filter` of "c" (kernel and
    bias) multiplied by `scale`."""
    kernel, bias = (np.asarray(w, "float64") for w in model.get_layer("c").get_weights())
    if scale_filter is not None:
        kernel[..., scale_filter] *= scale
        bias[scale_filter] *= scale
    dense_k, dense_b = (np.asarray(w, "float64") for w in model.get_layer("logits").get_weights())
    features = np.einsum("bhwc,cd->bhwd", x.astype("float64"), kernel[0, 0]) + bias
    logits = features.mean(axis=(1, 2)) @ dense_k + dense_b
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


def test_taylor_importance_is_the_squared_loss_change_per_filter():
    """Σ over a filter's parameters of ∂L/∂w · w is the derivative of L along scaling that
    filter: checked by central differences in float64, batch by batch, then squared and
    averaged over the batches (Molchanov et al. 2019)."""
    model = one_conv([3.0, 1.0, 4.0, 2.0])
    rng = np.random.default_rng(9)
    batches = [
        (rng.normal(size=(5, 4, 4, 2)).astype("float32"), rng.integers(0, 3, size=5))
        for _ in range(2)
    ]
    eps = 1e-5
    expected = np.zeros(4)
    for x, y in batches:
        for f in range(4):
            up = np_one_conv_loss(model, x, y, f, 1 + eps)
            down = np_one_conv_loss(model, x, y, f, 1 - eps)
            expected[f] += ((up - down) / (2 * eps)) ** 2 / len(batches)
    from tfdistill.compress import channels

    plan = channels._Plan(channels._graph(model))
    (root,) = plan.prunable()
    scores = channels._scores(model, plan, "taylor", batches)
    np.testing.assert_allclose(scores[root], expected, rtol=1e-3, atol=1e-9)
    keep = np.sort(np.argsort(-expected, kind="stable")[:2])
    np.testing.assert_array_equal(kept_channels(model, 0.5, "taylor", data=batches)["c"], keep)


def test_per_layer_ratios_and_the_prunable_groups():
    model = models.get("resnet", depth=8, shortcut="B", input_shape=(32, 32, 3), num_classes=10)
    groups = tfdistill.compress.prunable_groups(model)
    tied = [layers for layers in groups.values() if len(layers) > 1]
    assert tied, "residual additions tie the convolutions of a stage together"
    name = next(iter(groups))
    pruned = prune_channels(model, {name: 0.5})
    changed = [
        layer.name
        for layer in model.layers
        if getattr(layer, "filters", None) != getattr(pruned.get_layer(layer.name), "filters", None)
    ]
    assert set(changed) == set(groups[name])
    assert all(pruned.get_layer(n).filters == model.get_layer(n).filters // 2 for n in changed)
    with pytest.raises(ValueError, match=r"ratio names \['logits'\], which have no prunable"):
        prune_channels(model, {"logits": 0.5})
    with pytest.raises(ValueError, match=r"ratio\['x'\] must be a number in \[0, 1\)"):
        prune_channels(model, {"x": 1.0})
    with pytest.raises(ValueError, match="pass data="):
        prune_channels(model, 0.5, criterion="taylor")


def test_a_model_without_prunable_channels_says_so():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="logits")])
    with pytest.raises(ValueError, match="has no prunable channels"):
        prune_channels(model, 0.5)
    assert prune_channels(model, 0.0).count_params() == model.count_params()
