"""Fine-tuning a tf_keras (TFMOT-wrapped) student, with distillation from a Keras 3 teacher.

Imported only once tf_keras is known to be installed. The loss is the Distiller's: alpha · CE on
the labeled examples + (1 - alpha) · T² · KL of the soft targets on every example (without a
teacher, CE alone), plus the student's weight penalties, averaged over the global batch, plus a
`StructuredSparsity` penalty (`sparsity=`) of the twin's weights, which the bridge does not carry
over from the Keras 3 student.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tf_keras

from tfdistill import outputs as outputs_lib
from tfdistill.batches import INPUTS, TEACHER_LOGITS, split_views
from tfdistill.compress.slimming import StructuredSparsity
from tfdistill.data.teacher_cache import logits_function
from tfdistill.distiller import (
    check_alpha,
    check_class_counts,
    check_models,
    loss_share,
)
from tfdistill.ensemble import ensemble_logits, members_of
from tfdistill.losses import (
    HardTargetLoss,
    SoftTargetLoss,
    check_temperature,
    is_one_hot,
    labeled_mask,
)


class FineTuner(tf_keras.Model):
    """Trains `student` (a tf_keras model, TFMOT wrappers allowed) on (x, y) batches; labels of
    -1 mark unlabeled examples. `student_outputs` is "logits" or "probabilities" (a final
    softmax; its log is used as logits). Batches from `tfdistill.data.cache_teacher_outputs`
    bring the teacher's (B, C) logits; otherwise a Keras 3 `teacher` runs in inference mode.
    A `teacher_ensemble` model, or cached (B, K, C) logits of K teachers, give the mean of the
    teachers' probabilities at the temperature, as in the Distiller. `sparsity`: a
    `StructuredSparsity` whose penalty of the student's weights joins the loss each step
    (divided by the replicas, as `student.losses` are)."""

    def __init__(
        self,
        student: Any,
        teacher: keras.Model | None = None,
        *,
        alpha: float = 0.1,
        temperature: float = 3.0,
        student_outputs: str = "logits",
        sparsity: StructuredSparsity | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.student = student
        self._sparsity = sparsity if sparsity is not None and sparsity.enabled else None
        self.student_outputs = student_outputs
        self.alpha = alpha
        self.hard_loss = HardTargetLoss()
        self.soft_loss = SoftTargetLoss(temperature)
        members = None if teacher is None else members_of(teacher)
        self._weights = None if members is None else members[1]
        self._teacher = None if teacher is None else logits_function(teacher, "auto", None)
        self.loss_tracker = tf_keras.metrics.Mean(name="loss")
        self.accuracy_tracker = tf_keras.metrics.Mean(name="accuracy")
        if getattr(student, "built", False):
            self.built = True

    def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
        return self.student(inputs, training=training)

    @property
    def metrics(self) -> list:
        return [self.loss_tracker, self.accuracy_tracker]

    def _teacher_logits(self, x: Any, cached: Any) -> tf.Tensor | None:
        """(B, C); an ensemble's (B, K, C) combined at the temperature, as the Distiller does
        (cached ones with `teacher`'s weights, equal without it)."""
        if cached is not None:
            logits = tf.cast(cached, tf.float32)
        elif self._teacher is None:
            return None
        else:
            logits = tf.stop_gradient(tf.cast(self._teacher(x), tf.float32))
        if logits.shape.rank == 3:
            count = logits.shape[1]
            weights = self._weights or [1.0 / count] * count
            logits = ensemble_logits(logits, weights, self.soft_loss.temperature)
        return logits

    def train_step(self, data: Any) -> dict:
        x, y, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
        views = split_views(x)
        x = views.student
        seen = x if views.teacher is None else views.teacher
        teacher_logits = self._teacher_logits(seen, views.teacher_logits)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = self.student(x, training=True)
            logits = tf.cast(outputs_lib.as_logits(outputs, self.student_outputs), tf.float32)
            mask = labeled_mask(y, logits.shape[-1])
            weights = (
                tf.ones_like(mask)
                if sample_weight is None
                else tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            )
            soft = None
            if teacher_logits is not None:
                soft = self.soft_loss.call(teacher_logits, logits)
            rows = tf.shape(logits)[0]
            terms = loss_share(
                self.hard_loss.call(y, logits), soft, weights, mask, rows, self.alpha
            )
            share, counts = terms.share, terms.global_counts
            if self.student.losses:
                penalties = [tf.cast(v, tf.float32) for v in self.student.losses]
                share += tf.add_n(penalties) / replicas
            if self._sparsity is not None:
                share += self._sparsity.penalty(self.student) / replicas
        variables = self.student.trainable_variables
        gradients = tape.gradient(share, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        local = tf.cast(tf.shape(logits)[0], tf.float32)
        self.loss_tracker.update_state(share * counts[0] / tf.maximum(local, 1.0), local)
        correct = tf.cast(
            tf.equal(tf.argmax(logits, -1), tf.cast(_class_ids(y, logits.shape[-1]), tf.int64)),
            tf.float32,
        )
        self.accuracy_tracker.update_state(
            tf.reduce_sum(correct * mask) / tf.maximum(tf.reduce_sum(mask), 1.0),
            tf.reduce_sum(mask),
        )
        return {m.name: m.result() for m in self.metrics}


def _class_ids(y: tf.Tensor, num_classes: int) -> tf.Tensor:
    """(B,) class indices of sparse (B,)/(B, 1) or one-hot (B, C) labels."""
    y = tf.convert_to_tensor(y)
    if is_one_hot(y, num_classes):
        return tf.argmax(y, -1)
    return tf.reshape(tf.cast(y, tf.int64), [-1])


def as_dataset(
    data: Any, batch_size: int, student: keras.Model, seed: int | None = None
) -> tf.data.Dataset:
    """Batches of (x, y[, w]) for `student` (Keras 3): `data` is a batched `tf.data.Dataset`,
    or a tuple of arrays (x (N, ...), y (N,) or (N, C)[, w (N,)]), shuffled every epoch."""
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple | list) and len(data) in (2, 3):
        arrays = tuple(np.asarray(a) for a in data)
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"x, y (and sample weights) differ in length: {sorted(lengths)}.")
        check_labels(arrays[1], student.outputs[0].shape[-1])
        return (
            tf.data.Dataset.from_tensor_slices(arrays)
            .shuffle(len(arrays[0]), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
        )
    raise ValueError(
        "data must be a tuple of arrays (x, y[, sample_weight]) or a batched tf.data.Dataset of "
        f"such tuples, not {type(data).__name__}."
    )


def check_data(dataset: tf.data.Dataset, student: keras.Model, teacher: Any = None) -> None:
    """A ValueError, before any training, for batches the student cannot train on: not
    (x, y[, w]) tuples, unbatched, examples of another shape, or teacher logits (given or
    cached) for another number of classes than the student's (B, C) output."""
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            f"data must yield (x, y) or (x, y, sample_weight) batches; this dataset yields {spec}."
        )
    x_spec = spec[0]
    cached = None
    if isinstance(x_spec, dict) and TEACHER_LOGITS in x_spec:
        x_spec, cached = x_spec[INPUTS], x_spec[TEACHER_LOGITS]
    if not isinstance(x_spec, tf.TensorSpec):
        raise ValueError(f"data's x must be one tensor of images, got {x_spec}.")
    expected = tuple(student.inputs[0].shape)
    shape = tuple(x_spec.shape)
    if len(shape) != len(expected):
        raise ValueError(
            f"data yields x of shape {shape}, but the student takes batches of shape {expected}: "
            "batch the dataset (dataset.batch(32))."
        )
    pairs = zip(shape[1:], expected[1:], strict=True)
    if any(a is not None and b is not None and a != b for a, b in pairs):
        raise ValueError(f"data yields x of shape {shape}; the student takes {expected}.")
    classes = student.outputs[0].shape[-1]
    if cached is not None:
        check_class_counts(classes, cached.shape[-1])
    elif teacher is not None:
        check_models(student, teacher)


