"""Export to phones: `.tflite` files with builtin ops only, and checking them in LiteRT.

`to_tflite(model, path, quantization=...)` converts a Keras model ("none", "float16",
"dynamic", "int8", "int16x8"); `evaluate_tflite(path, x, y, reference=model)` runs the file
and measures its accuracy and its agreement with the Keras model; `file_size(path)` gives the
raw and gzipped sizes (what a pruned model's zeros save in a compressed download).
"""

from tfdistill.export.evaluate import TFLiteEvaluation, evaluate_tflite
from tfdistill.export.size import FileSize, file_size
from tfdistill.export.tflite import (
    QUANTIZATIONS,
    inference_function,
    is_quantization_aware,
    to_tflite,
)

__all__ = [
    "QUANTIZATIONS",
    "FileSize",
    "TFLiteEvaluation",
    "evaluate_tflite",
    "file_size",
    "inference_function",
    "is_quantization_aware",
    "to_tflite",
]
