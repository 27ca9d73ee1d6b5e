"""Export to phones: `.tflite` files with builtin ops only, and checking them in LiteRT.

`to_tflite(model, path, quantization=...)` converts a Keras model ("none", "float16",
"dynamic", "int8", "int16x8"), or with the LiteRT Quantizer's `RECIPES`
(`quantizer="litert", recipe=...`); `selective_quantize` keeps the ops that cost the most accuracy
in float; `evaluate_tflite(path, x, y, reference=model)` runs the file
and measures its accuracy and its agreement with the Keras model; `file_size(path)` gives the
raw and gzipped sizes (what a pruned model's zeros save in a compressed download).
"""

from tfdistill.export.evaluate import TFLiteEvaluation, evaluate_tflite
from tfdistill.export.litert_quantizer import RECIPES, STATIC_RECIPES
from tfdistill.export.selective import SelectiveResult, selective_quantize
from tfdistill.export.size import FileSize, file_size
from tfdistill.export.tflite import (
    QUANTIZATIONS,
    QUANTIZERS,
    inference_function,
    is_quantization_aware,
    to_tflite,
)

__all__ = [
    "QUANTIZATIONS",
    "QUANTIZERS",
    "RECIPES",
    "STATIC_RECIPES",
    "FileSize",
    "SelectiveResult",
    "TFLiteEvaluation",
    "evaluate_tflite",
    "file_size",
    "inference_function",
    "is_quantization_aware",
    "selective_quantize",
    "to_tflite",
]
