"""Compression that combines with distillation.

- `prune_channels`: structured filter pruning (L1, BatchNorm γ or Taylor importance) into a
  smaller dense Keras 3 model; `prunable_groups`, `group_folds`, `kept_channels`.
- `budget`: a NetAdapt search that shrinks a model's channel groups to a latency budget.
- `prune`: magnitude pruning to a target sparsity with TFMOT, fine-tuned with distillation.
- `quantize_aware`: quantization-aware training with TFMOT, for int8 `.tflite` export.
- `StructuredSparsity`: network slimming (L1 on BatchNorm scales) and group lasso (L2 norms
  of filters) while training, so unimportant channels approach zero before they are cut.
- `to_tf_keras` / `to_keras`: the tf_keras twin TFMOT works on, and back.

`prune`, `quantize_aware` and the bridge need the optional extra: tensorflow-model-optimization
0.8 and tf_keras, `pip install "tfdistill[compress]"`.
"""

from __future__ import annotations

from tfdistill.compress import budget
from tfdistill.compress._tfmot import INSTALL_HINT, require_tfmot
from tfdistill.compress.bridge import register_tf_keras_twin, to_keras, to_tf_keras
from tfdistill.compress.channels import (
    CRITERIA,
    group_folds,
    kept_channels,
    prunable_groups,
    prune_channels,
)
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
    "budget",
    "StructuredSparsity",
    "expected_sparsity",
    "group_folds",
    "kept_channels",
    "kernel_sparsity",
    "overall_sparsity",
    "prune",
    "prunable_groups",
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
