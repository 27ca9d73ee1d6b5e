"""A frozen model's inference pass with BatchNorm folded into the layer before it.

In inference mode BN is an affine map per channel, so conv -> BN equals one conv with kernel
W·γ/√(σ²+ε) and bias (b - μ)·γ/√(σ²+ε) + β. TensorFlow then runs conv + bias + ReLU as one
fused kernel instead of a conv and two element-wise passes over the activations. The folded
weights are recomputed from the live variables on every call (they are tiny next to the
activations), so the pass always matches the model, also after `load_weights`.

Used for the frozen teacher, whose forward pass is most of a distillation step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from tfdistill import _keras_internals

_FOLDABLE = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)


def functional_graph(model: keras.Model) -> Any | None:
    """The model's Functional graph, or None (subclassed models have none)."""
    return _keras_internals.functional_graph(model)


def graph_nodes(graph: Any) -> list[Any]:
    """The calls of layers in a Functional graph (see `functional_graph`), inputs first."""
    by_depth = _keras_internals.nodes_by_depth(graph)
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def clone_graph(
    graph: Any,
    inputs: list[Any],
    configure: Callable[[keras.layers.Layer, dict], dict] = lambda layer, config: config,
) -> tuple[Any, dict[int, keras.layers.Layer]]:
    """The Functional `graph` re-run on the symbolic `inputs` with a fresh copy of each layer,
    built from `configure(layer, layer.get_config())`; the outputs and {id(old layer): new
    layer}. Weights are not copied: the new layers start from their initializers."""
    new_layers: dict[int, keras.layers.Layer] = {}

    def operation_fn(op: Any) -> Any:
        if not isinstance(op, keras.layers.Layer):
            return op
        if id(op) not in new_layers:
            new_layers[id(op)] = type(op).from_config(configure(op, op.get_config()))
        return new_layers[id(op)]

    outputs = _keras_internals.run_through_graph(graph, inputs, operation_fn)
    return outputs, new_layers


def _foldable_pairs(graph: Any) -> dict[int, keras.layers.BatchNormalization]:
    """id(producer layer) -> the BN layer that is the only consumer of its output.

    Calls and consumers are counted in this graph only: a layer that another model also uses
    (e.g. one wrapped by `tfdistill.models.with_preprocessing`) still folds here.
    """
    nodes = graph_nodes(graph)
    outputs = {id(t) for t in graph.outputs}
    calls: dict[int, int] = {}
    consumers: dict[int, int] = {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for tensor in node.input_tensors:
            consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    pairs: dict[int, keras.layers.BatchNormalization] = {}
    for node in nodes:
        bn = node.operation
        if not isinstance(bn, keras.layers.BatchNormalization) or calls[id(bn)] != 1:
            continue
        if len(node.input_tensors) != 1:
            continue
        tensor = node.input_tensors[0]
        producer = _keras_internals.producer(tensor)
        if (
            isinstance(producer, _FOLDABLE)
            and calls.get(id(producer)) == 1
            and consumers[id(tensor)] == 1
            and id(tensor) not in outputs
            and getattr(producer, "data_format", "channels_last") == "channels_last"
            and bn.axis in (-1, len(tensor.shape) - 1)
            and producer.activation in (None, keras.activations.linear)
        ):
            pairs[id(producer)] = bn
    return pairs


def _fold(producer: keras.layers.Layer, bn: keras.layers.BatchNormalization) -> Callable:
    def call(inputs: tf.Tensor, *args: Any, **kwargs: Any) -> tf.Tensor:
        dtype = inputs.dtype
        variance = tf.cast(bn.moving_variance, tf.float32)
        scale = tf.math.rsqrt(variance + bn.epsilon)
        if bn.scale:
            scale = scale * tf.cast(bn.gamma, tf.float32)
        shift = -tf.cast(bn.moving_mean, tf.float32) * scale
        if producer.use_bias:
            shift = shift + tf.cast(producer.bias, tf.float32) * scale
        if bn.center:
            shift = shift + tf.cast(bn.beta, tf.float32)
        kernel = tf.cast(tf.cast(producer.kernel, tf.float32) * scale, dtype)
        if isinstance(producer, keras.layers.Dense):
            outputs = tf.tensordot(inputs, kernel, axes=1)
        elif hasattr(producer, "split_convolution") and producer.groups > 1:
            return producer.split_convolution(inputs, kernel, tf.cast(shift, dtype))
        else:
            outputs = producer.convolution_op(inputs, kernel)
        return tf.nn.bias_add(outputs, tf.cast(shift, dtype))

    return call


def _identity(inputs: tf.Tensor, *args: Any, **kwargs: Any) -> tf.Tensor:
    return inputs


def _inference(op: Any) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        if _keras_internals.takes_training(op):
            kwargs["training"] = False
        return op(*args, **kwargs)

    return call


def folded_forward(model: keras.Model) -> Callable[[Any], Any]:
    """`f(x)` equal to `model(x, training=False)`, with Conv/Dense -> BN pairs folded.

    Falls back to the plain inference call where nothing can be folded (subclassed models,
    BN after a non-linear activation, shared layers, channels-first).
    """
    graph = functional_graph(model)
    pairs = _foldable_pairs(graph) if graph is not None else {}
    if not pairs:
        return lambda x: model(x, training=False)
    folded_bns = {id(bn) for bn in pairs.values()}

    def operation_fn(op: Any) -> Callable:
        if id(op) in pairs:
            return _fold(op, pairs[id(op)])
        if id(op) in folded_bns:
            return _identity
        return _inference(op)

    def forward(x: Any) -> Any:
        inputs = _keras_internals.standardize_inputs(graph, x)
        outputs = _keras_internals.run_through_graph(graph, inputs, operation_fn)
        return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs

    return forward


def folded_pairs(model: keras.Model) -> list[tuple[str, str]]:
    """(producer name, BN name) for every pair `folded_forward` folds."""
    graph = functional_graph(model)
    if graph is None:
        return []
    by_id = {id(layer): layer for layer in graph.layers}
    return [(by_id[key].name, bn.name) for key, bn in _foldable_pairs(graph).items()]
