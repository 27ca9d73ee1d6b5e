"""Keras models to `.tflite` files with builtin ops only, in five precision modes."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfdistill import _keras_internals
from tfdistill.artifacts import write_atomic
from tfdistill.export import litert_quantizer

QUANTIZATIONS = ("none", "float16", "dynamic", "int8", "int16x8")
QUANTIZERS = ("converter", "litert")
_NEEDS_CALIBRATION = ("int8", "int16x8")
_UNSUPPORTED_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")
_OP_LIST = re.compile(r"^(TF Select ops|Custom ops): (.+)$", re.MULTILINE)


def _check(quantization: str, int8_io: bool, num_calibration_samples: int) -> None:
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"quantization={quantization!r} is not one of {', '.join(map(repr, QUANTIZATIONS))}."
        )
    if int8_io and quantization != "int8":
        raise ValueError(f'int8_io=True needs quantization="int8", got {quantization!r}.')
    if num_calibration_samples < 1:
        raise ValueError(f"num_calibration_samples must be >= 1, got {num_calibration_samples}.")


def _check_quantizer(quantizer: str, recipe: str | None, quantization: str, plain: bool) -> None:
    if quantizer not in QUANTIZERS:
        raise ValueError(
            f"quantizer={quantizer!r} is not one of {', '.join(map(repr, QUANTIZERS))}."
        )
    if quantizer == "converter":
        if recipe is not None:
            raise ValueError(f'recipe={recipe!r} needs quantizer="litert".')
        return
    if recipe is None:
        choices = ", ".join(map(repr, litert_quantizer.RECIPES))
        raise ValueError(f'quantizer="litert" needs recipe=, one of {choices}.')
    litert_quantizer.check_recipe(recipe)
    if quantization != "none" or not plain:
        raise ValueError(
            'quantizer="litert" quantizes the float32 file: leave quantization="none", '
            "int8_io and sparsity off."
        )


def _calibrate(converter: Any, quantization: str, samples: list) -> None:
    """Full-integer `quantization` ("int8" or "int16x8") calibrated on `samples`, one (1, ...)
    array each."""
    converter.representative_dataset = lambda: ([sample] for sample in samples)
    integer = (
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        if quantization == "int8"
        else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    )
    converter.target_spec.supported_ops = [integer, tf.lite.OpsSet.TFLITE_BUILTINS]


def to_tflite(
    model: Any,
    path: str | os.PathLike,
    *,
    quantization: str = "none",
    representative_data: Any = None,
    num_calibration_samples: int = 200,
    int8_io: bool = False,
    sparsity: bool = False,
    input_shape: Sequence[int] | None = None,
    quantizer: str = "converter",
    recipe: str | None = None,
    keep_float: Sequence[str] = (),
) -> Path:
    """Converts `model` to a `.tflite` file at `path` and returns the path.

    The file's signature takes one (1, *input_shape) tensor, a static batch of 1, and the model
    is called with `training=False`. Only TFLite builtin ops are allowed: a model that would
    need TF (Flex) or custom ops raises a `ValueError` naming them.

    `model` is a Keras 3 model, a tf_keras model (the compression stage's pruned or
    quantization-aware models, covered by its tests) or any callable on a batch of inputs;
    `input_shape` (one example, no batch axis) is read from `model.inputs` unless given.
    `model` may also be the concrete function `inference_function` returns: trace once, then
    export in several modes without tracing again.

    `quantization`:
      - "none": float32.
      - "float16": weights stored as float16, computed in float32.
      - "dynamic": int8 weights (of tensors with at least 1024 elements), float activations
        quantized on the fly; no calibration.
      - "int8": int8 weights and activations (full integer), calibrated on
        `representative_data`; with `int8_io` the input and output tensors are int8 as well,
        otherwise float32.
        A quantization-aware model (`tfdistill.compress.quantize_aware`) keeps its trained
        ranges and needs no `representative_data`; given, it only calibrates tensors the
        training left in float.
      - "int16x8": int16 activations, int8 weights, calibrated like "int8".

    `representative_data` is a (N, *input_shape) array, or a `tf.data.Dataset` of such
    batches or of (x, y) batches; the first `num_calibration_samples` examples are used, one at
    a time; the other modes ignore it. `sparsity` also stores weights that are mostly zero
    (pruned) in a sparse format.

    `quantizer="litert"` converts to float32 and then quantizes the file with the LiteRT
    Quantizer's `recipe` (`litert_quantizer.RECIPES`; the static ones calibrated on
    `representative_data` like "int8"), ops whose scope (output tensor names joined by ';') is in
    `keep_float` left float; it needs the `litert-quantizer` extra.

    The file is written to a temporary name beside `path` and renamed, so an existing file at
    `path` is only replaced by a complete conversion.
    """
    _check(quantization, int8_io, num_calibration_samples)
    _check_quantizer(quantizer, recipe, quantization, not (int8_io or sparsity))
    function = inference_function(model, input_shape)
    if quantizer == "litert":
        content = _litert(
            function, recipe, representative_data, num_calibration_samples, keep_float
        )
    else:
        content = _converted(
            function, quantization, representative_data, num_calibration_samples, int8_io, sparsity
        )
    return write_atomic(path, lambda f: f.write(content), mode="wb")


def _converted(
    function: tf.types.experimental.ConcreteFunction,
    quantization: str,
    representative_data: Any,
    num_calibration_samples: int,
    int8_io: bool,
    sparsity: bool,
) -> bytes:
    """The converter's `.tflite` file of `function` in `quantization` (see `to_tflite`)."""
    trained_ranges = quantization == "int8" and is_quantization_aware(function)
    if quantization in _NEEDS_CALIBRATION and representative_data is None and not trained_ranges:
        raise ValueError(
            f'quantization="{quantization}" needs representative data: pass '
            "representative_data=, e.g. a few hundred training images of shape (N, H, W, C)."
        )
    # No trackable object: the converter then freezes the captured variables into constants
    # (and fuses BatchNorm); given the model, it keeps them as READ_VARIABLE ops. That path
    # logs a deprecation warning on every call, which _quiet_trackable_warning drops.
    with _quiet_trackable_warning():
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    optimizations = []
    if quantization != "none":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparsity:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization in _NEEDS_CALIBRATION and not (
        trained_ranges and representative_data is None
    ):
        (spec,) = tf.nest.flatten(function.structured_input_signature)
        samples = _calibration_samples(
            representative_data, tuple(spec.shape[1:]), spec.dtype, num_calibration_samples
        )
        _calibrate(converter, quantization, samples)
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return _convert(converter)


