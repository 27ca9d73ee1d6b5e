"""Keras 3 models to tf_keras (Keras 2) models and back, for tensorflow-model-optimization.

Walks the functional graph through Keras 3 internals (`_run_through_graph`, `_inputs_struct`,
`_keras_history`), as `tfdistill.folding` and `compress.channels` do; checked on Keras 3.15.

TFMOT 0.8 wraps only tf_keras layers. `to_tf_keras` rebuilds a functional Keras 3 model layer by
layer in tf_keras (same classes, configs, names and graph) and copies the weights, so the two
give equal outputs; `to_keras` copies a fine-tuned tf_keras twin's weights back into a fresh
Keras 3 copy of the original. Built-in layers are found by class name in `tf_keras.layers`;
custom layers need a registered twin (`register_tf_keras_twin`), which the zoo's layers have
except `SplitGroupedConv2D` (refused: build the model with `grouped_conv="native"` for TFMOT).
Initializers are not carried over: the weights are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tfdistill import _keras_internals
from tfdistill.compress._tfmot import require_tfmot
from tfdistill.folding import functional_graph

_TWINS: dict[type, Callable[[], type]] = {}
_DROPPABLE_IF_NONE = ("quantization_config", "lora_rank", "lora_alpha")


def register_tf_keras_twin(layer_class: type, twin: type | Callable[[], type]) -> None:
    """Declares the tf_keras class that computes what Keras 3 `layer_class` computes. The twin
    is built with `twin.from_config(layer.get_config())` (dtype policies as plain names) and
    takes the layer's weights in `get_weights()` order. `twin` may be a zero-argument function
    returning the class, so tf_keras is imported only when needed."""
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise ValueError(f"layer_class must be a keras.layers.Layer subclass, got {layer_class!r}.")
    _TWINS[layer_class] = twin if not isinstance(twin, type) else (lambda: twin)


def _zoo_twins() -> None:
    from tfdistill.models import layers

    for name in ("ChannelShuffle", "ChannelSplit", "SubsampleZeroPad"):

        def twin(name: str = name) -> type:
            from tfdistill.compress import tf_keras_layers

            return getattr(tf_keras_layers, name)

        register_tf_keras_twin(getattr(layers, name), twin)


_zoo_twins()


def _graph(model: keras.Model, action: str) -> Any:
    graph = functional_graph(model)
    if graph is None or not getattr(model, "inputs", None):
        raise ValueError(
            f"{action} needs a functional or Sequential Keras model with an Input; "
            f"{getattr(model, 'name', model)!r} is a {type(model).__name__}."
        )
    return graph


def _twin_class(layer: keras.layers.Layer, tf_keras: Any) -> type:
    if isinstance(layer, keras.Model):
        raise ValueError(
            f"Layer {layer.name!r} is a nested model; TFMOT needs a flat functional model."
        )
    for cls in type(layer).__mro__:
        if cls in _TWINS:
            return _TWINS[cls]()
    from tfdistill.models.layers import SplitGroupedConv2D

    if isinstance(layer, SplitGroupedConv2D):
        raise ValueError(
            f"Layer {layer.name!r} is a SplitGroupedConv2D: the split lowering of grouped "
            "convolutions is for export and benchmarks only. For pruning or quantization-aware "
            'training build the model with grouped_conv="native"; its weights are the same, so '
            "copy them over with native.set_weights(split.get_weights())."
        )
    builtin = type(layer).__module__.startswith("keras.")
    twin = getattr(tf_keras.layers, type(layer).__name__, None) if builtin else None
    if twin is None:
        kind = "built-in" if builtin else "custom"
        raise ValueError(
            f"Layer {layer.name!r} ({kind} class {type(layer).__name__}) has no tf_keras "
            "counterpart, so TFMOT cannot fine-tune this model. Register one with "
            "tfdistill.compress.register_tf_keras_twin(LayerClass, TfKerasLayerClass)."
        )
    return twin


def _accepted(cls: type) -> set[str] | None:
    """Keyword names `cls.__init__` takes, or None when it also takes **kwargs."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _twin_config(layer: keras.layers.Layer, twin: type, tf_keras: Any) -> dict:
    """`layer.get_config()` in tf_keras terms: dtype policy by name, regularizers and
    constraints rebuilt in tf_keras, initializers dropped, Keras-3-only switches that are off
    removed. BatchNorm runs unfused, as Keras 3's does, so training-mode outputs match too."""
    config = dict(layer.get_config())
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        config["dtype"] = dtype.get("config", {}).get("name", "float32")
    for key in list(config):
        value = config[key]
        if key.endswith("_initializer"):
            del config[key]
        elif key.endswith(("_regularizer", "_constraint")) and value is not None:
            kind = "regularizers" if key.endswith("_regularizer") else "constraints"
            config[key] = _tf_keras_object(layer, key, value, getattr(tf_keras, kind))
        elif key in _DROPPABLE_IF_NONE and value is None:
            del config[key]
    if issubclass(twin, tf_keras.layers.BatchNormalization):
        config["fused"] = False
    accepted = _accepted(twin)
    if accepted is not None:
        base = {"name", "trainable", "dtype", "dynamic"}
        unknown = sorted(set(config) - accepted - base)
        if unknown:
            raise ValueError(
                f"Layer {layer.name!r}: its tf_keras twin {twin.__name__} does not take "
                f"{unknown}; register a twin that does (register_tf_keras_twin)."
            )
    return config