def check_labels(y: np.ndarray, num_classes: int) -> None:
    """Sparse labels must be -1 (unlabeled) or a class index below `num_classes`."""
    if y.ndim == 1 or (y.ndim == 2 and y.shape[-1] == 1):
        bad = (y < -1) | (y >= num_classes)
        if np.any(bad):
            raise ValueError(
                f"labels must be -1 (unlabeled) or in [0, {num_classes}); found "
                f"{sorted(set(np.asarray(y)[bad].ravel().tolist()))[:5]}."
            )


def steps_per_epoch(dataset: tf.data.Dataset) -> int:
    """Batches in one pass; a ValueError for an infinite or unknown-length dataset."""
    count = int(dataset.cardinality())
    if count == tf.data.INFINITE_CARDINALITY:
        raise ValueError("data repeats forever; give one epoch of batches (drop .repeat()).")
    if count == tf.data.UNKNOWN_CARDINALITY:
        count = sum(1 for _ in dataset)
    if count < 1:
        raise ValueError("data is empty.")
    return count


def optimizer_from(optimizer: Any) -> Any:
    """A tf_keras optimizer from a name ("adam", "sgd", ...) or a tf_keras optimizer."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(
            "optimizer is a Keras 3 optimizer, but TFMOT fine-tunes a tf_keras model; pass a "
            'name such as "adam" or a tf_keras.optimizers optimizer.'
        )
    try:
        return tf_keras.optimizers.get(optimizer)
    except ValueError as error:
        raise ValueError(
            f"optimizer={optimizer!r} is not a tf_keras optimizer or optimizer name ({error})."
        ) from error


@dataclasses.dataclass(frozen=True)
class Tuning:
    """A checked fine-tuning job: batches, their number per epoch, the student's output kind
    ("logits" or "probabilities"), the teacher, the loss weights, a tf_keras optimizer and the
    structured-sparsity penalty (or None)."""

    dataset: tf.data.Dataset
    steps_per_epoch: int
    student_outputs: str
    teacher: keras.Model | None
    alpha: float
    temperature: float
    optimizer: Any
    epochs: int
    verbose: int
    sparsity: StructuredSparsity | None = None

    def run(self, model: Any, callbacks: list | None = None) -> None:
        """Fits the tf_keras `model` (a TFMOT-wrapped twin of the student) with `FineTuner`."""
        fine_tuner = FineTuner(
            model,
            self.teacher,
            alpha=self.alpha,
            temperature=self.temperature,
            student_outputs=self.student_outputs,
            sparsity=self.sparsity,
        )
        fine_tuner.compile(optimizer=self.optimizer)
        fine_tuner.fit(self.dataset, epochs=self.epochs, verbose=self.verbose, callbacks=callbacks)


def prepare(
    student: keras.Model,
    data: Any,
    teacher: keras.Model | None,
    *,
    batch_size: int,
    seed: int | None,
    alpha: float,
    temperature: float,
    optimizer: Any,
    epochs: int,
    verbose: int,
    sparsity: StructuredSparsity | None = None,
) -> Tuning:
    """Checks everything about a fine-tuning job of the Keras 3 `student` before any model is
    built: the data against the student and teacher, alpha, temperature, the optimizer, the
    `sparsity` (a `StructuredSparsity` or None)."""
    if sparsity is not None and not isinstance(sparsity, StructuredSparsity):
        raise ValueError(
            f"sparsity must be a StructuredSparsity or None, not {type(sparsity).__name__}."
        )
    check_alpha(alpha)
    check_temperature(temperature)
    dataset = as_dataset(data, batch_size, student, seed)
    check_data(dataset, student, teacher)
    return Tuning(
        dataset=dataset,
        steps_per_epoch=steps_per_epoch(dataset),
        student_outputs=outputs_lib.resolve_output_kind(student, "auto", "student_outputs"),
        teacher=teacher,
        alpha=alpha,
        temperature=temperature,
        optimizer=optimizer_from(optimizer),
        epochs=epochs,
        verbose=verbose,
        sparsity=sparsity,
    )


__all__ = [
    "FineTuner",
    "Tuning",
    "as_dataset",
    "check_data",
    "check_labels",
    "optimizer_from",
    "prepare",
    "steps_per_epoch",
]