def float_content(function: tf.types.experimental.ConcreteFunction) -> bytes:
    """The float32 `.tflite` file of `function` (one (1, ...) input), with a signature."""
    with _quiet_trackable_warning():
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return litert_quantizer.with_signature(_convert(converter))


def calibration_samples(
    function: tf.types.experimental.ConcreteFunction, data: Any, limit: int
) -> list[np.ndarray]:
    """Up to `limit` examples of `data` (as `to_tflite`'s `representative_data`), each a (1, ...)
    array of `function`'s input dtype."""
    (spec,) = tf.nest.flatten(function.structured_input_signature)
    return _calibration_samples(data, tuple(spec.shape[1:]), spec.dtype, limit)


def _litert(
    function: tf.types.experimental.ConcreteFunction,
    recipe: str,
    data: Any,
    limit: int,
    keep_float: Sequence[str],
) -> bytes:
    """`function` as a float32 file quantized by the LiteRT Quantizer's `recipe`."""
    content = float_content(function)
    calibration = None
    if recipe in litert_quantizer.STATIC_RECIPES:
        if data is None:
            raise ValueError(
                f'recipe="{recipe}" needs representative data: pass representative_data=, e.g. '
                "a few hundred training images of shape (N, H, W, C)."
            )
        samples = calibration_samples(function, data, limit)
        calibration = litert_quantizer.calibrate(content, recipe, samples)
    quantized, _ = litert_quantizer.quantize(content, recipe, calibration, keep_float)
    return quantized


def inference_function(
    model: Any, input_shape: Sequence[int] | None = None
) -> tf.types.experimental.ConcreteFunction:
    """The function `to_tflite` converts: one (1, *input_shape) input -> `model`'s outputs,
    called with `training=False` where the model takes that argument.

    `input_shape` (one example, no batch axis) and the dtype are read from `model.inputs`;
    without them, give `input_shape` (the dtype is then float32). A concrete function is
    returned as it is, after checking that it takes one input with a static batch of 1.
    """
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        return _checked_function(model, input_shape)
    shape, dtype = _input_spec(model, input_shape)
    forward = _split_lowering_folded(model)
    training = {"training": False} if forward is None and accepts_training(model) else {}
    forward = forward or model

    @tf.function(input_signature=[tf.TensorSpec((1, *shape), dtype, name="input")])
    def serve(x: tf.Tensor) -> Any:
        return forward(x, **training)

    return serve.get_concrete_function()


def _split_lowering_folded(model: Any) -> Any:
    """`folded_forward(model)` for a Keras model with split-lowered grouped convolutions
    (`SplitGroupedConv2D`), else None. Their BatchNorms follow a CONCATENATION, where the
    converter cannot fold them; folded here, each per-group CONV_2D takes its share of the bias,
    as the native grouped CONV_2D takes all of it."""
    import keras

    from tfdistill.folding import folded_forward
    from tfdistill.models.layers import SplitGroupedConv2D

    if not isinstance(model, keras.Model):
        return None
    if not any(
        isinstance(layer, SplitGroupedConv2D) and layer.groups > 1
        for layer in _keras_internals.flatten_layers(model)
    ):
        return None
    return folded_forward(model)


def is_quantization_aware(function: tf.types.experimental.ConcreteFunction) -> bool:
    """Whether the traced model holds fake-quantization ops (a TFMOT quantization-aware model),
    whose learned ranges the int8 conversion keeps."""
    return any(op.type.startswith("FakeQuant") for op in function.graph.get_operations())


def accepts_training(model: Any) -> bool:
    """Whether `model(x, training=False)` is a valid call (Keras models, both kinds)."""
    target = getattr(model, "call", model)
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "training" or p.kind is p.VAR_KEYWORD for p in parameters)


