"""The cached-teacher batch format, defined once: `cache_teacher_outputs` (`tfdistill.data`)
writes `({INPUTS: x, TEACHER_LOGITS: t}, y[, sample_weight])`, and the Distiller and the
tf_keras fine-tuner read it with `split_cached`. No TensorFlow import: `tfdistill.data` stays
light."""

from __future__ import annotations

from typing import Any

TEACHER_LOGITS = "teacher_logits"
INPUTS = "inputs"


def split_cached(x: Any) -> tuple[Any, Any | None]:
    """(x, t) of a cached-teacher batch's inputs `{INPUTS: x, TEACHER_LOGITS: t}` (x (B, ...),
    t float32 (B, C) logits); (x, None) for plain inputs."""
    if isinstance(x, dict) and TEACHER_LOGITS in x:
        return x[INPUTS], x[TEACHER_LOGITS]
    return x, None
