"""Fine-tuning a tf_keras (TFMOT-wrapped) student, with distillation from a Keras 3 teacher.

Imported only once tf_keras is known to be installed. The loss is the Distiller's: alpha · CE on
the labeled examples + (1 - alpha) · T² · KL of the soft targets on every example (without a
teacher, CE alone), plus the student's weight penalties, averaged over the global batch.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tf_keras

from tfdistill import outputs as outputs_lib
from tfdistill.distiller import global_sum, split_cached
from tfdistill.folding import folded_forward
from tfdistill.losses import HardTargetLoss, SoftTargetLoss, is_one_hot, labeled_mask


class FineTuner(tf_keras.Model):
    """Trains `student` (a tf_keras model, TFMOT wrappers allowed) on (x, y) batches; labels of
    -1 mark unlabeled examples. Batches from `tfdistill.data.cache_teacher_outputs` bring the
    teacher's (B, C) logits; otherwise a Keras 3 `teacher` runs in inference mode each step."""

    def __init__(
        self,
        student: Any,
        teacher: keras.Model | None = None,
        *,
        alpha: float = 0.1,
        temperature: float = 3.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.student = student
        self.alpha = alpha
        self.hard_loss = HardTargetLoss()
        self.soft_loss = SoftTargetLoss(temperature)
        self._teacher = None
        if teacher is not None:
            kind = outputs_lib.resolve_output_kind(teacher, "auto", "teacher_outputs")
            forward = folded_forward(teacher)
            self._teacher = lambda x: outputs_lib.as_logits(forward(x), kind)
        self.loss_tracker = tf_keras.metrics.Mean(name="loss")
        self.accuracy_tracker = tf_keras.metrics.Mean(name="accuracy")

    def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
        return self.student(inputs, training=training)

    @property
    def metrics(self) -> list:
        return [self.loss_tracker, self.accuracy_tracker]

    def _teacher_logits(self, x: Any, cached: Any) -> tf.Tensor | None:
        if cached is not None:
            return tf.cast(cached, tf.float32)
        if self._teacher is None:
            return None
        return tf.stop_gradient(tf.cast(self._teacher(x), tf.float32))

    def train_step(self, data: Any) -> dict:
        x, y, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
        x, cached = split_cached(x)
        teacher_logits = self._teacher_logits(x, cached)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = tf.cast(self.student(x, training=True), tf.float32)
            mask = labeled_mask(y, logits.shape[-1])
            weights = (
                tf.ones_like(mask)
                if sample_weight is None
                else tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            )
            counts = global_sum(
                tf.stack([tf.cast(tf.shape(logits)[0], tf.float32), tf.reduce_sum(mask)])
            )
            hard = tf.reduce_sum(weights * self.hard_loss.call(y, logits))
            if teacher_logits is None:
                share = hard / tf.maximum(counts[1], 1.0)
            else:
                soft = tf.reduce_sum(weights * self.soft_loss.call(teacher_logits, logits))
                share = self.alpha * hard / tf.maximum(counts[1], 1.0) + (
                    1.0 - self.alpha
                ) * soft / tf.maximum(counts[0], 1.0)
            if self.student.losses:
                share += tf.add_n(self.student.losses) / replicas
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


def as_dataset(data: Any, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Batches of (x, y[, w]): `data` is a batched `tf.data.Dataset`, or a tuple of arrays
    (x (N, ...), y (N,) or (N, C)[, w (N,)]), shuffled every epoch."""
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple | list) and len(data) in (2, 3):
        arrays = tuple(np.asarray(a) for a in data)
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"x, y (and sample weights) differ in length: {sorted(lengths)}.")
        return (
            tf.data.Dataset.from_tensor_slices(arrays)
            .shuffle(len(arrays[0]), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
        )
    raise ValueError(
        "data must be a tuple of arrays (x, y[, sample_weight]) or a batched tf.data.Dataset of "
        f"such tuples, not {type(data).__name__}."
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


__all__ = ["FineTuner", "as_dataset", "optimizer_from", "steps_per_epoch"]
