import keras
import pytest
from absl import flags

import tfdistill
from tfdistill import cli

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed


def small_model():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="full")(inputs)
    x = keras.layers.Conv2D(6, 1, strides=2, name="pointwise")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", groups=3, use_bias=False, name="grouped")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, name="fc")(x)
    return keras.Model(inputs, outputs, name="small")


def test_macs_and_params_by_type_by_hand():
    p = tfdistill.profile(small_model())
    assert p.by_type == {
        "conv": {"macs": 8 * 8 * 9 * 4 * 8, "params": 9 * 4 * 8},
        "conv1x1": {"macs": 4 * 4 * 8 * 6, "params": 8 * 6 + 6},
        "grouped": {"macs": 4 * 4 * 9 * 2 * 6, "params": 9 * 2 * 6},
        "depthwise": {"macs": 4 * 4 * 9 * 12, "params": 9 * 12 + 12},
        "dense": {"macs": 12 * 10, "params": 12 * 10 + 10},
    }
    assert p.macs == sum(v["macs"] for v in p.by_type.values())
    assert p.params == small_model().count_params()
    assert p.trainable_params == p.params - 2 * 12
    rows = {row.name: row for row in p.layers}
    assert rows["dw"].output_shape == (4, 4, 12) and rows["dw"].macs == 4 * 4 * 9 * 12
    assert rows["bn"].kind == "BatchNormalization" and rows["bn"].macs == 0


def test_peak_activation_memory_by_hand():
    inputs = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(3, 1)(inputs)
    marked = keras.layers.Identity()(a)
    c = keras.layers.Conv2D(5, 1)(marked)
    d = keras.layers.Add()([keras.layers.Conv2D(5, 1)(a), c])
    # a (3 ch) lives until both its consumers ran; then a, c, the second conv and the sum overlap
    # as at most c + conv + sum = 15 channels of 4×4 float32.
    assert tfdistill.profile(keras.Model(inputs, d)).peak_activation_bytes == 15 * 16 * 4


def test_mobilenet_table_2_shares():
    """Howard et al. (2017) Table 2: 1×1 convolutions take 94.86% of the Mult-Adds and 74.59%
    of the parameters; here on keras.applications' MobileNet, whose classifier is a 1×1 conv.
    The paper's 4,209,088 weights leave out that classifier's 1000 biases."""
    p = tfdistill.profile(keras.applications.MobileNet(weights=None))
    fc_macs, fc_params = 1024 * 1000, 1024 * 1000 + 1000
    total_macs = sum(v["macs"] for v in p.by_type.values())
    total_params = sum(v["params"] for v in p.by_type.values()) - 1000
    assert total_params == 4_209_088
    one_by_one = p.by_type["conv1x1"]
    assert (one_by_one["macs"] - fc_macs) / total_macs == pytest.approx(0.9486, abs=5e-5)
    assert (one_by_one["params"] - fc_params) / total_params == pytest.approx(0.7459, abs=5e-5)
    assert p.share("depthwise")[0] == pytest.approx(0.0306, abs=5e-5)
    assert round(p.macs / 1e6) == 569
    assert "conv1x1" in p.table() and "(568.7M)" in p.table()


def test_profile_command(capsys):
    argv = flags.FLAGS(["tfdistill", "--input_shape=16,16,3", "--per_layer", "profile", "convnet"])
    try:
        assert cli._main(argv) == 0
        out = capsys.readouterr().out
        assert "s0b0_conv" in out and "input (16, 16, 3)" in out
        bad = flags.FLAGS(["tfdistill", '--model_kwargs={"depht": 2}', "profile", "convnet"])
        assert cli._main(bad) == 2
        assert "convnet does not take ['depht']" in capsys.readouterr().err
    finally:
        flags.FLAGS.unparse_flags()


def test_our_mobilenet_reproduces_table_2():
    p = tfdistill.profile(tfdistill.models.get("mobilenet_v1"))
    macs_share, _ = p.share("conv1x1")
    assert macs_share == pytest.approx(0.9486, abs=5e-5)
    assert p.share("dense")[0] == pytest.approx(0.0018, abs=5e-5)
    conv_dense_weights = sum(v["params"] for v in p.by_type.values()) - 1000  # paper: no FC bias
    assert p.by_type["conv1x1"]["params"] / conv_dense_weights == pytest.approx(0.7459, abs=5e-5)
    assert p.by_type["dense"]["params"] - 1000 == 1024 * 1000
