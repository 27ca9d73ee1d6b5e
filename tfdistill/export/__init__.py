"""Export to phones: `.tflite` files with builtin ops only, and checking them in LiteRT.

`to_tflite(model, path, quantization=...)` converts a Keras model ("none", "float16",
"dynamic", "int8", "int16x8"); `evaluate_tflite(path, x, y, reference=model)` runs the file
and measures its accuracy and its agreement with the Keras model.
"""

from tfdistill.export.evaluate import TFLiteEvaluation, evaluate_tflite
from tfdistill.export.tflite import QUANTIZATIONS, inference_function, to_tflite

__all__ = [
    "QUANTIZATIONS",
    "TFLiteEvaluation",
    "evaluate_tflite",
    "inference_function",
    "to_tflite",
]
