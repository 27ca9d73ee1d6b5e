"""Structured sparsity while training: penalties that drive whole channels towards zero.

Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network
Slimming") adds an L1 penalty on the scale γ of every BatchNormalization layer; a channel whose γ
reaches zero outputs only its β, so it can be cut. Group lasso (Wen et al. 2016, "Learning
Structured Sparsity in Deep Neural Networks") adds the L2 norm of every output filter of the
convolutions and dense layers, whose (sub)gradient pulls a whole filter to zero at once:

    penalty = λ · Σ_BN Σ_c |γ_c|  +  μ · Σ_layers Σ_f ‖W_f‖₂

W_f is filter f of a kernel: `kernel[..., f]` of a convolution (kh, kw, C_in / groups, F), a
dense layer (D, F) or the pointwise half of a separable convolution (1, 1, C·m, F), and
`kernel[:, :, c, m]` (kh, kw) of a depthwise convolution (kh, kw, C, m), whose output channel is
c·m + m'. The layer that makes the model's output (the classifier: the last one with a kernel)
is left out of the group lasso, since its filters are the classes; transposed convolutions too.

`StructuredSparsity.apply(student)` attaches the penalty to the student's trainable variables
as Keras 3 regularizers, so `student.losses` carries it: the Distiller (which adds
`student.losses`, divided by the replicas of a `tf.distribute` strategy, whose gradients add
up) and a plain `student.fit` apply it with no other change. Only the model given is penalized:
a teacher's losses never enter the Distiller's loss. The tf_keras twins of the TFMOT stages do
not inherit it (the bridge copies layer configs, not variable regularizers): `compress.prune`
and `compress.quantize_aware` take `sparsity=` and add `penalty(twin)` to the fine-tuning loss.

This module imports neither TFMOT nor tf_keras: `penalty` works on a tf_keras model (TFMOT
wrappers included) by walking its layers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import keras
import tensorflow as tf

_BATCH_NORMS = {"BatchNormalization", "BatchNormalizationBase", "SyncBatchNormalization"}
_KERNELS = {"Conv1D", "Conv2D", "Conv3D", "Conv", "BaseConv", "Dense"}


class L1Penalty:
    """strength · Σ|x| of a BatchNorm scale γ (C,); float32 scalar."""

    def __init__(self, strength: float):
        self.strength = float(strength)

    def __call__(self, x: Any) -> tf.Tensor:
        return self.strength * tf.reduce_sum(tf.abs(tf.cast(x, tf.float32)))

    def __repr__(self) -> str:
        return f"L1Penalty({self.strength})"


class GroupLassoPenalty:
    """strength · Σ_f ‖W_f‖₂ of a kernel whose last `filter_axes` axes index its filters (1 for
    convolutions and dense layers, 2 for a depthwise kernel (kh, kw, C, m)); float32 scalar.
    A filter of zeros has norm 0 and gradient 0 (not NaN)."""

    def __init__(self, strength: float, filter_axes: int = 1):
        self.strength = float(strength)
        self.filter_axes = filter_axes

    def __call__(self, x: Any) -> tf.Tensor:
        return self.strength * tf.reduce_sum(filter_norms(x, self.filter_axes))

    def __repr__(self) -> str:
        return f"GroupLassoPenalty({self.strength}, filter_axes={self.filter_axes})"


def filter_norms(kernel: Any, filter_axes: int = 1) -> tf.Tensor:
    """‖W_f‖₂ of every filter of `kernel`: float32, of the shape of its last `filter_axes`
    axes ((F,) for a (..., F) kernel, (C, m) for a depthwise (kh, kw, C, m) one). Exact at zero
    with a zero gradient there."""
    kernel = tf.cast(kernel, tf.float32)
    axes = list(range(len(kernel.shape) - filter_axes))
    squares = tf.reduce_sum(tf.square(kernel), axis=axes)
    positive = squares > 0.0
    return tf.where(positive, tf.sqrt(tf.where(positive, squares, 1.0)), 0.0)


class Target(NamedTuple):
    """One penalized variable: its layer's name, "bn_l1" or "group_lasso", the variable (a
    Keras 3 or tf variable) and the penalty of its value."""

    layer: str
    kind: str
    variable: Any
    penalty: L1Penalty | GroupLassoPenalty


class _Attached(keras.regularizers.Regularizer):
    """The regularizer `apply` puts on a variable: its `previous` one (kept, e.g. a
    kernel_regularizer) plus the structured penalty `term`; `remove` puts `previous` back.
    Not serialized: layer configs keep their own regularizers, not this one."""

    def __init__(self, term: L1Penalty | GroupLassoPenalty, previous: Any = None):
        self.term = term
        self.previous = previous

    def __call__(self, x: Any) -> tf.Tensor:
        value = self.term(x)
        if self.previous is not None:
            value = value + tf.cast(self.previous(x), tf.float32)
        return value

    def get_config(self) -> dict:
        return {"term": repr(self.term), "previous": repr(self.previous)}


def _check_strength(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0.0:
        raise ValueError(f"{name} must be a number >= 0 (0: off), got {value!r}.")
    return float(value)


def _class_names(layer: Any) -> set[str]:
    return {cls.__name__ for cls in type(layer).__mro__}


def _layers(model: Any) -> list[Any]:
    """Every leaf layer of `model` in its layer order (topological for functional models):
    nested models walked into, TFMOT and Keras wrappers replaced by the layer they wrap."""
    found: list[Any] = []
    seen: set[int] = set()

    def visit(layer: Any) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        inner = getattr(layer, "layer", None)
        if isinstance(getattr(layer, "layers", None), list):
            for child in layer.layers:
                visit(child)
        elif inner is not None and hasattr(inner, "trainable_weights"):
            visit(inner)
        else:
            found.append(layer)

    for layer in model.layers:
        visit(layer)
    return found


def _weight(layer: Any, attributes: tuple[str, ...], trainable: set[int], by_name: dict) -> Any:
    """The trainable variable `layer.<attribute>` of the first of `attributes` it has, or None.
    TFMOT's quantize wrapper moves a kernel into its own weights and sets the attribute to the
    fake-quantized tensor: then the model's trainable variable named "<layer>/<attribute>"
    is the one."""
    for attribute in attributes:
        value = getattr(layer, attribute, None)
        if value is not None and id(value) in trainable:
            return value
        if f"{layer.name}/{attribute}" in by_name:
            return by_name[f"{layer.name}/{attribute}"]
    return None


def _kernel_of(layer: Any) -> tuple[tuple[str, ...], int] | None:
    """(attribute names, filter axes) of the kernel whose output filters the group lasso
    takes: Keras 3 calls a depthwise kernel `kernel`, tf_keras `depthwise_kernel`."""
    names = _class_names(layer)
    if any("Transpose" in name for name in names):
        return None
    if any("SeparableConv" in name for name in names):
        return ("pointwise_kernel",), 1
    if any("DepthwiseConv" in name for name in names):
        return ("depthwise_kernel", "kernel"), 2
    if names & _KERNELS:
        return ("kernel",), 1
    return None


@dataclasses.dataclass(frozen=True)
class StructuredSparsity:
    """λ · Σ|γ| over every BatchNormalization scale (`bn_l1` = λ, network slimming) plus
    μ · Σ_f ‖W_f‖₂ over the output filters of every convolution and dense layer but the
    classifier (`group_lasso` = μ); see the module's docstring. 0 turns a term off. Liu et al.
    chose λ from 1e-3, 1e-4 and 1e-5 (1e-4 for VGG, 1e-5 for ResNet and DenseNet on CIFAR).

    Only trainable variables are penalized (a frozen layer, or a teacher, never is).
    `apply(model)` attaches it to a Keras 3 model's variables (`model.losses`); `penalty(model)`
    computes it for a Keras 3 or tf_keras model."""

    bn_l1: float = 0.0
    group_lasso: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "bn_l1", _check_strength("bn_l1", self.bn_l1))
        object.__setattr__(self, "group_lasso", _check_strength("group_lasso", self.group_lasso))

    @property
    def enabled(self) -> bool:
        return self.bn_l1 > 0.0 or self.group_lasso > 0.0

    def get_config(self) -> dict:
        return {"bn_l1": self.bn_l1, "group_lasso": self.group_lasso}

    @classmethod
    def from_config(cls, config: dict) -> StructuredSparsity:
        return cls(**config)

    def targets(self, model: Any) -> list[Target]:
        """The trainable variables of `model` (Keras 3 or tf_keras, TFMOT-wrapped or not) this
        penalizes, in layer order, each with its penalty; terms at strength 0 are left out."""
        trainable = {id(v) for v in model.trainable_weights}
        by_name = {v.name.split(":")[0]: v for v in model.trainable_weights if "/" in v.name}
        found, kernels = [], []
        for layer in _layers(model):
            if _class_names(layer) & _BATCH_NORMS:
                gamma = _weight(layer, ("gamma",), trainable, by_name)
                if gamma is not None and self.bn_l1 > 0.0:
                    found.append(Target(layer.name, "bn_l1", gamma, L1Penalty(self.bn_l1)))
                continue
            kernel = _kernel_of(layer)
            if kernel is not None:
                variable = _weight(layer, kernel[0], trainable, by_name)
                if variable is not None:
                    term = GroupLassoPenalty(self.group_lasso, kernel[1])
                    kernels.append(Target(layer.name, "group_lasso", variable, term))
        if self.group_lasso > 0.0:
            found.extend(kernels[:-1])  # the last: the classifier, whose filters are classes
        return found

    def penalty(self, model: Any) -> tf.Tensor:
        """The penalty of `model`'s current weights, a float32 scalar (0 when off)."""
        terms = [target.penalty(target.variable) for target in self.targets(model)]
        return tf.add_n(terms) if terms else tf.constant(0.0)

    def apply(self, model: keras.Model) -> keras.Model:
        """Attaches the penalty to the Keras 3 `model`'s variables as regularizers, so that
        `model.losses` carries it; returns `model`. Regularizers already there stay (the
        penalty adds to them); an earlier `apply` is replaced, and one with every strength 0
        just removes it. Held by the variables, not the layer configs: a `.keras` round trip,
        `clone_model` or the tf_keras twin drop it (apply it again to the new model)."""
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"apply needs a Keras 3 model, got {type(model).__name__}; for a tf_keras model "
                "add StructuredSparsity.penalty(model) to the loss (compress.prune and "
                "quantize_aware take sparsity=)."
            )
        remove(model)
        for target in self.targets(model):
            variable = target.variable
            variable.regularizer = _Attached(target.penalty, variable.regularizer)
        return model


def remove(model: keras.Model) -> keras.Model:
    """Takes every penalty `StructuredSparsity.apply` attached off `model`'s variables, putting
    back the regularizers they had; returns `model`."""
    for variable in model.weights:
        attached = getattr(variable, "regularizer", None)
        if isinstance(attached, _Attached):
            variable.regularizer = attached.previous
    return model


__all__ = [
    "GroupLassoPenalty",
    "L1Penalty",
    "StructuredSparsity",
    "Target",
    "filter_norms",
    "remove",
]
