"""Running a `.tflite` classifier in LiteRT, against labels and against the Keras model."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from tfdistill.export.interpreter import litert_interpreter
from tfdistill.export.tflite import accepts_training
from tfdistill.outputs import ends_in_softmax

_QUANTIZED = (np.int8, np.uint8, np.int16)
_REFERENCE_BATCH = 32  # eager activations of a 256 batch of a wide teacher took 0.8 GB


@dataclasses.dataclass(frozen=True, eq=False)
class TFLiteEvaluation:
    """What `evaluate_tflite` measured on N examples.

    `accuracy`: top-1 accuracy against the labels (None without labels).
    `agreement`: fraction of examples where the `.tflite` model's and the reference's top-1
    classes agree (None without a reference).
    `max_abs_error`: max |a - b| over all outputs, a the `.tflite` model's and b the
    reference's (None without a reference).
    `max_rel_error`: max |a - b| / max |b| (None without a reference).
    `outputs`: the `.tflite` model's float32 outputs, (N, C), dequantized.
    """

    accuracy: float | None
    agreement: float | None
    max_abs_error: float | None
    max_rel_error: float | None
    num_examples: int
    outputs: np.ndarray = dataclasses.field(repr=False)

    def to_dict(self) -> dict[str, float | int | None]:
        """The scalar fields, ready for JSON."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "outputs"
        }


def evaluate_tflite(
    path: str | os.PathLike,
    x: Any,
    y: Any = None,
    *,
    reference: Any = None,
    use_xnnpack: bool = True,
) -> TFLiteEvaluation:
    """Runs the `.tflite` classifier at `path` on `x`, one example at a time, in LiteRT.

    `x`: (N, *input_shape) float inputs, an array or any sequence read by slices (a
    `tfdistill.data.ImageStore`, `ModelInputs`); when the model's input tensor is int8 (or uint8,
    int16) they are quantized with its scale and zero point (an `x` of that dtype is taken as
    already quantized), and quantized outputs are dequantized the same way.
    `y`: (N,) integer labels (-1: unlabeled, skipped) or (N, C) one-hot.
    `reference`: the Keras model (Keras 3 or tf_keras, or any callable) the file was converted
    from, run on the same `x` in inference mode; its (N, C) outputs give the agreement and the
    errors. The relative error is max |a - b| / max |b| over all N × C outputs, a the file's
    and b the reference's. When one side ends in a softmax and the other does not, the other
    side's outputs go through a softmax first, so probabilities meet probabilities.
    `use_xnnpack=False` runs LiteRT's own kernels instead of the XNNPACK delegate.
    """
    interpreter = litert_interpreter(path, use_xnnpack=use_xnnpack)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"evaluate_tflite runs models with one input and one output; {os.fspath(path)} has "
            f"{len(inputs)} and {len(outputs)}."
        )
    input_detail, output_detail = inputs[0], outputs[0]
    example_shape = tuple(int(d) for d in input_detail["shape"][1:])
    if not (hasattr(x, "shape") and hasattr(x, "__getitem__") and hasattr(x, "__len__")):
        x = np.asarray(x)
    if len(x.shape) < 1 or x.shape[1:] != example_shape or len(x) == 0:
        raise ValueError(
            f"x has shape {x.shape}, but {os.fspath(path)} takes examples of shape "
            f"{example_shape} (input tensor {tuple(input_detail['shape'])}); give x as "
            f"(N, {', '.join(map(str, example_shape))}) with N >= 1."
        )
    if y is not None and len(y) != len(x):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels.")
    if input_detail["shape"][0] != 1:
        interpreter.resize_tensor_input(input_detail["index"], [1, *example_shape])
        interpreter.allocate_tensors()

    results = []
    for i in range(len(x)):
        interpreter.set_tensor(input_detail["index"], _quantize(x[i : i + 1], input_detail))
        interpreter.invoke()
        results.append(_dequantize(interpreter.get_tensor(output_detail["index"]), output_detail))
    lite = np.concatenate(results).reshape(len(x), -1)

    accuracy = agreement = max_abs = max_rel = None
    if y is not None:
        accuracy = _accuracy(lite, np.asarray(y))
    if reference is not None:
        ref = _reference_outputs(reference, x)
        if ref.shape != lite.shape:
            raise ValueError(
                f"the reference gives outputs of shape {ref.shape}, the .tflite model {lite.shape}."
            )
        agreement = float(np.mean(np.argmax(lite, -1) == np.argmax(ref, -1)))
        a, b = _like_with_like(lite, ref, _ends_in_softmax(reference, ref))
        max_abs = float(np.max(np.abs(a - b)))
        max_rel = max_abs / max(float(np.max(np.abs(b))), np.finfo(np.float32).tiny)
    return TFLiteEvaluation(accuracy, agreement, max_abs, max_rel, len(x), lite)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """A (1, ...) batch in the input tensor's dtype: float inputs are quantized when it is an
    integer type, inputs already of its dtype pass unchanged."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.type in _QUANTIZED and scale and x.dtype != dtype:
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float32) / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(out: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).type in _QUANTIZED and scale:
        return (out.astype(np.float32) - zero_point) * scale
    return out.astype(np.float32)


def _accuracy(outputs: np.ndarray, y: np.ndarray) -> float | None:
    if y.ndim == 2:
        labels = np.where(y.any(-1), np.argmax(y, -1), -1)
    else:
        labels = y.astype(np.int64)
    labeled = labels >= 0
    if not labeled.any():
        return None
    return float(np.mean(np.argmax(outputs[labeled], -1) == labels[labeled]))


def _reference_outputs(reference: Any, x: Any) -> np.ndarray:
    kwargs = {"training": False} if accepts_training(reference) else {}
    batches = [
        np.asarray(reference(x[i : i + _REFERENCE_BATCH], **kwargs), dtype=np.float32)
        for i in range(0, len(x), _REFERENCE_BATCH)
    ]
    return np.concatenate(batches).reshape(len(x), -1)


def _ends_in_softmax(reference: Any, outputs: np.ndarray) -> bool:
    """Whether the reference's outputs are probabilities: a final softmax layer (Keras 3) or,
    for other models, rows of non-negative numbers that sum to 1."""
    try:
        if ends_in_softmax(reference):
            return True
    except (AttributeError, TypeError):
        pass
    return _rows_are_probabilities(outputs, 1e-3)


def _rows_are_probabilities(outputs: np.ndarray, tolerance: float) -> bool:
    return bool(
        np.all(outputs >= -tolerance)
        and np.all(outputs <= 1 + tolerance)
        and np.allclose(outputs.sum(-1), 1.0, atol=tolerance * outputs.shape[-1])
    )


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _like_with_like(
    lite: np.ndarray, ref: np.ndarray, ref_is_probabilities: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The two (N, C) outputs as the same kind: probabilities if either side is."""
    lite_is_probabilities = _rows_are_probabilities(lite, 0.01)
    if ref_is_probabilities and not lite_is_probabilities:
        return _softmax(lite), ref
    if lite_is_probabilities and not ref_is_probabilities:
        return lite, _softmax(ref)
    return lite, ref
