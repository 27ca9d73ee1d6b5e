"""LiteRT Quantizer recipes (`to_tflite(quantizer="litert")`): each recipe's file runs in LiteRT
with the integer tensors it promises and agrees with Keras; selective quantization meets its
tolerance where full int8 does not; bad recipe names, the missing package and the convert CLI."""

import sys

import keras
import numpy as np
import pytest
from absl import flags

pytest.importorskip("litert_quantizer")

from tfdistill import cli, report  # noqa: E402
from tfdistill.export import (  # noqa: E402
    RECIPES,
    evaluate_tflite,
    selective_quantize,
    to_tflite,
)
from tfdistill.export.interpreter import litert_interpreter  # noqa: E402
from tfdistill.run import delivery  # noqa: E402

RNG = np.random.default_rng(0)
PIXELS = (RNG.random((64, 8, 8, 1)) * 16).astype("float32")  # digits-like raw pixels


@pytest.fixture(scope="module")
def convnet():
    """A tiny digits-shaped classifier: rescaling, a 3×3 convolution, pooling, 10 logits."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Rescaling(1 / 16),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


# recipe: (input dtype, activation dtype that must appear, float32 tensors allowed,
#          least top-1 agreement with Keras, largest max |Δ| / max |Keras logit|).
# Measured on this model and data: agreement 1.0 for all four, relative errors 0.008, 0.011,
# 0.006 and 0.127; the bounds leave 3-4× room (0.9 agreement for int4). int8 weights round by
# 1/254 of each channel's range and int8 activations by 1/255 of each tensor's through three
# ops (~1%); int16 activations leave only the weights' rounding; int4 weights step by 1/14 of
# each channel's range (~13%).
EXPECTED = {
    "dynamic_wi8_afp32": (np.float32, np.int8, True, 0.95, 0.03),
    "static_wi8_ai8": (np.int8, np.int8, False, 0.95, 0.04),
    "static_wi8_ai16": (np.int16, np.int16, False, 0.95, 0.02),
    "weight_only_wi4_afp32": (np.float32, np.int8, True, 0.9, 0.35),
}


@pytest.mark.parametrize("recipe", list(EXPECTED))
def test_recipe_runs_in_litert_with_its_dtypes_and_agrees_with_keras(convnet, recipe, tmp_path):
    path = to_tflite(
        convnet,
        tmp_path / f"{recipe}.tflite",
        quantizer="litert",
        recipe=recipe,
        representative_data=PIXELS[:32],
    )
    interpreter = litert_interpreter(path)
    input_dtype, activation, floats, agreement, rel_error = EXPECTED[recipe]
    assert interpreter.get_input_details()[0]["dtype"] == input_dtype
    dtypes = {np.dtype(t["dtype"]).type for t in interpreter.get_tensor_details()}
    assert activation in dtypes and (np.float32 in dtypes) == floats
    checked = evaluate_tflite(path, PIXELS, reference=convnet)
    assert checked.agreement >= agreement
    assert checked.max_rel_error <= rel_error


def test_weight_only_int4_stores_4_bit_weights(convnet, tmp_path):
    sizes = {
        recipe: to_tflite(convnet, tmp_path / f"{recipe}.tflite", quantizer="litert", recipe=recipe)
        .stat()
        .st_size
        for recipe in ("weight_only_wi8_afp32", "weight_only_wi4_afp32")
    }
    weights = sum(w.size for w in convnet.get_weights() if w.ndim > 1)  # kernels: 8·9 + 8·10
    assert sizes["weight_only_wi8_afp32"] - sizes["weight_only_wi4_afp32"] >= weights // 2 - 8


def wide_range_model() -> keras.Model:
    """8 features -> Dense(32) -> "wide" Dense(16) whose first unit is scaled by 1e4 -> "post"
    Dense(16) that ignores that unit -> 4 logits (ReLUs between). One int8 scale for the wide
    tensor steps by ~1e4 / 255, rounding its 15 small units to 0: int8 of that tensor, the
    output of "wide" and the input of "post", breaks accuracy; the other tensors quantize well."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(32, activation="relu", name="pre")(inputs)
    wide = keras.layers.Dense(16, activation="relu", name="wide")(hidden)
    hidden = keras.layers.Dense(16, activation="relu", name="post")(wide)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(hidden))
    kernel, bias = model.get_layer("wide").get_weights()
    kernel[:, 0] *= 1e4
    model.get_layer("wide").set_weights([kernel, bias])
    kernel, bias = model.get_layer("post").get_weights()
    kernel[0] = 0
    model.get_layer("post").set_weights([kernel, bias])
    return model


def test_selective_quantization_meets_the_tolerance_full_int8_misses(tmp_path):
    model = wide_range_model()
    x = np.random.default_rng(0).normal(size=(300, 8)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), -1)
    found = selective_quantize(
        model, tmp_path / "selective.tflite", x, y, 1.0, representative_data=x[:100]
    )
    assert found.float_accuracy == 1.0 and found.full_accuracy < 0.5
    assert found.met and found.accuracy >= 0.99
    assert len(found.float_ops) == 2, found.float_ops
    checked = evaluate_tflite(found.path, x, y, reference=model)
    assert checked.accuracy == found.accuracy
    interpreter = litert_interpreter(found.path)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8  # "pre" stayed int8
    assert np.float32 in {np.dtype(t["dtype"]).type for t in interpreter.get_tensor_details()}


