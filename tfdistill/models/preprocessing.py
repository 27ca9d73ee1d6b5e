"""Preprocessing inside the model, so that an exported `.tflite` takes raw pixels.

`with_preprocessing(model, scale=1 / 255)` puts a `Rescaling` layer named "preprocess" in front
of a functional model. The result is one flat graph of copies of the original layers (same
configs, weights and names), so everything that walks a model's layers (attention transfer's
stage taps, BatchNorm folding, channel pruning, the tf_keras bridge to TFMOT, `profile`) sees
the model it knew, with one more layer after the input.
"""

from __future__ import annotations

import keras

from tfdistill import _keras_internals
from tfdistill.folding import clone_graph, functional_graph

PREPROCESS = "preprocess"


def with_preprocessing(model: keras.Model, scale: float, offset: float = 0.0) -> keras.Model:
    """`model` behind `x * scale + offset`: raw pixels (B, H, W, C) -> `model`'s outputs.

    The new model has an Input of the same shape, dtype and name as `model`'s, then
    `keras.layers.Rescaling(scale, offset, name="preprocess")`, then copies of `model`'s layers
    holding its weights (the two models train apart), and `model`'s name. `model` must be a
    functional or Sequential model with one input and no layer named "preprocess".
    """
    graph = functional_graph(model)
    if graph is None or not getattr(model, "inputs", None):
        raise ValueError(
            f"with_preprocessing needs a functional or Sequential Keras model with an Input; "
            f"{getattr(model, 'name', model)!r} is a {type(model).__name__}."
        )
    if len(graph.inputs) != 1:
        raise ValueError(
            f"with_preprocessing takes a model with one input; {model.name!r} has "
            f"{len(graph.inputs)}."
        )
    if any(layer.name == PREPROCESS for layer in graph.layers):
        raise ValueError(
            f"{model.name!r} already has a layer named {PREPROCESS!r}; it is preprocessed "
            "already, or rename that layer."
        )
    (original,) = graph.inputs
    inputs = keras.Input(
        batch_shape=original.shape,
        dtype=original.dtype,
        name=_keras_internals.producer(original).name,
    )
    scaled = keras.layers.Rescaling(scale, offset, name=PREPROCESS)(inputs)
    outputs, copies = clone_graph(graph, [scaled])
    structure = _keras_internals.inputs_structure(graph, [inputs])
    wrapped = keras.Model(structure, outputs, name=model.name)
    for layer in graph.layers:
        if id(layer) in copies and layer.weights:
            copies[id(layer)].set_weights(layer.get_weights())
    return wrapped


__all__ = ["PREPROCESS", "with_preprocessing"]
