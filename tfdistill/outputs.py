"""What a classifier's final tensor holds (logits or probabilities), and turning it into logits."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfdistill import _keras_internals

OUTPUT_KINDS = ("auto", "logits", "probabilities")
_EPSILON = 1e-7


def _check_output_kind(kind: str, what: str) -> None:
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"{what}={kind!r} is not one of {OUTPUT_KINDS}.")


def _final_layer(model: keras.Model) -> keras.layers.Layer | None:
    outputs = getattr(model, "outputs", None)
    if outputs:
        producer = _keras_internals.producer(outputs[0])
        if producer is not None:
            return producer
    layers = getattr(model, "layers", None)
    return layers[-1] if layers else None


def ends_in_softmax(model: keras.Model) -> bool:
    """True when the model's last layer is a softmax (a `Softmax` layer or a softmax activation)."""
    layer = _final_layer(model)
    while isinstance(layer, keras.Model):
        layer = _final_layer(layer)
    if layer is None:
        return False
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return activation is keras.activations.softmax or (
        getattr(activation, "__name__", None) == "softmax"
    )


def resolve_output_kind(model: keras.Model, kind: str, what: str) -> str:
    """Returns "logits" or "probabilities"; "auto" looks for a final softmax."""
    _check_output_kind(kind, what)
    if kind != "auto":
        return kind
    return "probabilities" if ends_in_softmax(model) else "logits"


def as_logits(outputs: tf.Tensor, kind: str) -> tf.Tensor:
    """(B, C) outputs of the given kind -> (B, C) float32 logits (log-probabilities for softmax)."""
    outputs = tf.cast(outputs, tf.float32)
    if kind == "probabilities":
        return tf.math.log(tf.clip_by_value(outputs, _EPSILON, 1.0))
    return outputs
