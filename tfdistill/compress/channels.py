"""Structured channel pruning: Li et al. 2017, "Pruning Filters for Efficient ConvNets".

The functional graph is split into channel groups: a Conv/Dense output starts a group, layers
that act on each channel alone (BatchNorm, activations, dropout, depthwise convolutions with
depth_multiplier 1, pooling, padding, Identity) carry their input's group forward, and the inputs
of an element-wise merge (Add, Subtract, Multiply, ...) join one group, residual shortcuts
included. Each group keeps the filters with the largest summed L1 norm over its producers; a
group touched by anything else (model inputs and outputs, Concatenate, grouped convolutions,
custom layers such as ChannelShuffle or SubsampleZeroPad) keeps all of its channels.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import tree

from tfdistill import _keras_internals
from tfdistill.folding import clone_graph, functional_graph, graph_nodes

CRITERIA = ("l1",)

_LINEAR = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)
_CHANNELWISE = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.Identity,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling2D,
)
_SLICED = (keras.layers.BatchNormalization, keras.layers.DepthwiseConv2D)
_MERGE = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
_CROSS_CHANNEL = (keras.activations.softmax, keras.activations.log_softmax)


class _Groups:
    """Union-find over channel spaces; a group is frozen when any member is."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.channels: list[int] = []
        self.frozen: set[int] = set()

    def new(self, channels: int | None, frozen: bool = False) -> int:
        index = len(self.parent)
        self.parent.append(index)
        self.channels.append(channels or 0)
        if frozen or channels is None:
            self.frozen.add(index)
        return index

    def find(self, index: int) -> int:
        while self.parent[index] != index:
            self.parent[index] = self.parent[self.parent[index]]
            index = self.parent[index]
        return index

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            if b in self.frozen:
                self.frozen.add(a)
        return a

    def freeze(self, index: int) -> None:
        self.frozen.add(self.find(index))

    def is_frozen(self, index: int) -> bool:
        return self.find(index) in self.frozen


def _check(ratio: float, criterion: str) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"ratio must be a number in [0, 1), got {ratio!r}.")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r} is not supported; choose one of {CRITERIA}.")


def _channels_last(layer: Any) -> bool:
    return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


def _kind(layer: Any, rank: int | None) -> str:
    """How `layer` treats channels: "linear" (prunable outputs), "channelwise" (carries its input
    group), "merge" (joins its inputs' groups) or "unknown"."""
    if not _channels_last(layer):
        return "unknown"
    if isinstance(layer, _LINEAR):
        if getattr(layer, "groups", 1) != 1 or layer.activation in _CROSS_CHANNEL:
            return "unknown"
        return "linear"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "channelwise" if rank is not None and layer.axis in (-1, rank - 1) else "unknown"
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "channelwise" if layer.depth_multiplier == 1 else "unknown"
    if isinstance(layer, keras.layers.Activation) and layer.activation in _CROSS_CHANNEL:
        return "unknown"
    if isinstance(layer, _CHANNELWISE):
        return "channelwise"
    if isinstance(layer, _MERGE):
        return "merge"
    return "unknown"


def _l1(layer: Any) -> np.ndarray:
    """(out,) sum of |kernel| over every axis but the last."""
    kernel = np.abs(keras.ops.convert_to_numpy(layer.kernel))
    return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


class _Plan:
    """Which channels every tensor of `graph` keeps."""

    def __init__(self, graph: Any, ratio: float) -> None:
        self.groups = _Groups()
        self.space: dict[int, int] = {}
        self.layer_in: dict[int, int] = {}
        self.layer_out: dict[int, int] = {}
        nodes = graph_nodes(graph)
        uses: dict[int, int] = {}
        for node in nodes:
            uses[id(node.operation)] = uses.get(id(node.operation), 0) + 1
        producers: list[tuple[Any, int]] = []
        for node in nodes:
            op = node.operation
            inputs = [self.space[id(t)] for t in node.input_tensors if id(t) in self.space]
            if node.is_input or not inputs:
                for t in node.outputs:
                    self.space[id(t)] = self.groups.new(t.shape[-1], frozen=True)
                continue
            rank = len(node.input_tensors[0].shape)
            kind = _kind(op, rank) if uses[id(op)] == 1 else "unknown"
            if kind in ("channelwise", "merge") and len(node.outputs) != 1:
                kind = "unknown"
            if kind == "linear" and (len(inputs) != 1 or len(node.outputs) != 1):
                kind = "unknown"
            self.layer_in[id(op)] = inputs[0]
            if kind == "linear":
                out = self.groups.new(node.outputs[0].shape[-1])
                producers.append((op, out))
            elif kind == "channelwise":
                out = inputs[0]
            elif kind == "merge":
                out = inputs[0]
                for other in inputs[1:]:
                    out = self.groups.union(out, other)
            else:
                for space in inputs:
                    self.groups.freeze(space)
                for t in node.outputs:
                    self.space[id(t)] = self.groups.new(t.shape[-1], frozen=True)
                continue
            self.space[id(node.outputs[0])] = out
            self.layer_out[id(op)] = out
        for t in tree.flatten(graph.outputs):
            self.groups.freeze(self.space[id(t)])
        scores: dict[int, np.ndarray] = {}
        for layer, space in producers:
            root = self.groups.find(space)
            scores[root] = scores.get(root, 0) + _l1(layer)
        self.keep: dict[int, np.ndarray] = {}
        for root, score in scores.items():
            if root in self.groups.frozen or ratio == 0:
                continue
            count = max(1, round((1 - ratio) * len(score)))
            order = np.argsort(-score, kind="stable")
            self.keep[root] = np.sort(order[:count])

    def kept(self, space: int | None) -> np.ndarray | None:
        """Kept channel indices of `space`, or None when it keeps all of them."""
        return None if space is None else self.keep.get(self.groups.find(space))

    def inputs_of(self, layer: Any) -> np.ndarray | None:
        return self.kept(self.layer_in.get(id(layer)))

    def outputs_of(self, layer: Any) -> np.ndarray | None:
        return self.kept(self.layer_out.get(id(layer)))


