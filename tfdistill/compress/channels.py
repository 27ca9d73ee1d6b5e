"""Structured channel pruning: Li et al. 2017, "Pruning Filters for Efficient ConvNets".

The functional graph is split into channel groups: a Conv/Dense output starts a group, layers
that act on each channel alone (BatchNorm, activations, dropout, depthwise convolutions with
depth_multiplier 1, pooling, padding, Identity) carry their input's group forward, and the
inputs of an element-wise merge (Add, Subtract, Multiply, ...) join one group, residual
shortcuts included; a channel-axis `Concatenate` lays its inputs' groups end to end, so what
follows it is sliced by every group's choice. Each group keeps the filters most important by a
criterion, summed over its producers: "l1" (Li et al. 2017), "bn_gamma" (|γ| of the
BatchNorms on the group's channels, network slimming, Liu et al. 2017) or "taylor"
(first-order Taylor importance, Molchanov et al. 2019).

Grouped convolutions tie positions. A group has a fold f: its C channels are f blocks of C / f
and a cut removes the same local positions from every block (their importance summed over the
blocks). A grouped convolution (`groups` g) starts a group of fold g, so each of its g groups
loses the same filters; its input, when one group, takes fold lcm(f, g), so each of its groups
loses the same inputs and `groups` stays valid (a concatenated input, or one whose channels
the lcm does not divide, keeps all of its channels). `ChannelShuffle(g)` of one group ties it
to a multiple of g and carries it shuffled (position p holds channel (p mod g) · C / g + p // g);
BatchNorms, depthwise and dense convolutions slice it where the shuffle put the kept channels,
and a grouped convolution (g') takes it at fold lcm(f, g · g'). `ChannelSplit` carries the
segments of a concatenation when every split point falls between them, joining the parts so
that each keeps as many channels. Merges join segments laid out alike (same sizes, same
shuffle); joined folds combine by lcm. A group touched by anything else (model inputs and
outputs, a shuffle of a concatenation or of a shuffled tensor, a split inside a group, custom
layers such as SubsampleZeroPad) keeps all of its channels.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import tree

from tfdistill import _keras_internals
from tfdistill.folding import clone_graph, functional_graph, graph_nodes
from tfdistill.models.layers import ChannelShuffle, ChannelSplit

CRITERIA = ("l1", "bn_gamma", "taylor")
Ratio = float | dict[str, float]

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
    """Union-find over channel spaces; a group is frozen when any member is. A group's `fold` f
    ties its C channels into f equal blocks of C / f: a cut removes the same local positions
    from every block (grouped convolutions and shuffles need it)."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.channels: list[int] = []
        self.fold: list[int] = []
        self.frozen: set[int] = set()

    def new(self, channels: int | None, frozen: bool = False, fold: int = 1) -> int:
        index = len(self.parent)
        self.parent.append(index)
        self.channels.append(channels or 0)
        self.fold.append(1)
        if frozen or channels is None or not self.tie(index, fold):
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
            self.tie(a, self.fold[b])
        return a

    def tie(self, index: int, fold: int) -> bool:
        """Raise the group's fold to lcm(fold, `fold`); False (and frozen) when its channels do
        not split into that many blocks."""
        root = self.find(index)
        joint = math.lcm(self.fold[root], fold)
        if self.channels[root] % joint:
            self.frozen.add(root)
            return False
        self.fold[root] = joint
        return True

    def freeze(self, index: int) -> None:
        self.frozen.add(self.find(index))

    def is_frozen(self, index: int) -> bool:
        return self.find(index) in self.frozen


def _check_share(ratio: Any, what: str = "ratio") -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"{what} must be a number in [0, 1), got {ratio!r}.")
    return float(ratio)


def _check(ratio: Ratio, criterion: str, data: Any = None) -> None:
    if isinstance(ratio, dict):
        for name, share in ratio.items():
            _check_share(share, f"ratio[{name!r}]")
    else:
        _check_share(ratio)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r} is not supported; choose one of {CRITERIA}.")
    if criterion == "taylor" and data is None:
        raise ValueError(
            'criterion="taylor" ranks filters by the loss gradient: pass data=, a few batches '
            "of (images, labels)."
        )