def _tf_keras_object(layer: Any, key: str, value: Any, module: Any) -> Any:
    spec = value if not isinstance(value, dict) else {k: value[k] for k in ("class_name", "config")}
    try:
        return module.deserialize(spec) if isinstance(spec, dict) else module.get(spec)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Layer {layer.name!r}: {key}={value!r} has no tf_keras equivalent ({error})."
        ) from error


def _copy_weights(source: Any, target: Any) -> None:
    """Same-order weights from `source` into `target`, shapes checked."""
    weights = [np.asarray(keras.ops.convert_to_numpy(w)) for w in source.weights]
    shapes = [tuple(w.shape) for w in target.weights]
    if [w.shape for w in weights] != shapes:
        raise ValueError(
            f"Layer {source.name!r}: weights of shapes {[w.shape for w in weights]} do not fit "
            f"{target.name!r}, which has {shapes}."
        )
    target.set_weights(weights)


def to_tf_keras(model: keras.Model) -> Any:
    """A tf_keras functional model with `model`'s graph, layer names and weights.

    The result gives the same outputs, (B, ...) -> (B, C), in training and inference mode. Each
    Keras 3 layer becomes one tf_keras layer, shared where the original is shared.
    """
    _, tf_keras = require_tfmot()
    graph = _graph(model, "to_tf_keras")
    twins: dict[int, Any] = {}

    def twin_of(layer: Any) -> Any:
        if id(layer) not in twins:
            cls = _twin_class(layer, tf_keras)
            try:
                twins[id(layer)] = cls.from_config(_twin_config(layer, cls, tf_keras))
            except TypeError as error:
                raise ValueError(
                    f"Layer {layer.name!r}: its tf_keras twin {cls.__name__} does not take its "
                    f"config ({error}); register a twin that does (register_tf_keras_twin)."
                ) from None
        return twins[id(layer)]

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return layer(*args, **kwargs)

    inputs = [
        tf_keras.Input(
            batch_shape=tuple(t.shape),
            dtype=keras.backend.standardize_dtype(t.dtype),
            name=_keras_internals.producer(t).name,
        )
        for t in graph.inputs
    ]
    outputs = _keras_internals.run_through_graph(graph, inputs, twin_of, call)
    twin = tf_keras.Model(
        _keras_internals.inputs_structure(graph, inputs), outputs, name=model.name
    )
    by_id = {id(layer): layer for layer in graph.layers}
    for key, layer in twins.items():
        _copy_weights(by_id[key], layer)
    return twin


def to_keras(tf_keras_model: Any, like: keras.Model) -> keras.Model:
    """A new Keras 3 model built like `like` (same config), holding `tf_keras_model`'s weights,
    matched by layer name. `tf_keras_model` is a twin from `to_tf_keras`, fine-tuned and
    stripped of its TFMOT wrappers."""
    _graph(like, "to_keras")
    clone = keras.models.clone_model(like)
    names = {layer.name: layer for layer in tf_keras_model.layers}
    for layer in clone.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            raise ValueError(
                f"The tf_keras model has no layer {layer.name!r} to take weights from; strip "
                "TFMOT wrappers first (strip_pruning) and keep the layer names."
            )
        _copy_weights(names[layer.name], layer)
    return clone


__all__ = ["register_tf_keras_twin", "to_keras", "to_tf_keras"]
