"""Hinton knowledge distillation as a `keras.Model` you `compile()` and `fit()`."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfdistill import outputs as outputs_lib
from tfdistill.folding import folded_forward
from tfdistill.losses import (
    HardTargetLoss,
    LossLike,
    SoftTargetLoss,
    check_temperature,
    labeled_mask,
)

TEACHER_LOGITS = "teacher_logits"
INPUTS = "inputs"


def split_cached(x: Any) -> tuple[Any, tf.Tensor | None]:
    """Splits a cached-teacher batch `{"inputs": x, "teacher_logits": t}` into (x, t)."""
    if isinstance(x, dict) and TEACHER_LOGITS in x:
        return x[INPUTS], x[TEACHER_LOGITS]
    return x, None


def _single_output(model: keras.Model, role: str) -> Any:
    outputs = getattr(model, "outputs", None)
    if outputs is None:
        return None
    if len(outputs) != 1:
        raise ValueError(f"The {role} must have one output (class scores), it has {len(outputs)}.")
    return outputs[0]


def _check_models(student: keras.Model, teacher: keras.Model) -> None:
    for role, model in (("student", student), ("teacher", teacher)):
        if not isinstance(model, keras.Model):
            raise ValueError(f"The {role} must be a keras.Model, not {type(model).__name__}.")
    s_out, t_out = _single_output(student, "student"), _single_output(teacher, "teacher")
    if s_out is not None and t_out is not None:
        _check_class_counts(s_out.shape[-1], t_out.shape[-1])
    s_in, t_in = getattr(student, "inputs", None), getattr(teacher, "inputs", None)
    if s_in and t_in:
        s_shape, t_shape = tuple(s_in[0].shape[1:]), tuple(t_in[0].shape[1:])
        compatible = len(s_shape) == len(t_shape) and all(
            a is None or b is None or a == b for a, b in zip(s_shape, t_shape, strict=True)
        )
        if len(s_in) != len(t_in) or not compatible:
            raise ValueError(
                f"The student and teacher take different inputs: student {s_shape}, teacher "
                f"{t_shape}. Both must see the same images."
            )


def _check_class_counts(student_classes: int | None, teacher_classes: int | None) -> None:
    if student_classes is not None and teacher_classes is not None:
        if student_classes != teacher_classes:
            raise ValueError(
                f"The student predicts {student_classes} classes but the teacher predicts "
                f"{teacher_classes}; distillation needs the same classes."
            )


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    return float(alpha)


def _global_sum(values: tf.Tensor) -> tf.Tensor:
    """Sum over all replicas (identity outside tf.distribute)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


