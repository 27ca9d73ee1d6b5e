"""The batch formats beyond a plain `(x, y[, sample_weight])`, their keys defined once.

- Cached teacher: `cache_teacher_outputs` (`tfdistill.data`) writes
  `({INPUTS: x, TEACHER_LOGITS: t}, y[, sample_weight])`; the Distiller skips the teacher.
- Two views: `({INPUTS: x_student, TEACHER_INPUTS: x_teacher}, y[, sample_weight])`, the same
  images (same crop) at each model's input size; the Distiller runs the student on the first
  and the teacher on the second.
- Teacher views (rows of a stream, not batches a model sees): `{INPUTS: images, VIEW_PARAMS:
  (N, K, 4) view parameters, VIEW_LOGITS: (N, K, C) the teacher's logits of each view}`; the
  stream draws one view per image and gives a cached-teacher batch
  (`tfdistill.data.teacher_views`).

The Distiller and the tf_keras fine-tuner read both with `split_views`. No
TensorFlow import: `tfdistill.data` stays light."""

from __future__ import annotations

from typing import Any, NamedTuple

TEACHER_LOGITS = "teacher_logits"
TEACHER_INPUTS = "teacher_inputs"
INPUTS = "inputs"
VIEW_PARAMS = "view_params"
VIEW_LOGITS = "view_logits"


class Views(NamedTuple):
    """A batch's inputs taken apart: what the student sees, and for the teacher either its own
    view or its cached logits (or neither: it sees `student`)."""

    student: Any  # (B, h, w, C) or the model's own input structure
    teacher: Any | None  # (B, H, W, C), the teacher's view
    teacher_logits: Any | None  # (B, C) float32 cached logits


def split_views(x: Any) -> Views:
    """`Views` of a batch's inputs: a cached-teacher dict, a two-view dict, or plain inputs."""
    if isinstance(x, dict) and (TEACHER_LOGITS in x or TEACHER_INPUTS in x):
        if INPUTS not in x:
            raise ValueError(f"A batch with {sorted(x)} needs the student's images as {INPUTS!r}.")
        return Views(x[INPUTS], x.get(TEACHER_INPUTS), x.get(TEACHER_LOGITS))
    return Views(x, None, None)


def split_cached(x: Any) -> tuple[Any, Any | None]:
    """(x, t) of a cached-teacher batch's inputs `{INPUTS: x, TEACHER_LOGITS: t}` (x (B, ...),
    t float32 (B, C) logits); (x, None) for plain inputs (a two-view batch gives its student
    view)."""
    views = split_views(x)
    return views.student, views.teacher_logits


def two_views(student_x: Any, teacher_x: Any) -> dict[str, Any]:
    """The inputs of a two-view batch: `{INPUTS: student_x, TEACHER_INPUTS: teacher_x}`."""
    return {INPUTS: student_x, TEACHER_INPUTS: teacher_x}