def _channels_last(layer: Any) -> bool:
    return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


def _kind(layer: Any, rank: int | None) -> str:
    """How `layer` treats channels: "linear" (prunable outputs), "grouped" (a grouped
    convolution: prunable outputs, tied inputs), "channelwise" (carries its input group),
    "merge" (joins its inputs' groups), "concat" (lays its inputs' channels end to end),
    "shuffle", "split" or "unknown"."""
    if not _channels_last(layer):
        return "unknown"
    if isinstance(layer, _LINEAR):
        if layer.activation in _CROSS_CHANNEL:
            return "unknown"
        return "grouped" if getattr(layer, "groups", 1) != 1 else "linear"
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
    if isinstance(layer, keras.layers.Concatenate) and rank is not None:
        return "concat" if layer.axis in (-1, rank - 1) else "unknown"
    if isinstance(layer, ChannelShuffle):
        return "shuffle"
    if isinstance(layer, ChannelSplit):
        return "split"
    return "unknown"


def _l1(layer: Any) -> np.ndarray:
    """(out,) sum of |kernel| over every axis but the last."""
    kernel = np.abs(keras.ops.convert_to_numpy(layer.kernel))
    return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


class Segment(NamedTuple):
    """A group's channels in a tensor: in the group's own order (`shuffle` 1), or as a
    `ChannelShuffle(shuffle)` left them: position p holds channel (p mod s) · C / s + p // s."""

    group: int
    shuffle: int = 1


Segments = tuple[Segment, ...]  # a tensor's channels: segments laid end to end (a concatenation)