@keras.saving.register_keras_serializable(package="tfdistill")
class Distiller(keras.Model):
    """Trains `student` on hard labels and the frozen `teacher`'s soft targets.

    loss = alpha · CE(y, s) + (1 - alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the
    global batch. Inputs (B, ...) go to both models; both give (B, C) class scores. Labels are
    (B,) ints or (B, C) one-hot; a label of -1 (or an all-zero one-hot row) marks an unlabeled
    example, which only the soft term sees. Batches shaped `({"inputs": x, "teacher_logits": t},
    y)`, as made by `tfdistill.data.cache_teacher_outputs`, skip the teacher.

    `teacher_outputs` / `student_outputs`: "logits", "probabilities", or "auto" (a final softmax
    means probabilities, used as log-probabilities).
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        *,
        teacher_outputs: str = "auto",
        student_outputs: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_models(student, teacher)
        self._teacher_kind = outputs_lib.resolve_output_kind(
            teacher, teacher_outputs, "teacher_outputs"
        )
        self._student_kind = outputs_lib.resolve_output_kind(
            student, student_outputs, "student_outputs"
        )
        self.teacher_outputs = teacher_outputs
        self.student_outputs = student_outputs
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self._teacher_forward = folded_forward(teacher)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.alpha = 0.1
        self.temperature = 3.0
        if student.built and teacher.built:
            self.built = True

    def build(self, input_shape: Any = None) -> None:
        for model in (self.student, self.teacher):
            if not model.built and input_shape is not None:
                model.build(input_shape)
        self.built = True

    def compile(
        self,
        optimizer: Any = "adam",
        metrics: Any = None,
        student_loss_fn: LossLike = None,
        distillation_loss_fn: LossLike = None,
        alpha: float = 0.1,
        temperature: float = 3.0,
        **kwargs,
    ) -> None:
        """Same argument names as the keras.io distillation example.

        `alpha` weights the hard-label loss. `distillation_loss_fn`: "kl_divergence" (default),
        "categorical_crossentropy", a Loss or a callable; the temperature softmax and T² are
        applied whatever the form.
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "Distiller.compile takes student_loss_fn and distillation_loss_fn, not loss="
            )
        kwargs.pop("loss", None)
        self.alpha = check_alpha(alpha)
        self.temperature = check_temperature(temperature)
        self.hard_loss = HardTargetLoss(student_loss_fn)
        self.soft_loss = SoftTargetLoss(temperature, distillation_loss_fn)
        self._loss_fns = {
            "student_loss_fn": student_loss_fn,
            "distillation_loss_fn": distillation_loss_fn,
        }
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def get_compile_config(self) -> dict:
        config = super().get_compile_config()
        if not config:
            return config
        config.pop("loss", None)
        config.pop("loss_weights", None)
        config["alpha"] = self.alpha
        config["temperature"] = self.temperature
        for key, fn in self._loss_fns.items():
            config[key] = keras.saving.serialize_keras_object(fn)
        return config

    def compile_from_config(self, config: dict) -> None:
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.student.trainable_variables)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            student=keras.saving.serialize_keras_object(self.student),
            teacher=keras.saving.serialize_keras_object(self.teacher),
            teacher_outputs=self.teacher_outputs,
            student_outputs=self.student_outputs,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> Distiller:
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        return cls(student, teacher, **config)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        metrics = [self.loss_tracker, self.student_loss_tracker, self.distillation_loss_tracker]
        if self.compiled and self._compile_metrics is not None:
            metrics.append(self._compile_metrics)
        return metrics

    def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
        """The student's outputs, (B, C)."""
        inputs, _ = split_cached(inputs)
        return self.student(inputs, training=training)

    def teacher_logits(self, x: Any) -> tf.Tensor:
        """(B, C) float32 teacher logits, no gradient; the teacher runs in inference mode, with its
        BatchNorm folded into the preceding layers (`tfdistill.folding`)."""
        return tf.stop_gradient(outputs_lib.as_logits(self._teacher_forward(x), self._teacher_kind))

    def _loss_terms(
        self,
        y: Any,
        mask: tf.Tensor,
        student_logits: tf.Tensor,
        teacher_logits: tf.Tensor,
        sample_weight: Any,
    ) -> tuple[tf.Tensor, dict[str, tuple[tf.Tensor, tf.Tensor]], tf.Tensor]:
        """This replica's share of the global loss; (local mean, local weight) per logged term; and
        global batch / local batch, which turns a share into a value a Mean tracker can average."""
        weights = (
            tf.ones_like(student_logits[:, 0])
            if sample_weight is None
            else tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
        )
        hard_sum = tf.reduce_sum(weights * self.hard_loss.call(y, student_logits))
        soft_sum = tf.reduce_sum(weights * self.soft_loss.call(teacher_logits, student_logits))
        local_counts = tf.stack(
            [tf.cast(tf.shape(student_logits)[0], tf.float32), tf.reduce_sum(mask)]
        )
        global_counts = _global_sum(local_counts)
        alpha = self.alpha
        share = alpha * hard_sum / tf.maximum(global_counts[1], 1.0) + (
            1.0 - alpha
        ) * soft_sum / tf.maximum(global_counts[0], 1.0)
        n_local, labeled_local = local_counts[0], local_counts[1]
        logged = {
            "student_loss": (hard_sum / tf.maximum(labeled_local, 1.0), labeled_local),
            "distillation_loss": (soft_sum / tf.maximum(n_local, 1.0), n_local),
        }
        return share, logged, global_counts[0] / tf.maximum(n_local, 1.0)

    def _regularization(self) -> tf.Tensor:
        """The student's weight penalties (kernel_regularizer and the like), a scalar."""
        if not self.student.losses:
            return tf.constant(0.0)
        return tf.add_n([tf.cast(v, tf.float32) for v in self.student.losses])

    def _update_trackers(self, logged: dict[str, tuple[tf.Tensor, tf.Tensor]]) -> None:
        self.loss_tracker.update_state(logged["loss"][0], sample_weight=logged["loss"][1])
        self.student_loss_tracker.update_state(*logged["student_loss"])
        self.distillation_loss_tracker.update_state(*logged["distillation_loss"])

    def _metrics_update(
        self, y: Any, mask: tf.Tensor, student_logits: tf.Tensor, sample_weight: Any
    ) -> dict:
        """Compiled metrics on the labeled examples only."""
        keep = tf.reshape(tf.where(mask > 0), [-1])
        if sample_weight is not None:
            sample_weight = tf.gather(tf.reshape(sample_weight, [-1]), keep)
        return self.compute_metrics(
            None, tf.gather(y, keep), tf.gather(student_logits, keep), sample_weight=sample_weight
        )

    def _prepare(self, data: Any) -> tuple[Any, Any, Any, tf.Tensor, tf.Tensor]:
        """(x, y, sample_weight, labeled mask (B,), teacher logits (B, C)) of a batch."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached = split_cached(x)
        teacher_logits = self.teacher_logits(x) if cached is None else tf.cast(cached, tf.float32)
        num_classes = teacher_logits.shape[-1]
        return x, y, sample_weight, labeled_mask(y, num_classes), teacher_logits

    def _student_logits(self, x: Any, training: bool, num_classes: int | None) -> tf.Tensor:
        logits = outputs_lib.as_logits(self.student(x, training=training), self._student_kind)
        _check_class_counts(logits.shape[-1], num_classes)
        return logits

    def train_step(self, data: Any) -> dict:
        x, y, sample_weight, mask, teacher_logits = self._prepare(data)
        variables = self.student.trainable_variables
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            student_logits = self._student_logits(x, True, teacher_logits.shape[-1])
            share, logged, to_mean = self._loss_terms(
                y, mask, student_logits, teacher_logits, sample_weight
            )
            share = share + self._regularization() / replicas
            scaled = self.optimizer.scale_loss(share)
        logged["loss"] = (share * to_mean, logged["distillation_loss"][1])
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self._update_trackers(logged)
        return self._metrics_update(y, mask, student_logits, sample_weight)

    def test_step(self, data: Any) -> dict:
        """Logs the student's own loss (hard labels plus regularization) as `loss`."""
        x, y, sample_weight, mask, teacher_logits = self._prepare(data)
        student_logits = self._student_logits(x, False, teacher_logits.shape[-1])
        _, logged, _ = self._loss_terms(y, mask, student_logits, teacher_logits, sample_weight)
        own = logged["student_loss"][0] + self._regularization()
        logged["loss"] = (own, logged["student_loss"][1])
        self._update_trackers(logged)
        return self._metrics_update(y, mask, student_logits, sample_weight)