def _graph(model: keras.Model) -> Any:
    graph = functional_graph(model)
    if graph is None:
        raise ValueError(
            f"Channel pruning needs a functional or Sequential model; {model.name!r} is "
            f"subclassed ({type(model).__name__})."
        )
    return graph


def kept_channels(
    model: keras.Model, ratio: float = 0.5, criterion: str = "l1"
) -> dict[str, np.ndarray]:
    """Layer name -> the (k,) indices of its output channels that `prune_channels` keeps, in the
    original order, for every layer whose output channels shrink."""
    _check(ratio, criterion)
    graph = _graph(model)
    plan = _Plan(graph, ratio)
    kept = {}
    for layer in graph.layers:
        keep = plan.outputs_of(layer)
        if keep is not None:
            kept[layer.name] = keep
    return kept


def _sliced_weights(
    layer: Any, in_keep: np.ndarray | None, out_keep: np.ndarray | None
) -> list[np.ndarray]:
    """`layer`'s weights with the pruned channels cut: kernel (..., in, out) -> (..., in', out'),
    bias (out,) -> (out',); BatchNorm (C,) and depthwise (kh, kw, C, 1) -> C'."""
    weights = layer.get_weights()
    if isinstance(layer, _LINEAR):
        kernel, rest = weights[0], weights[1:]
        if in_keep is not None:
            kernel = np.take(kernel, in_keep, axis=-2)
        if out_keep is not None:
            kernel = np.take(kernel, out_keep, axis=-1)
            rest = [np.take(w, out_keep, axis=0) for w in rest]
        return [kernel, *rest]
    if in_keep is None:
        return weights
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [np.take(weights[0], in_keep, axis=-2)] + [
            np.take(w, in_keep, axis=0) for w in weights[1:]
        ]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [np.take(w, in_keep, axis=0) for w in weights]
    return weights


def _rebuild(graph: Any, model: keras.Model, plan: _Plan) -> keras.Model:
    def configure(op: keras.layers.Layer, config: dict) -> dict:
        out_keep = plan.outputs_of(op)
        if out_keep is not None and isinstance(op, _LINEAR):
            config["units" if isinstance(op, keras.layers.Dense) else "filters"] = len(out_keep)
        return config

    inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype, name=_keras_internals.producer(t).name)
        for t in graph.inputs
    ]
    outputs, new_layers = clone_graph(graph, inputs, configure)
    structure = _keras_internals.inputs_structure(graph, inputs)
    pruned = keras.Model(structure, outputs, name=model.name)
    by_id = {id(layer): layer for layer in graph.layers}
    for key, layer in new_layers.items():
        old = by_id.get(key)
        if old is None or not old.weights:
            continue
        layer.set_weights(_sliced_weights(old, plan.inputs_of(old), plan.outputs_of(old)))
    return pruned


def prune_channels(model: keras.Model, ratio: float = 0.5, criterion: str = "l1") -> keras.Model:
    """A new, smaller dense model: in every prunable channel group, the `ratio` share of filters
    with the smallest L1 norms is removed (at least one filter stays). Same inputs (B, ...),
    outputs (B, num_classes), layer names and `stageN_out` taps as `model`, which is unchanged.
    """
    _check(ratio, criterion)
    graph = _graph(model)
    return _rebuild(graph, model, _Plan(graph, ratio))