def _order(size: int, shuffle: int) -> np.ndarray:
    """(size,) the group channel at each position of a segment."""
    positions = np.arange(size)
    return (positions % shuffle) * (size // shuffle) + positions // shuffle


class _Plan:
    """The channel groups of `graph` and which channels every tensor keeps (`choose`). A
    tensor's channels are a tuple of segments: one, or several after a `Concatenate`."""

    def __init__(self, graph: Any) -> None:
        self.groups = _Groups()
        self.space: dict[int, Segments] = {}
        self.layer_in: dict[int, Segments] = {}
        self.layer_out: dict[int, Segments] = {}
        self.producers: list[tuple[Any, int]] = []
        self.norms: list[tuple[Any, Segments]] = []  # BatchNorms and the channels they scale
        nodes = graph_nodes(graph)
        uses: dict[int, int] = {}
        for node in nodes:
            uses[id(node.operation)] = uses.get(id(node.operation), 0) + 1
        for node in nodes:
            self._visit(node, uses[id(node.operation)])
        for t in tree.flatten(graph.outputs):
            self._freeze(self.space[id(t)])
        self.keep: dict[int, np.ndarray] = {}

    def _freeze(self, segments: Segments) -> None:
        for segment in segments:
            self.groups.freeze(segment.group)

    def _layout(self, segments: Segments) -> list[tuple[int, int]]:
        return [(self.groups.channels[s.group], s.shuffle) for s in segments]

    def _joined(self, inputs: list[Segments]) -> Segments | None:
        """The inputs of an element-wise merge, segment by segment joined; None when they are
        laid out differently."""
        first = inputs[0]
        for other in inputs[1:]:
            if self._layout(other) != self._layout(first):
                return None
            for a, b in zip(first, other, strict=True):
                self.groups.union(a.group, b.group)
        return first

    def _grouped(self, op: Any, segments: Segments, channels: int) -> Segments:
        """A grouped convolution's output group (fold `groups`); its input, one segment, is tied
        so that every convolution group loses the same channels, or frozen."""
        groups = op.groups
        if len(segments) != 1 or not self.groups.tie(
            segments[0].group, groups * segments[0].shuffle
        ):
            self._freeze(segments)
        group = self.groups.new(channels, fold=groups)
        self.producers.append((op, group))
        return (Segment(group),)

    def _shuffled(self, op: Any, segments: Segments) -> Segments | None:
        """One unshuffled segment, its group tied into `groups` blocks, comes out shuffled."""
        if op.groups == 1:
            return segments
        if len(segments) != 1 or segments[0].shuffle != 1:
            return None
        if not self.groups.tie(segments[0].group, op.groups):
            return None
        return (Segment(segments[0].group, op.groups),)

    def _split(self, op: Any, segments: Segments) -> list[Segments] | None:
        """Each part of a split that falls on segment boundaries, its segments joined with the
        first part's so that every part keeps as many channels; None otherwise."""
        ends = np.cumsum([size for size, _ in self._layout(segments)]).tolist()
        part = ends[-1] // op.num_splits
        bounds = [0, *ends]
        if any(k * part not in bounds for k in range(1, op.num_splits)):
            return None
        cuts = [bounds.index(k * part) for k in range(op.num_splits + 1)]
        parts = [segments[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
        return None if self._joined(parts) is None else parts

    def _outputs(self, kind: str, node: Any, inputs: list[Segments]) -> list[Segments] | None:
        op, channels = node.operation, node.outputs[0].shape[-1]
        if kind == "linear":
            group = self.groups.new(channels)
            self.producers.append((op, group))
            return [(Segment(group),)]
        if kind == "grouped":
            return [self._grouped(op, inputs[0], channels)]
        if kind == "channelwise":
            if isinstance(op, keras.layers.BatchNormalization) and op.scale:
                self.norms.append((op, inputs[0]))
            return [inputs[0]]
        out = None
        if kind == "merge":
            out = self._joined(inputs)
        elif kind == "concat" and len(inputs) == len(node.input_tensors):
            out = tuple(s for segments in inputs for s in segments)
        elif kind == "shuffle":
            out = self._shuffled(op, inputs[0])
        elif kind == "split":
            return self._split(op, inputs[0])
        return None if out is None else [out]

    def _visit(self, node: Any, uses: int) -> None:
        op = node.operation
        inputs = [self.space[id(t)] for t in node.input_tensors if id(t) in self.space]
        if node.is_input or not inputs:
            for t in node.outputs:
                self.space[id(t)] = (Segment(self.groups.new(t.shape[-1], frozen=True)),)
            return
        rank = len(node.input_tensors[0].shape)
        kind = _kind(op, rank) if uses == 1 else "unknown"
        if kind != "split" and len(node.outputs) != 1:
            kind = "unknown"
        if kind in ("linear", "grouped", "shuffle", "split") and len(inputs) != 1:
            kind = "unknown"
        outs = self._outputs(kind, node, inputs) if kind != "unknown" else None
        if outs is None:
            for segments in inputs:
                self._freeze(segments)
            for t in node.outputs:
                self.space[id(t)] = (Segment(self.groups.new(t.shape[-1], frozen=True)),)
            return
        self.layer_in[id(op)] = inputs[0]
        for t, out in zip(node.outputs, outs, strict=True):
            self.space[id(t)] = out
        if len(outs) == 1:
            self.layer_out[id(op)] = outs[0]

    def prunable(self) -> dict[int, list[Any]]:
        """Group root -> its producer layers, for the groups that may shrink."""
        found: dict[int, list[Any]] = {}
        for layer, space in self.producers:
            root = self.groups.find(space)
            if root not in self.groups.frozen:
                found.setdefault(root, []).append(layer)
        return found

    def choose(self, scores: dict[int, np.ndarray], shares: dict[int, float]) -> None:
        """Each group `root` in `shares`, of fold f, keeps the round((1 - share) · C / f) local
        positions (at least one) whose scores summed over the f blocks are highest, in every
        block, in their original order."""
        for root, share in shares.items():
            if share == 0:
                continue
            fold = self.groups.fold[root]
            local = np.reshape(scores[root], (fold, -1)).sum(axis=0)
            count = max(1, round((1 - share) * len(local)))
            keep = np.sort(np.argsort(-local, kind="stable")[:count])
            self.keep[root] = (np.arange(fold)[:, None] * len(local) + keep).ravel()

    def kept(self, segments: Segments | None) -> np.ndarray | None:
        """Kept channel indices of a tensor's `segments`, or None when it keeps them all."""
        if segments is None:
            return None
        parts, offset, changed = [], 0, False
        for segment in segments:
            keep = self.keep.get(self.groups.find(segment.group))
            size = self.groups.channels[segment.group]
            changed = changed or keep is not None
            if keep is None:
                keep = np.arange(size)
            elif segment.shuffle != 1:
                keep = np.flatnonzero(np.isin(_order(size, segment.shuffle), keep))
            parts.append(offset + keep)
            offset += size
        return np.concatenate(parts) if changed else None

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


def _bn_gamma(plan: _Plan, root: int, producers: list[Any]) -> np.ndarray:
    """(C,) Σ |γ| over the BatchNorms scaling the group's channels (its slice of each, in the
    group's order); the L1 norms of its filters where no BatchNorm scales them."""
    found = []
    for layer, segments in plan.norms:
        gamma = np.abs(keras.ops.convert_to_numpy(layer.gamma))
        offset = 0
        for segment in segments:
            size = plan.groups.channels[segment.group]
            if plan.groups.find(segment.group) == root:
                ordered = np.empty(size, gamma.dtype)
                ordered[_order(size, segment.shuffle)] = gamma[offset : offset + size]
                found.append(ordered)
            offset += size
    return np.sum(found, axis=0) if found else sum(_l1(layer) for layer in producers)


def _taylor(model: keras.Model, layers: list[Any], data: Any) -> dict[int, np.ndarray]:
    """id(layer) -> (out,) first-order Taylor importance (Molchanov et al. 2019): per batch
    (Σ over a filter's parameters of ∂L/∂w · w)², averaged over the batches, L the mean
    cross-entropy of the model's outputs (logits or probabilities) against the labels."""
    import tensorflow as tf

    from tfdistill import outputs

    kind = outputs.resolve_output_kind(model, "auto", "outputs")
    params = [
        [w for w in (layer.kernel, getattr(layer, "bias", None)) if w is not None]
        for layer in layers
    ]
    totals = [np.zeros(layer.kernel.shape[-1]) for layer in layers]
    batches = 0
    for x, y in data:
        with tf.GradientTape() as tape:
            logits = outputs.as_logits(model(x, training=False), kind)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.reshape(tf.cast(y, tf.int32), [-1]), tf.cast(logits, tf.float32)
                )
            )
        grads = tape.gradient(loss, params)
        for total, group, grad in zip(totals, params, grads, strict=True):
            per = sum(
                np.reshape(np.asarray(g) * np.asarray(w), (-1, w.shape[-1])).sum(axis=0)
                for g, w in zip(grad, group, strict=True)
            )
            total += per.astype("float64") ** 2
        batches += 1
    if not batches:
        raise ValueError('criterion="taylor" got no batches in data.')
    return {id(layer): total / batches for layer, total in zip(layers, totals, strict=True)}


def _scores(model: keras.Model, plan: _Plan, criterion: str, data: Any) -> dict[int, np.ndarray]:
    """Group root -> (C,) importance of its channels, summed over its producers."""
    groups = plan.prunable()
    if criterion == "bn_gamma":
        return {root: _bn_gamma(plan, root, layers) for root, layers in groups.items()}
    if criterion == "taylor":
        every = [layer for layers in groups.values() for layer in layers]
        taylor = _taylor(model, every, data)
        return {root: sum(taylor[id(x)] for x in layers) for root, layers in groups.items()}
    return {root: sum(_l1(layer) for layer in layers) for root, layers in groups.items()}


def _shares(plan: _Plan, ratio: Ratio) -> dict[int, float]:
    """Group root -> the share of its channels to remove: `ratio` everywhere, or from a dict
    keyed by producer layer names (a group takes the largest of its layers' shares)."""
    groups = plan.prunable()
    if not isinstance(ratio, dict):
        return dict.fromkeys(groups, float(ratio))
    names = {layer.name: root for root, layers in groups.items() for layer in layers}
    unknown = sorted(set(ratio) - set(names))
    if unknown:
        raise ValueError(
            f"ratio names {unknown}, which have no prunable channels; the prunable layers are "
            f"{sorted(names) or 'none'}."
        )
    shares: dict[int, float] = {}
    for name, share in ratio.items():
        shares[names[name]] = max(shares.get(names[name], 0.0), float(share))
    return shares


def _planned(model: keras.Model, ratio: Ratio, criterion: str, data: Any) -> tuple[Any, _Plan]:
    _check(ratio, criterion, data)
    graph = _graph(model)
    plan = _Plan(graph)
    if not plan.prunable() and ratio:
        raise ValueError(
            f"{model.name!r} has no prunable channels: every channel meets the input, the "
            "output, a custom layer or a channel layout that pruning cannot keep consistent "
            "(a grouped convolution or a shuffle of a concatenation, blocks that do not divide)."
        )
    shares = _shares(plan, ratio)
    plan.choose(_scores(model, plan, criterion, data) if any(shares.values()) else {}, shares)
    return graph, plan


def prunable_groups(model: keras.Model) -> dict[str, tuple[str, ...]]:
    """Each prunable channel group, named by its first producer layer -> the names of the
    layers whose output channels it ties together (residual additions join them). A key of
    `prune_channels`' ratio dict may be any of these layers. A group that passes a grouped
    convolution or a shuffle is cut in tied blocks (`group_folds`)."""
    plan = _Plan(_graph(model))
    return {
        layers[0].name: tuple(layer.name for layer in layers) for layers in plan.prunable().values()
    }


def group_folds(model: keras.Model) -> dict[str, int]:
    """Each prunable channel group, named as in `prunable_groups` -> its fold f: the group's
    channels are f tied blocks (grouped convolutions, shuffles), so a cut removes a multiple
    of f channels; 1 for an untied group."""
    plan = _Plan(_graph(model))
    return {layers[0].name: plan.groups.fold[root] for root, layers in plan.prunable().items()}


def kept_channels(
    model: keras.Model, ratio: Ratio = 0.5, criterion: str = "l1", data: Any = None
) -> dict[str, np.ndarray]:
    """Layer name -> the (k,) indices of its output channels that `prune_channels` keeps, in the
    original order, for every layer whose output channels shrink."""
    graph, plan = _planned(model, ratio, criterion, data)
    kept = {}
    for layer in graph.layers:
        keep = plan.outputs_of(layer)
        if keep is not None:
            kept[layer.name] = keep
    return kept


def _sliced_weights(
    layer: Any, in_keep: np.ndarray | None, out_keep: np.ndarray | None
) -> list[np.ndarray]:
    """`layer`'s weights with the pruned channels cut: kernel (..., in / groups, out) ->
    (..., in' / groups, out') (a grouped kernel takes the kept inputs of its first group, the
    same local positions as every other group's), bias (out,) -> (out',); BatchNorm (C,) and
    depthwise (kh, kw, C, 1) -> C'."""
    weights = layer.get_weights()
    if isinstance(layer, _LINEAR):
        kernel, rest = weights[0], weights[1:]
        if in_keep is not None:
            kernel = np.take(kernel, in_keep[in_keep < kernel.shape[-2]], axis=-2)
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


def prune_channels(
    model: keras.Model,
    ratio: Ratio = 0.5,
    criterion: str = "l1",
    data: Any = None,
) -> keras.Model:
    """A new, smaller dense model: in every prunable channel group, the `ratio` share of the
    channels least important by `criterion` is removed (at least one stays); a group of fold f
    (`group_folds`) keeps round((1 - share) · C / f) positions of each of its f blocks, the same
    in every block, so grouped convolutions keep their `groups` and shuffles their layout.
    `ratio`: one share for every group, or {layer name: share} for some (the others stay whole;
    see `prunable_groups`). `criterion`: "l1" (the filters' summed |w|), "bn_gamma" (|γ| of the
    BatchNorms on the channels; L1 where none) or "taylor" (needs `data`: batches of (x (B,
    ...), y (B,) class indices)). Same inputs (B, ...), outputs (B, num_classes), layer names
    and `stageN_out` taps as `model`, which is unchanged. A model with no prunable channel and
    a nonzero ratio is a ValueError."""
    graph, plan = _planned(model, ratio, criterion, data)
    return _rebuild(graph, model, plan)
