"""Selective quantization: a LiteRT Quantizer recipe with the few ops that cost the most accuracy
kept in float, until the file is within a tolerance of the float32 file's accuracy."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tfdistill.artifacts import write_atomic
from tfdistill.export import litert_quantizer
from tfdistill.export.evaluate import evaluate_tflite
from tfdistill.export.tflite import calibration_samples, float_content, inference_function


@dataclasses.dataclass(frozen=True)
class SelectiveResult:
    """What `selective_quantize` found. Accuracies are fractions on the evaluation data;
    `max_drop` is in points (0.5: half a percentage point) below `float_accuracy`.

    `full_accuracy`: the recipe on every op; `accuracy`: the written file's; `float_ops`: the
    scopes (output tensor names joined by ';') of the ops kept in float, in the order they
    were chosen;
    `met`: whether the drop is within `max_drop`; `quantizations`: files quantized and
    run."""

    path: Path
    recipe: str
    max_drop: float
    float_accuracy: float
    full_accuracy: float
    accuracy: float
    float_ops: tuple[str, ...]
    met: bool
    quantizations: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; `path` as the file name."""
        fields = dataclasses.asdict(self)
        return {**fields, "path": self.path.name, "float_ops": list(self.float_ops)}


def drop_points(reference: float, accuracy: float) -> float:
    """How many percentage points `accuracy` (a fraction) is below `reference`."""
    return (reference - accuracy) * 100.0


def selective_quantize(
    model: Any,
    path: str | os.PathLike,
    x: Any,
    y: Any,
    max_drop: float,
    *,
    representative_data: Any,
    recipe: str = "static_wi8_ai8",
    num_calibration_samples: int = 200,
    max_float_ops: int | None = None,
    probe_samples: int = 32,
) -> SelectiveResult:
    """Quantizes `model` with the LiteRT Quantizer's `recipe` into `path`, keeping ops in float
    one at a time until the accuracy on `x` ((N, *input_shape)) and `y` ((N,) labels) is at most
    `max_drop` points below the float32 file's, or at least `max_float_ops` ops are float (then
    `met` is False and the last file is kept).

    Each round tries, for every op, the op and the ops that read its output in float (so that
    tensor stays float end to end; the first op is the model's input) and keeps the group whose
    file's (P, C) outputs on the first `probe_samples` calibration examples (of
    `representative_data`, as in `to_tflite`) are closest to the float32 file's (mean squared
    error)."""
    litert_quantizer.check_recipe(recipe)
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0 (points of accuracy), got {max_drop}.")
    function = inference_function(model)
    content = float_content(function)
    samples = calibration_samples(function, representative_data, num_calibration_samples)
    calibration = None
    if recipe in litert_quantizer.STATIC_RECIPES:
        calibration = litert_quantizer.calibrate(content, recipe, samples)
    probe = np.concatenate(samples[:probe_samples])
    groups = _groups(litert_quantizer.op_graph(content))
    limit = len(groups) + 1 if max_float_ops is None else max_float_ops
    reference = _accuracy(content, x, y)

    def quantized(float_ops: list[str]) -> bytes:
        return litert_quantizer.quantize(content, recipe, calibration, float_ops)[0]

    candidate = quantized([])
    full = accuracy = _accuracy(candidate, x, y)
    float_ops: list[str] = []
    tried = 1
    target = _outputs(content, probe)
    while drop_points(reference, accuracy) > max_drop and len(float_ops) < limit:
        errors = {
            group: _error(quantized(_union(float_ops, group)), probe, target)
            for group in groups
            if not set(group) <= set(float_ops)
        }
        if not errors:
            break
        tried += len(errors)
        float_ops = _union(float_ops, min(errors, key=errors.get))
        candidate = quantized(float_ops)
        accuracy = _accuracy(candidate, x, y)
    written = write_atomic(path, lambda f: f.write(candidate), mode="wb")
    met = drop_points(reference, accuracy) <= max_drop
    return SelectiveResult(
        written, recipe, max_drop, reference, full, accuracy, tuple(float_ops), met, tried
    )


def _groups(ops: list[tuple[str, list[str], list[str]]]) -> list[tuple[str, ...]]:
    """Per op, its scope and the scopes of the ops that read its outputs."""
    readers: dict[str, list[str]] = {}
    for scope, _, inputs in ops:
        for name in inputs:
            readers.setdefault(name, []).append(scope)
    groups = []
    for scope, outputs, _ in ops:
        group = [scope, *(reader for name in outputs for reader in readers.get(name, ()))]
        groups.append(tuple(dict.fromkeys(group)))
    return list(dict.fromkeys(groups))


def _union(chosen: list[str], group: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys([*chosen, *group]))


def _evaluation(content: bytes, x: Any, y: Any = None) -> Any:
    """`evaluate_tflite` of the `.tflite` file `content` on `x` (N, ...) and labels `y`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "candidate.tflite"
        path.write_bytes(content)
        return evaluate_tflite(path, x, y)


def _accuracy(content: bytes, x: Any, y: Any) -> float:
    accuracy = _evaluation(content, x, y).accuracy
    if accuracy is None:
        raise ValueError("selective quantization needs labels: y has none.")
    return accuracy


def _outputs(content: bytes, x: np.ndarray) -> np.ndarray:
    """The file's (N, C) float outputs on `x`."""
    return _evaluation(content, x).outputs


def _error(content: bytes, x: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.square(_outputs(content, x) - target)))


__all__ = ["SelectiveResult", "drop_points", "selective_quantize"]
