"""What a model costs: parameters, multiply-adds by layer type, peak activation memory.

Multiply-adds (MACs) follow the papers' convention: convolutions and fully connected layers only
(BatchNorm, activations, pooling and additions are not counted), for one image.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np

from tfdistill import _keras_internals

KINDS = ("conv1x1", "conv", "grouped", "depthwise", "dense")
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


@dataclasses.dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple
    macs: int
    params: int


@dataclasses.dataclass(frozen=True)
class Profile:
    """`by_type[kind]` = {"macs", "params"} for kind in KINDS; params there are the weights of
    those layers (kernels and biases), `params` counts every weight (BN statistics included)."""

    name: str
    input_shape: tuple
    params: int
    trainable_params: int
    macs: int
    by_type: dict[str, dict[str, int]]
    layers: tuple[LayerRow, ...]
    peak_activation_bytes: int

    def share(self, kind: str) -> tuple[float, float]:
        """(fraction of MACs, fraction of conv/dense params) taken by `kind`."""
        macs = sum(v["macs"] for v in self.by_type.values())
        params = sum(v["params"] for v in self.by_type.values())
        entry = self.by_type[kind]
        return entry["macs"] / max(macs, 1), entry["params"] / max(params, 1)

    def table(self, per_layer: bool = False) -> str:
        lines = [f"{self.name}  input {self.input_shape}"]
        if per_layer:
            header = f"{'layer':<34} {'type':<10} {'output':<20} {'MACs':>14} {'params':>11}"
            lines += [header, "-" * len(header)]
            for row in self.layers:
                shape = "x".join(str(d) for d in row.output_shape)
                lines.append(
                    f"{row.name:<34} {row.kind:<10} {shape:<20} {row.macs:>14,} {row.params:>11,}"
                )
            lines.append("")
        header = f"{'type':<10} {'MACs':>15} {'% MACs':>8} {'params':>12} {'% params':>9}"
        lines += [header, "-" * len(header)]
        for kind in KINDS:
            entry = self.by_type[kind]
            if entry["macs"] or entry["params"]:
                macs_share, params_share = self.share(kind)
                lines.append(
                    f"{kind:<10} {entry['macs']:>15,} {macs_share:>8.2%} {entry['params']:>12,} "
                    f"{params_share:>9.2%}"
                )
        lines += [
            "-" * len(header),
            f"MACs {self.macs:,} ({self.macs / 1e6:,.1f}M)   params {self.params:,} "
            f"(trainable {self.trainable_params:,})   peak activations "
            f"{self.peak_activation_bytes / 2**20:,.2f} MiB",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        result.pop("layers")
        return result


def _size(shape: tuple) -> int:
    return int(math.prod(d for d in shape[1:] if d is not None))


def _kind_and_macs(layer: keras.layers.Layer, in_shape: tuple, out_shape: tuple) -> tuple:
    """(kind or None, MACs) of one call of `layer`, for one image."""
    if isinstance(layer, _DEPTHWISE):
        macs = _size(out_shape[:-1] + (1,)) * math.prod(layer.kernel_size) * out_shape[-1]
        return "depthwise", macs
    if isinstance(layer, _SEPARABLE):
        depthwise = _size(out_shape[:-1] + (1,)) * math.prod(layer.kernel_size) * in_shape[-1]
        depthwise *= layer.depth_multiplier
        pointwise = _size(out_shape) * in_shape[-1] * layer.depth_multiplier
        return "depthwise", depthwise + pointwise
    if isinstance(layer, _CONV):
        per_output = math.prod(layer.kernel_size) * in_shape[-1] // layer.groups
        macs = _size(out_shape) * per_output
        if layer.groups > 1:
            kind = "grouped"
        elif all(k == 1 for k in layer.kernel_size):
            kind = "conv1x1"
        else:
            kind = "conv"
        return kind, macs
    if isinstance(layer, keras.layers.Dense):
        return "dense", _size(in_shape) * layer.units
    return None, 0


def _node_shapes(node: Any) -> tuple[tuple, tuple]:
    return tuple(node.input_tensors[0].shape), tuple(node.outputs[0].shape)


def _rows(model: keras.Model) -> list[LayerRow]:
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and _keras_internals.functional_graph(layer) is layer:
            rows += [dataclasses.replace(r, name=f"{layer.name}/{r.name}") for r in _rows(layer)]
            continue
        for node in _keras_internals.inbound_nodes(layer):
            if not node.input_tensors:
                continue
            in_shape, out_shape = _node_shapes(node)
            kind, macs = _kind_and_macs(layer, in_shape, out_shape)
            rows.append(
                LayerRow(
                    layer.name,
                    kind or type(layer).__name__,
                    out_shape[1:],
                    macs,
                    layer.count_params(),
                )
            )
    return rows


def _peak_activation_bytes(model: keras.Model, dtype_bytes: int = 4) -> int:
    """Largest total size of the tensors alive at once, running the graph in order (batch 1).

    Identity layers alias their input; every other layer's output is a new buffer, freed after its
    last consumer. An estimate: it ignores in-place kernels and the runtime's arena planning.
    """
    graph = _keras_internals.functional_graph(model)
    if graph is None:
        return 0
    by_depth = _keras_internals.nodes_by_depth(graph)
    nodes = [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]]
    nodes = [n for n in nodes if n.operation is not None and not n.is_input]
    uses: dict[int, int] = {id(t): 1 for t in graph.outputs}
    for node in nodes:
        for tensor in node.input_tensors:
            uses[id(tensor)] = uses.get(id(tensor), 0) + 1
    buffer: dict[int, int] = {}
    pending: dict[int, int] = {}
    live: dict[int, int] = {}

    def produce(tensor: Any, source: Any = None) -> None:
        key = buffer[id(source)] if source is not None else id(tensor)
        buffer[id(tensor)] = key
        if source is None:
            live[key] = _size(tuple(tensor.shape)) * dtype_bytes
        pending[key] = pending.get(key, 0) + uses.get(id(tensor), 0)

    for tensor in graph.inputs:
        produce(tensor)
    peak = sum(live.values())
    for node in nodes:
        alias = node.input_tensors[0] if isinstance(node.operation, keras.layers.Identity) else None
        for tensor in node.outputs:
            produce(tensor, alias)
        peak = max(peak, sum(live.values()))
        for tensor in node.input_tensors:
            key = buffer[id(tensor)]
            pending[key] -= 1
            if pending[key] <= 0:
                live.pop(key, None)
    return peak


def profile(model: keras.Model) -> Profile:
    """Parameters, MACs (per image) by layer type, per-layer rows and peak activation memory."""
    rows = _rows(model)
    by_type = {kind: {"macs": 0, "params": 0} for kind in KINDS}
    for row in rows:
        if row.kind in by_type:
            by_type[row.kind]["macs"] += row.macs
            by_type[row.kind]["params"] += row.params
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    input_shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    return Profile(
        name=model.name,
        input_shape=input_shape,
        params=int(model.count_params()),
        trainable_params=trainable,
        macs=sum(v["macs"] for v in by_type.values()),
        by_type=by_type,
        layers=tuple(rows),
        peak_activation_bytes=_peak_activation_bytes(model),
    )


def weight_bytes(model: keras.Model) -> int:
    """Bytes of all weights at their stored dtypes (float32 weights take 4 bytes each)."""
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.weights))
