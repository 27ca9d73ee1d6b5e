"""Compression that combines with distillation.

- `prune_channels`: structured L1 filter pruning into a smaller dense Keras 3 model.
- `prune`: magnitude pruning to a target sparsity with TFMOT, fine-tuned with distillation.
- `quantize_aware`: quantization-aware training with TFMOT, for int8 `.tflite` export.
- `StructuredSparsity`: network slimming (L1 on BatchNorm scales) and group lasso (L2 norms
  of filters) while training, so unimportant channels approach zero before they are cut.
- `to_tf_keras` / `to_keras`: the tf_keras twin TFMOT works on, and back.

`prune`, `quantize_aware` and the bridge need the optional extra: tensorflow-model-optimization
0.8 and tf_keras, `pip install "tfdistill[compress]"`.
"""

from __future__ import annotations

from tfdistill.compress._tfmot import INSTALL_HINT, require_tfmot
from tfdistill.compress.bridge import register_tf_keras_twin, to_keras, to_tf_keras
from tfdistill.compress.channels import CRITERIA, kept_channels, prune_channels
from tfdistill.compress.qat import quantize_aware, quantize_model
from tfdistill.compress.slimming import StructuredSparsity
from tfdistill.compress.sparsity import (
    expected_sparsity,
    kernel_sparsity,
    overall_sparsity,
    prune,
    pruning_end_step,
    pruning_frequency,
)

__all__ = [
    "CRITERIA",
    "INSTALL_HINT",
    "StructuredSparsity",
    "expected_sparsity",
    "kept_channels",
    "kernel_sparsity",
    "overall_sparsity",
    "prune",
    "prune_channels",
    "pruning_end_step",
    "pruning_frequency",
    "quantize_aware",
    "quantize_model",
    "register_tf_keras_twin",
    "require_tfmot",
    "to_keras",
    "to_tf_keras",
]
