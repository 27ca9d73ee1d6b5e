"""Structured channel pruning (Li et al. 2017): smaller dense models that stay consistent across
residual adds and depthwise layers, keep their output shape and can be distilled."""

import sys

import keras
import numpy as np
import pytest

import tfdistill
from tfdistill import models
from tfdistill.compress import kept_channels, prune_channels, require_tfmot
from tfdistill.export import to_tflite
from tfdistill.export.interpreter import litert_interpreter
from tfdistill.models.layers import ChannelShuffle, ChannelSplit

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
    """Grouped convolutions cut tied positions, shuffles and splits carry what they can and
    freeze the rest; what shrinks still equals the original with the removed channels zeroed.
    ShuffleNet v1 g3 0.25× prunes stage 2's first bottleneck (a dense pw1, no shuffle: the
    shuffled 15, 30 and 60 channels do not split into 3 · 3 blocks)."""
    model = small(family)
    randomize_bn(model)
    groups = tfdistill.compress.prunable_groups(model)
    assert {"resnext": 22, "shufflenet_v1": 1, "shufflenet_v2": 18}[family] == len(groups)
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


def assert_zeroed_original_equals_pruned(model, ratio, x):
    """The pruned model's outputs equal `model`'s once the channels it removes are zeroed."""
    pruned = prune_channels(model, ratio)
    expected = pruned(x, training=False)
    zero_removed(model, kept_channels(model, ratio))
    np.testing.assert_allclose(expected, model(x, training=False), rtol=1e-5, atol=1e-5)
    return pruned