def _input_spec(model: Any, input_shape: Sequence[int] | None) -> tuple[tuple[int, ...], tf.DType]:
    """The shape of one example (no batch axis) and the dtype of the model's single input."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1:
        raise ValueError(f"to_tflite exports single-input models; this one has {len(inputs)}.")
    dtype = tf.as_dtype(inputs[0].dtype) if inputs else tf.float32
    if input_shape is None:
        if not inputs:
            raise ValueError(
                "cannot tell the model's input shape: it has no `inputs`; pass input_shape=, "
                "the shape of one example without the batch axis."
            )
        input_shape = tuple(inputs[0].shape)[1:]
    shape = tuple(input_shape)
    if not shape or any(d is None or int(d) < 1 for d in shape):
        raise ValueError(
            f"the input shape of one example must be fully known, got {shape}; "
            "pass input_shape=, e.g. (32, 32, 3)."
        )
    return tuple(int(d) for d in shape), dtype


def _checked_function(
    function: tf.types.experimental.ConcreteFunction, input_shape: Sequence[int] | None
) -> tf.types.experimental.ConcreteFunction:
    specs = tf.nest.flatten(function.structured_input_signature)
    if len(specs) != 1:
        raise ValueError(f"to_tflite exports functions of one input; this one has {len(specs)}.")
    shape = specs[0].shape
    if not shape.is_fully_defined() or shape.rank < 2 or shape[0] != 1:
        raise ValueError(
            f"the function's input must have a static shape (1, ...), got {tuple(shape)}; "
            "make one with tfdistill.export.inference_function(model)."
        )
    if input_shape is not None and tuple(input_shape) != tuple(shape[1:]):
        raise ValueError(
            f"input_shape={tuple(input_shape)} differs from the function's {tuple(shape[1:])}."
        )
    return function


class _TrackableWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "trackable_obj" not in record.getMessage()


@contextlib.contextmanager
def _quiet_trackable_warning() -> Iterator[None]:
    logger, quiet = logging.getLogger("absl"), _TrackableWarningFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _batches(data: Any) -> Iterator[np.ndarray]:
    """The x arrays of an array, a `tf.data.Dataset` or an iterable of batches or (x, y)."""
    if isinstance(data, np.ndarray | tf.Tensor):
        yield np.asarray(data)
        return
    if isinstance(data, tf.data.Dataset):
        data = data.as_numpy_iterator()
    if not isinstance(data, Iterable):
        raise ValueError(
            "representative_data must be an array of shape (N, ...), a tf.data.Dataset or an "
            f"iterable of batches, got {type(data).__name__}."
        )
    for element in data:
        if isinstance(element, tuple | list):
            element = element[0]
        if isinstance(element, dict):
            raise ValueError("representative_data yields dicts; give (x, y) tuples or x batches.")
        yield np.asarray(element)


def _calibration_samples(
    data: Any, shape: tuple[int, ...], dtype: tf.DType, limit: int
) -> list[np.ndarray]:
    """Up to `limit` examples of `data`, each a (1, *shape) array of the model's input dtype."""
    samples: list[np.ndarray] = []
    for batch in _batches(data):
        if batch.shape == shape:
            batch = batch[None]
        if batch.shape[1:] != shape:
            raise ValueError(
                f"representative_data has examples of shape {batch.shape[1:]}, but the model "
                f"takes {shape}."
            )
        need = limit - len(samples)
        samples.extend(
            batch[i : i + 1].astype(dtype.as_numpy_dtype) for i in range(min(need, len(batch)))
        )
        if len(samples) >= limit:
            break
    if not samples:
        raise ValueError("representative_data is empty; calibration needs at least one example.")
    return samples


def _convert(converter: tf.lite.TFLiteConverter) -> bytes:
    """Runs the converter; ops outside the builtin set become a `ValueError` that names them."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
            return converter.convert()
    except Exception as error:
        message = str(error)
        lists = {kind: names for kind, names in _OP_LIST.findall(message)}
        flex = _names(lists.get("TF Select ops", ""))
        custom = _names(lists.get("Custom ops", ""))
        unnamed = sorted(set(_UNSUPPORTED_OP.findall(message)) - set(flex) - set(custom))
        if not (flex or custom or unnamed):
            raise
        parts = []
        if flex or unnamed:
            parts.append(f"{', '.join(flex + unnamed)} would need TF (Flex) ops")
        if custom:
            parts.append(f"{', '.join(custom)} would need custom ops (Flex has no kernel for them)")
        raise ValueError(
            "the model uses TensorFlow ops that are not TFLite builtins: "
            + "; ".join(parts)
            + ". tfdistill exports builtin ops only and does not ship the Flex delegate; "
            "replace these ops in the model with builtin ones."
        ) from error


def _names(text: str) -> list[str]:
    return sorted(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


__all__ = [
    "QUANTIZATIONS",
    "QUANTIZERS",
    "calibration_samples",
    "float_content",
    "inference_function",
    "is_quantization_aware",
    "to_tflite",
]