def test_selective_entry_costs_and_report_line():
    rows = [
        {"model": "s", "quantization": q, "file": f, "size_bytes": n}
        for q, f, n in (
            ("none", "s_fp32", 4096),
            ("int8", "s_int8", 1024),
            ("selective", "s_sel", 2048),
        )
    ]
    timings = {
        "litert": {f: {"avg_us": us} for f, us in (("s_fp32", 30), ("s_int8", 10), ("s_sel", 20))}
    }
    entry = {
        "model": "s",
        "recipe": "static_wi8_ai8",
        "max_drop": 0.5,
        "float_accuracy": 0.9,
        "full_accuracy": 0.5,
        "accuracy": 0.898,
        "float_ops": ["wide;"],
        "met": True,
        "quantizations": 4,
        "file": "s_sel",
    }
    (costed,) = delivery.selective_costs([entry], rows, timings)
    assert costed["cost"]["selective"] == {"file": "s_sel", "size_bytes": 2048, "latency_us": 20}
    assert (
        costed["cost"]["int8"]["latency_us"] == 10 and costed["cost"]["fp32"]["size_bytes"] == 4096
    )
    line = report.selective_line(costed)
    assert "1 op(s) kept in float (`wide;`)" in line and "0.20 points, within" in line
    assert "selective 2.0 KB 20.0 µs" in line and "int8 1.0 KB 10.0 µs" in line


def test_bad_recipe_and_quantizer_are_one_line_errors_naming_the_choices(convnet, tmp_path):
    with pytest.raises(ValueError) as error:
        to_tflite(convnet, tmp_path / "a.tflite", quantizer="litert", recipe="int3")
    message = str(error.value)
    assert "\n" not in message and all(repr(name) in message for name in RECIPES)
    with pytest.raises(ValueError, match="'converter', 'litert'"):
        to_tflite(convnet, tmp_path / "a.tflite", quantizer="aqt")
    with pytest.raises(ValueError, match="static_wi8_ai16"):
        selective_quantize(convnet, tmp_path / "a.tflite", PIXELS, None, 1.0,
                           representative_data=PIXELS, recipe="int3")  # fmt: skip
    with pytest.raises(ValueError, match="needs representative data"):
        to_tflite(convnet, tmp_path / "a.tflite", quantizer="litert", recipe="static_wi8_ai8")
    assert not (tmp_path / "a.tflite").exists()


def test_missing_package_names_the_extra(convnet, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_quantizer", None)
    with pytest.raises(ImportError, match=r"pip install tfdistill\[litert-quantizer\]"):
        to_tflite(convnet, tmp_path / "a.tflite", quantizer="litert", recipe="dynamic_wi8_afp32")


def test_cli_convert_with_a_recipe(convnet, tmp_path, capsys):
    saved = tmp_path / "student.keras"
    convnet.save(saved)
    target = tmp_path / "student_static_wi8_ai16.tflite"
    argv = flags.FLAGS(
        ["tfdistill", "--quantizer=litert", "--recipe=static_wi8_ai16", "--calibration_samples=8"]
    )
    try:
        assert cli._main([*argv, "convert", str(saved)]) == 0
        assert f"{target} (" in capsys.readouterr().out
        assert litert_interpreter(target).get_input_details()[0]["dtype"] == np.int16
        flags.FLAGS.unparse_flags()
        argv = flags.FLAGS(["tfdistill", "--quantizer=litert", "--recipe=int3"])
        assert cli._main([*argv, "convert", str(saved)]) == 2
        assert "'int3' is not one of ['dynamic_wi8_afp32'" in capsys.readouterr().err
    finally:
        flags.FLAGS.unparse_flags()


def test_run_exports_recipes_and_a_selective_file_with_its_costs(tmp_path):
    from tfdistill import data
    from tfdistill.run import RunConfig

    digits = data.load("digits")
    keras.utils.set_random_seed(0)
    student = keras.Sequential(
        [keras.Input(digits.input_shape), keras.layers.Rescaling(1 / 16),
         keras.layers.AveragePooling2D(4), keras.layers.Flatten(), keras.layers.Dense(10)]
    )  # fmt: skip
    student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    config = RunConfig(out=str(tmp_path), max_accuracy_drop=0.0)
    plan = [delivery.Export("s", student, ("none", "static_wi8_ai16"), selective=True)]
    rows = delivery.export(config, digits, plan, tmp_path)
    assert [(r["file"], r["quantizer"]) for r in rows] == [
        ("s_fp32.tflite", "converter"),
        ("s_static_wi8_ai16.tflite", "litert"),
    ]
    extra, (entry,) = delivery.selective(config, digits, plan, tmp_path)
    assert entry["model"] == "s" and entry["met"] == (entry["accuracy"] >= entry["float_accuracy"])
    assert [r["file"] for r in extra] == ([entry["file"]] if entry["float_ops"] else [])
    timings = {"litert": {r["file"]: {"avg_us": 1.0} for r in rows + extra}}
    (costed,) = delivery.selective_costs([entry], rows + extra, timings)
    assert costed["cost"]["fp32"]["file"] == "s_fp32.tflite" and costed["cost"]["int8"] is None
    assert report.selective_line(costed).startswith("Selective quantization of s (static_wi8_ai8")