def grouped_net():
    """(B, 6, 6, 3) -> 1×1 conv "a" (8) -> BN -> 3×3 conv "g" (8, groups 4) -> BN -> ReLU ->
    1×1 conv "c" (6) -> GAP -> Dense (B, 3). a's filter L1 norms 1.5 · (5, 1, 0, 2, 0, 3, 0, 4):
    filter 0 is the largest, yet local position 1 wins summed over the four blocks of two."""
    inputs = keras.Input((6, 6, 3), name="x")
    x = keras.layers.Conv2D(8, 1, name="a")(inputs)
    x = keras.layers.BatchNormalization(name="a_bn")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", groups=4, name="g")(x)
    x = keras.layers.BatchNormalization(name="g_bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(6, 1, name="c")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    randomize_bn(model)
    kernel = np.zeros((1, 1, 3, 8), "float32")
    kernel[0, 0, 0] = [5.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0]
    kernel[0, 0, 1] = -kernel[0, 0, 0] / 2
    kernel[0, 0, 2] = np.random.default_rng(4).normal(size=8) * 1e-3
    model.get_layer("a").set_weights([kernel, np.zeros(8, "float32")])
    return model


def test_grouped_convolution_cuts_the_same_positions_from_every_group():
    model = grouped_net()
    groups = tfdistill.compress.prunable_groups(model)
    assert groups == {"a": ("a",), "g": ("g",), "c": ("c",)}
    kept = kept_channels(model, 0.5)
    np.testing.assert_array_equal(kept["a"], [1, 3, 5, 7])
    np.testing.assert_array_equal(kept["a_bn"], kept["a"])
    local = kept["g"].reshape(4, -1) - 2 * np.arange(4)[:, None]
    assert (local == local[0]).all() and local.shape == (4, 1), kept["g"]
    x = np.random.default_rng(6).normal(size=(2, 6, 6, 3)).astype("float32")
    pruned = assert_zeroed_original_equals_pruned(model, 0.5, x)
    conv = pruned.get_layer("g")
    assert (conv.groups, conv.filters, conv.kernel.shape) == (4, 4, (3, 3, 1, 4))
    assert [pruned.get_layer(n).filters for n in "ac"] == [4, 3]


def shuffle_net(width, tail_groups=3, concat=False):
    """(B, 6, 6, 4) -> 1×1 conv "a" (`width`) [concatenated with conv "b" (`width`)] -> BN ->
    ChannelShuffle(3) -> depthwise -> BN -> 1×1 conv "g" (6, `tail_groups` groups) -> BN ->
    GAP -> Dense (B, 3)."""
    inputs = keras.Input((6, 6, 4), name="x")
    x = keras.layers.Conv2D(width, 1, name="a")(inputs)
    if concat:
        b = keras.layers.Conv2D(width, 1, name="b")(inputs)
        x = keras.layers.Concatenate(name="cat")([x, b])
    x = keras.layers.BatchNormalization(name="a_bn")(x)
    x = ChannelShuffle(3, name="shuffle")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.Conv2D(6, 1, groups=tail_groups, name="g")(x)
    x = keras.layers.BatchNormalization(name="g_bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    randomize_bn(model)
    return model


X6 = np.random.default_rng(7).normal(size=(2, 6, 6, 4)).astype("float32")


@pytest.mark.parametrize(("width", "tail_groups", "fold"), [(18, 3, 9), (12, 1, 3)])
def test_shuffled_channels_are_sliced_where_the_shuffle_put_them(width, tail_groups, fold):
    """Shuffling blocks of tied positions keeps them tied: the depthwise and BatchNorm after it
    are sliced at the shuffled positions, and a grouped convolution after it (3 groups) needs
    fold 3 · 3 so that each of its groups sees the same positions."""
    model = shuffle_net(width, tail_groups)
    assert "a" in tfdistill.compress.prunable_groups(model)
    kept = kept_channels(model, 0.5)
    local = kept["a"].reshape(fold, -1) - (width // fold) * np.arange(fold)[:, None]
    assert (local == local[0]).all()
    order = (np.arange(width) % 3) * (width // 3) + np.arange(width) // 3
    np.testing.assert_array_equal(kept["dw"], np.flatnonzero(np.isin(order, kept["a"])))
    pruned = assert_zeroed_original_equals_pruned(model, 0.5, X6)
    assert pruned.get_layer("shuffle").groups == 3
    assert pruned.get_layer("dw_bn").gamma.shape == (width // 2,)


@pytest.mark.parametrize(
    ("width", "concat"), [(12, False), (6, True)], ids=["blocks_misaligned", "concatenated"]
)
def test_a_layout_that_cannot_stay_consistent_is_frozen(width, concat):
    """12 shuffled channels meet a 3-group convolution whose groups would need fold 9; a
    shuffle of a concatenation interleaves two groups. Both keep their channels whole."""
    model = shuffle_net(width, concat=concat)
    assert set(tfdistill.compress.prunable_groups(model)) == {"g"}
    kept = kept_channels(model, 0.5)
    assert set(kept) == {"g", "g_bn", "pool"}
    assert_zeroed_original_equals_pruned(model, 0.5, X6)


def split_net(parts):
    """(B, 6, 6, 4) -> 1×1 convs "a", "b" (4 each) -> Concatenate -> ChannelSplit(`parts`) ->
    a 1×1 conv on each part -> Concatenate -> GAP -> Dense (B, 3)."""
    inputs = keras.Input((6, 6, 4), name="x")
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    x = keras.layers.Concatenate(name="cat")([a, b])
    halves = ChannelSplit(parts, name="split")(x)
    convs = [keras.layers.Conv2D(3, 1, name=f"p{i}")(h) for i, h in enumerate(halves)]
    x = keras.layers.Concatenate(name="join")(convs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def test_a_split_between_segments_joins_the_parts_and_one_inside_a_group_freezes():
    model = split_net(2)
    groups = tfdistill.compress.prunable_groups(model)
    assert groups["a"] == ("a", "b")
    pruned = assert_zeroed_original_equals_pruned(model, 0.5, X6)
    assert [pruned.get_layer(n).filters for n in ("a", "b", "p0", "p1")] == [2, 2, 2, 2]
    assert "a" not in tfdistill.compress.prunable_groups(split_net(4))


def test_resnext_prunes_its_bottleneck_widths_and_converts_to_tflite(tmp_path):
    """Each block's first 1×1 and grouped 3×3 outputs are groups of their own (fold 2), besides
    the residual streams; the pruned model keeps 2 conv groups and lowers to builtins."""
    model = models.get(
        "resnext",
        depth=29,
        cardinality=2,
        bottleneck_width=4,
        input_shape=(16, 16, 3),
        num_classes=4,
    )
    groups = tfdistill.compress.prunable_groups(model)
    blocks = [f"s{s}b{b}" for s in (1, 2, 3) for b in (1, 2, 3)]
    assert {f"{n}_{i}_conv" for n in blocks for i in (1, 2)} <= set(groups)
    assert len(groups) == 4 + 2 * len(blocks)
    pruned = prune_channels(model, 0.5)
    for name in blocks:
        conv, old = pruned.get_layer(f"{name}_2_conv"), model.get_layer(f"{name}_2_conv")
        assert (conv.groups, conv.filters) == (2, old.filters // 2)
    x = np.random.default_rng(8).random((1, 16, 16, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(pruned(x, training=False))
    interpreter = litert_interpreter(to_tflite(pruned, tmp_path / "p.tflite"), use_xnnpack=False)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= {"CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "PAD"}, ops
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(source["index"], x)
    interpreter.invoke()
    np.testing.assert_allclose(
        interpreter.get_tensor(target["index"]), expected, rtol=1e-4, atol=1e-4
    )


def test_shufflenet_v1_prunes_its_bottlenecks_through_the_shuffle():
    """g = 2, 0.25×: stage 2's bottlenecks (12 channels) pass pw1 (2 groups) -> shuffle ->
    depthwise -> pw2 (2 groups) with fold 4; the wider stages' (26, 50) do not split so."""
    model = models.get(
        "shufflenet_v1", input_shape=(32, 32, 3), num_classes=10, groups=2, scale=0.25
    )
    randomize_bn(model)
    assert set(tfdistill.compress.prunable_groups(model)) == {
        f"s2u{u}_pw1_conv" for u in range(1, 5)
    }
    pruned = assert_zeroed_original_equals_pruned(model, 0.5, X)
    assert pruned.get_layer("s2u2_pw2_conv").kernel.shape[-2] == 4  # 2 of 3 per block: 8 / 2
    assert tfdistill.profile(pruned).macs < tfdistill.profile(model).macs
