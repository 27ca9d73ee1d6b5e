"""Teacher ensembles: the combined soft targets, and an ensemble as one Keras model.

`teacher_ensemble([t_1, ..., t_K], weights)` is a functional model whose output is the log of
the teachers' weighted mean probabilities (the ensemble's logits at T = 1): it is evaluated,
saved, exported and timed like any teacher, and the Distiller and the teacher-output cache
take it apart again (`members_of`) to combine the teachers at their own temperature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

KINDS = ("logits", "probabilities")


def ensemble_logits(
    members: tf.Tensor, weights: Sequence[float] | tf.Tensor, temperature: float = 1.0
) -> tf.Tensor:
    """(B, K, C) logits of K teachers -> (B, C) logits z whose temperature softmax is the
    ensemble's: softmax(z / T) = Σ_k w_k · softmax(t_k / T), z = T · log Σ_k w_k softmax(t_k / T)
    (a log-sum-exp over k). `weights` (K,) sum to 1. At T = 1, z is the log of the mean
    probabilities."""
    members = tf.cast(members, tf.float32) / temperature
    log_w = tf.math.log(tf.cast(tf.convert_to_tensor(weights), tf.float32))
    log_p = tf.nn.log_softmax(members, axis=-1) + log_w[tf.newaxis, :, tf.newaxis]
    return temperature * tf.reduce_logsumexp(log_p, axis=1)


def check_ensemble_weights(weights: Any, count: int) -> tuple[float, ...]:
    """`weights` (None: equal) as `count` floats >= 0 summing to 1, or a ValueError."""
    if weights is None:
        return tuple([1.0 / count] * count)
    values = list(weights) if isinstance(weights, (list, tuple)) else None
    if (
        values is None
        or len(values) != count
        or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in values)
        or min(values) < 0
        or sum(values) <= 0
    ):
        raise ValueError(
            f"ensemble_weights must be None or {count} numbers >= 0 with a positive sum, one "
            f"per teacher; got {weights!r}."
        )
    total = float(sum(values))
    return tuple(float(w) / total for w in values)


@keras.saving.register_keras_serializable(package="tfdistill")
class EnsembleMean(keras.layers.Layer):
    """[K tensors (B, C)] -> (B, C) log Σ_k w_k softmax(t_k): the ensemble's logits at T = 1.
    `kinds[k]` says whether input k is logits or probabilities (taken as log-probabilities).
    Computes in float32."""

    def __init__(self, ensemble_weights: Sequence[float], kinds: Sequence[str], **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.ensemble_weights = tuple(float(w) for w in ensemble_weights)
        self.kinds = tuple(kinds)
        if len(self.kinds) != len(self.ensemble_weights) or set(self.kinds) - set(KINDS):
            raise ValueError(f"kinds must be one of {KINDS} per teacher, got {self.kinds}.")

    def call(self, members: Sequence[tf.Tensor]) -> tf.Tensor:
        logits = [
            tf.math.log(tf.maximum(tf.cast(m, tf.float32), 1e-30))
            if kind == "probabilities"
            else tf.cast(m, tf.float32)
            for m, kind in zip(tf.nest.flatten(members), self.kinds, strict=True)
        ]
        return ensemble_logits(tf.stack(logits, axis=1), self.ensemble_weights)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        first = input_shape[0]
        return tuple(first[0] if isinstance(first[0], (list, tuple)) else first)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "ensemble_weights": list(self.ensemble_weights),
            "kinds": list(self.kinds),
        }


def teacher_ensemble(
    teachers: Sequence[keras.Model],
    weights: Sequence[float] | None = None,
    kinds: Sequence[str] | None = None,
    name: str = "teacher_ensemble",
) -> keras.Model:
    """One functional model x (B, H, W, C) -> (B, C) log of the teachers' weighted mean
    probabilities. `kinds`: each teacher's output, "logits" (default) or "probabilities"."""
    teachers = list(teachers)
    if len(teachers) < 2:
        raise ValueError(f"An ensemble needs at least two teachers, got {len(teachers)}.")
    inputs = keras.Input(teachers[0].inputs[0].shape[1:], name="images")
    combine = EnsembleMean(
        check_ensemble_weights(weights, len(teachers)),
        kinds or ["logits"] * len(teachers),
        name="ensemble_mean",
    )
    return keras.Model(inputs, combine([t(inputs) for t in teachers]), name=name)


def members_of(model: Any) -> tuple[list[keras.Model], tuple[float, ...]] | None:
    """The teachers and weights of a `teacher_ensemble` model, None for any other model."""
    layers = getattr(model, "layers", None)
    if not layers or not isinstance(layers[-1], EnsembleMean):
        return None
    teachers = [layer for layer in layers if isinstance(layer, keras.Model)]
    if len(teachers) != len(layers[-1].ensemble_weights):
        return None
    return teachers, layers[-1].ensemble_weights
