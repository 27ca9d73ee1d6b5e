"""LiteRT Quantizer (`litert-quantizer`, formerly `ai-edge-quantizer`) recipes on float `.tflite`
files: the one module that imports that package, lazily, so tfdistill runs without it."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

RECIPES = (
    "dynamic_wi8_afp32",
    "dynamic_wi4_afp32",
    "weight_only_wi8_afp32",
    "weight_only_wi4_afp32",
    "static_wi8_ai8",
    "static_wi8_ai16",
)
STATIC_RECIPES = ("static_wi8_ai8", "static_wi8_ai16")
SIGNATURE = "serving_default"
_PRESERVE_ALL = "Warning: Enabling `experimental_preserve_all_tensors`"
_MISSING = (
    "the LiteRT Quantizer is not installed: pip install tfdistill[litert-quantizer] "
    "(litert-quantizer {error})."
)


def check_recipe(recipe: str) -> None:
    """A one-line ValueError naming the valid recipes when `recipe` is not one."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r} is not one of {', '.join(map(repr, RECIPES))}.")


def _package() -> Any:
    """The `litert_quantizer` package, or an ImportError naming the extra to install."""
    try:
        import litert_quantizer
        from litert_quantizer import calibrator, quantizer, recipe  # noqa: F401
        from litert_quantizer.utils import qsv_utils, validation_utils  # noqa: F401
    except ImportError as error:
        raise ImportError(_MISSING.format(error=error)) from None
    return litert_quantizer


def with_signature(content: bytes) -> bytes:
    """`content` (a one-subgraph `.tflite` file) with a `serving_default` signature, which the
    quantizer's calibration and validation run by; files that have signatures pass as they are."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    if model.signatureDefs:
        return content
    graph = model.subgraphs[0]

    def tensor_map(name: str, index: int) -> Any:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, int(index)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE, 0
    signature.inputs = [tensor_map(f"input_{i}", t) for i, t in enumerate(graph.inputs)]
    signature.outputs = [tensor_map(f"output_{i}", t) for i, t in enumerate(graph.outputs)]
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _dataset(samples: Sequence[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Signature inputs of one-input models: each sample a (1, ...) array."""
    return {SIGNATURE: [{"input_0": np.asarray(s, np.float32)} for s in samples]}


def recipe_of(recipe: str, float_ops: Sequence[str] = ()) -> list[dict]:
    """The quantizer's recipe `recipe` (a list of JSON-like entries), with ops whose scope (output
    tensor name) is in `float_ops` left unquantized."""
    check_recipe(recipe)
    package = _package()
    entries = list(getattr(package.recipe, recipe)())
    entries += [
        {"regex": f"^{re.escape(op)};$", "operation": "*", "algorithm_key": "no_quantize"}
        for op in float_ops
    ]
    return entries


def calibrate(content: bytes, recipe: str, samples: Sequence[np.ndarray]) -> dict:
    """Each tensor's min and max over `samples` (each (1, *input_shape)) in the float file
    `content` (with a signature): the absolute range, as the converter's calibration takes,
    rather than the quantizer's default moving average, which clips rare large activations."""
    _package()
    from litert_quantizer import calibrator, recipe_manager
    from litert_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe_of(recipe))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _PRESERVE_ALL)
        calib = calibrator.Calibrator(bytearray(content), qsv_update_func=qsv_utils.min_max_update)
        calib.calibrate(_dataset(samples), manager)
    return calib.get_model_qsvs()


def quantize(
    content: bytes,
    recipe: str,
    calibration: dict | None = None,
    float_ops: Sequence[str] = (),
) -> tuple[bytes, Any]:
    """The float file `content` (with a signature) quantized with `recipe`, ops whose scope is in
    `float_ops` kept float, and the quantizer that did it (for `op_snr`); static recipes need
    `calibration` (from `calibrate`)."""
    package = _package()
    quantizer = package.Quantizer(bytearray(content), recipe_of(recipe, float_ops))
    if quantizer.need_calibration and calibration is None:
        raise ValueError(f"recipe {recipe!r} needs representative data to calibrate on.")
    result = quantizer.quantize(
        calibration if quantizer.need_calibration else None, enable_progress_report=False
    )
    return bytes(result.quantized_model), quantizer


def op_graph(content: bytes) -> list[tuple[str, list[str], list[str]]]:
    """The ops of `content`'s first subgraph in order: (scope, output names, input activation
    names), the scope being the output names joined by ';', as the quantizer names ops. The
    first is the quantizer's virtual input op, whose outputs are the model's inputs: kept
    float, the file takes float inputs."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]
    constant = {i for i, t in enumerate(graph.tensors) if model.buffers[t.buffer].data is not None}

    def name(index: int) -> str:
        raw = graph.tensors[index].name
        return raw.decode() if isinstance(raw, bytes) else raw

    inputs = [name(i) for i in graph.inputs]
    ops = [(";".join(inputs), inputs, [])]
    for op in graph.operators:
        outputs = [name(i) for i in op.outputs if i >= 0]
        inputs = [name(i) for i in op.inputs if i >= 0 and i not in constant]
        ops.append((";".join(outputs), outputs, inputs))
    return ops


__all__ = [
    "RECIPES",
    "STATIC_RECIPES",
    "calibrate",
    "check_recipe",
    "op_graph",
    "quantize",
    "recipe_of",
    "with_signature",
]
