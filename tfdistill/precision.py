"""Mixed precision: the Keras dtype policies `tfdistill run --mixed_precision` takes, and
float32 copies of mixed-precision models for TFLite export and the tf_keras (TFMOT) stages.

Under "mixed_float16" or "mixed_bfloat16" the layers compute in 16 bits and keep float32
variables. The Distiller casts logits, features and input gradients to float32 before any
softmax, log-softmax, divergence or attention map, and scales the loss against float16
underflow (a `LossScaleOptimizer`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from tfdistill import _keras_internals

MIXED_PRECISION = ("none", "float16", "bfloat16")
_POLICIES = {"none": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
_REDUCED = ("float16", "bfloat16")


def policy_name(mixed_precision: str) -> str | None:
    """The Keras dtype policy of a `--mixed_precision` value; None for "none"."""
    if mixed_precision not in _POLICIES:
        raise ValueError(
            f"Unknown mixed_precision {mixed_precision!r}; choose from {list(MIXED_PRECISION)}."
        )
    return _POLICIES[mixed_precision]


@contextlib.contextmanager
def dtype_policy(name: str | None) -> Iterator[None]:
    """Models made inside are built under the global dtype policy `name` (None: the current
    one); the previous global policy is back on leaving, also after an error."""
    previous = keras.config.dtype_policy()
    if name is not None:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    return _keras_internals.flatten_layers(model, include_self=False)


def computes_in(model: keras.Model, dtypes: tuple[str, ...] = _REDUCED) -> bool:
    """Whether a layer of `model` (nested ones too) computes in one of `dtypes`."""
    return any(layer.dtype_policy.compute_dtype in dtypes for layer in _layers(model))


def needs_loss_scaling(model: keras.Model) -> bool:
    """Whether a layer of `model` computes in float16, whose small gradients underflow
    unless the loss is scaled up (bfloat16 has float32's range and needs no scaling)."""
    return computes_in(model, ("float16",))


def _float32_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    if isinstance(layer, keras.layers.InputLayer):
        return layer
    return type(layer).from_config({**layer.get_config(), "dtype": "float32"})


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` with every layer computing in float32 and the same weights (variables are
    float32 under the mixed policies already); `model` itself when no layer computes in 16
    bits. The copy is made under the float32 policy, so layers built inside layers are float32
    too."""
    if not computes_in(model):
        return model
    with dtype_policy("float32"):
        copy = keras.models.clone_model(model, clone_function=_float32_layer, recursive=True)
    copy.set_weights(model.get_weights())
    if computes_in(copy):
        raise ValueError(
            f"{model.name!r} still computes in 16 bits after cloning it in float32: a custom "
            "layer ignores its `dtype` argument."
        )
    return copy
