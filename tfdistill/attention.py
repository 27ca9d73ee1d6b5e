"""Attention transfer (Zagoruyko & Komodakis 2017): what to tap, and how it adds to the loss.

`AttentionTransfer` pairs student and teacher layers; the Distiller taps them through one
multi-output functional model per network, so each network still runs forward once a step.
`GradientAttentionTransfer` matches the input gradients ∂CE/∂x of the two networks, trained by
double backprop.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdistill import resolution
from tfdistill.folding import functional_graph, graph_nodes
from tfdistill.losses import (
    attention_map,
    attention_transfer_per_example,
    check_p,
    check_resizable,
    input_gradient_distance,
)
from tfdistill.models.registry import stage_outputs


@dataclasses.dataclass(frozen=True)
class Pair:
    """A student layer whose output's attention map must match a teacher layer's."""

    student: str
    teacher: str
    student_size: tuple[int, int]
    teacher_size: tuple[int, int]
    student_tensor: Any = dataclasses.field(default=None, compare=False, repr=False)
    teacher_tensor: Any = dataclasses.field(default=None, compare=False, repr=False)
    # The models take images of different sizes: the teacher's map is resampled to the
    # student's where the two differ (else the student's to the teacher's).
    teacher_to_student: bool = False


def check_beta(beta: float, what: str) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
        raise ValueError(f"{what} beta must be a number >= 0, got {beta!r}.")
    return float(beta)


def check_functional(model: keras.Model, role: str, method: str) -> None:
    """Tapping layers needs the model's graph: a functional or Sequential model."""
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        raise ValueError(
            f"{method} needs the {role}'s layer graph, but {model.name!r} is a subclassed or "
            "unbuilt model. Build it with the functional API or as a Sequential with an Input."
        )


def layer_output(model: keras.Model, name: str, role: str) -> Any:
    """The output of layer `name` in this model's graph (a layer shared with another model
    has other outputs too)."""
    calls = [node for node in graph_nodes(functional_graph(model)) if node.operation.name == name]
    if not calls:
        raise ValueError(
            f"The {role} has no layer named {name!r}; its stage outputs are "
            f"{sorted(_candidates(model).values()) or 'none (no 4-D layer outputs)'}."
        )
    if len(calls) > 1 or len(calls[0].outputs) != 1:
        raise ValueError(
            f"The {role}'s layer {name!r} is called more than once or has several outputs, so "
            "which output to tap is ambiguous; tap a layer with one output, used once."
        )
    return calls[0].outputs[0]


def static_map_size(tensor: Any, model: keras.Model, name: str) -> tuple[int, int]:
    shape = tuple(tensor.shape)
    if len(shape) != 4:
        raise ValueError(
            f"Layer {name!r} of {model.name!r} gives {shape}; attention transfer and hints tap "
            "(B, H, W, C) feature maps."
        )
    if shape[1] is None or shape[2] is None:
        raise ValueError(
            f"Layer {name!r} of {model.name!r} has an unknown spatial size {shape[1:3]}; "
            "tapping features needs a fixed input size (keras.Input(shape=(H, W, C)))."
        )
    return int(shape[1]), int(shape[2])


def _candidates(model: keras.Model) -> dict[tuple[int, int], str]:
    """Resolution (H, W) -> the layer ending it: named stage outputs for zoo models, else the
    last layer at each resolution. Single-position maps (1×1) carry nothing and are left out."""
    named = set(stage_outputs(model))
    found: dict[tuple[int, int], str] = {}
    for node in graph_nodes(functional_graph(model)):
        layer = node.operation
        if isinstance(layer, keras.layers.InputLayer) or len(node.outputs) != 1:
            continue
        if named and layer.name not in named:
            continue
        shape = tuple(node.outputs[0].shape)
        if len(shape) == 4 and shape[1] is not None and shape[2] is not None:
            if shape[1] * shape[2] > 1:
                found[(int(shape[1]), int(shape[2]))] = layer.name
    return found


def _by_stride(taps: dict[tuple[int, int], str], model: keras.Model) -> dict[tuple[int, int], str]:
    """The taps of `_candidates` keyed by stride (round(H_in / H), round(W_in / W))."""
    h_in, w_in = resolution.static_image_size(model)
    return {(round(h_in / h), round(w_in / w)): name for (h, w), name in taps.items()}


@keras.saving.register_keras_serializable(package="tfdistill")
class AttentionTransfer:
    """Activation-based attention transfer; give it as `Distiller(..., attention=...)`.

    The Distiller's loss gains beta / 2 · Σ_pairs mean((map_s − map_t)²), where a map is
    `tfdistill.losses.attention_map` of a (B, H, W, C) layer output. The unweighted sum is logged
    as `attention_loss`.

    pairs: "auto" pairs the stage outputs of the two models that share a spatial resolution (zoo
        models name theirs; for others, the last layer at each resolution), or a list of
        (student_layer, teacher_layer) names. An explicit pair of different resolutions an
        integer factor apart resamples the student's map to the teacher's, with a warning.

    Teacher and student taking images of different sizes (`Distiller(teacher_input_size=...)`):
    "auto" pairs the stages at the same stride (input side / map side, rounded), and wherever a
    pair's maps differ in size the teacher's is resampled to the student's, at any ratio. What
    is resampled is the teacher's un-normalised map mean_c |A|^p, by area mean when it is the
    larger (each student cell gets the mean attention energy of the teacher cells it covers),
    bilinearly otherwise, and then L2-normalised like the student's: resampling the activation
    (B, H, W, C) would cost C times as much and average before the power, and resampling the
    normalised map would lose the unit norm the loss compares. The student's map, and with it its
    gradient, stays on its own grid. Same-size pairs are computed exactly as before.
    """

    def __init__(
        self,
        pairs: str | Sequence[tuple[str, str]] = "auto",
        beta: float = 1000.0,
        p: float = 2.0,
    ):
        if isinstance(pairs, str):
            if pairs != "auto":
                raise ValueError(
                    f'pairs must be "auto" or a list of (student_layer, teacher_layer), '
                    f"got {pairs!r}."
                )
        else:
            pairs = [tuple(pair) for pair in pairs]
            if not pairs or any(
                len(pair) != 2 or not all(isinstance(n, str) for n in pair) for pair in pairs
            ):
                raise ValueError(
                    f"pairs must be a non-empty list of (student_layer, teacher_layer) names, "
                    f"got {pairs!r}."
                )
        self.pairs = pairs
        self.beta = check_beta(beta, "AttentionTransfer")
        self.p = check_p(p)

    def resolve(self, student: keras.Model, teacher: keras.Model) -> list[Pair]:
        """The concrete layer pairs for these two models, shallow to deep."""
        for role, model in (("student", student), ("teacher", teacher)):
            check_functional(model, role, "Attention transfer")
        differ = resolution.input_shapes_differ(student, teacher)
        if self.pairs == "auto":
            return self._auto(student, teacher, differ)
        resolved = []
        for s_name, t_name in self.pairs:
            s_out = layer_output(student, s_name, "student")
            t_out = layer_output(teacher, t_name, "teacher")
            s_size = static_map_size(s_out, student, s_name)
            t_size = static_map_size(t_out, teacher, t_name)
            if s_size != t_size and not differ:
                check_resizable(s_size, t_size, f" for the pair ({s_name!r}, {t_name!r})")
                warnings.warn(
                    f"Attention pair ({s_name!r}, {t_name!r}): the student's {s_size[0]}x"
                    f"{s_size[1]} map is resampled to the teacher's {t_size[0]}x{t_size[1]}.",
                    stacklevel=3,
                )
            resolved.append(Pair(s_name, t_name, s_size, t_size, s_out, t_out, differ))
        return resolved

    @staticmethod
    def _auto(student: keras.Model, teacher: keras.Model, differ: bool = False) -> list[Pair]:
        """Pairs of stages at one resolution or, for models of different input sizes, at one
        stride."""
        s_taps, t_taps = _candidates(student), _candidates(teacher)
        if differ:
            s_taps, t_taps = _by_stride(s_taps, student), _by_stride(t_taps, teacher)
        # Shallow to deep: larger maps first, or smaller strides.
        order = (lambda key: key) if differ else (lambda hw: (-hw[0] * hw[1], hw))
        shared = sorted(set(s_taps) & set(t_taps), key=order)
        if not shared:
            what = "stride" if differ else "spatial resolution"
            raise ValueError(
                f"pairs='auto' found no {what} shared by the student "
                f"{sorted(s_taps, reverse=True)} and the teacher {sorted(t_taps, reverse=True)}; "
                "give pairs=[(student_layer, teacher_layer), ...]."
            )
        pairs = []
        for key in shared:
            s_out = layer_output(student, s_taps[key], "student")
            t_out = layer_output(teacher, t_taps[key], "teacher")
            s_size = static_map_size(s_out, student, s_taps[key])
            t_size = static_map_size(t_out, teacher, t_taps[key])
            pairs.append(Pair(s_taps[key], t_taps[key], s_size, t_size, s_out, t_out, differ))
        return pairs

    def per_example(
        self,
        student_features: Sequence[tf.Tensor],
        teacher_features: Sequence[tf.Tensor],
        pairs: Sequence[Pair] | None = None,
    ) -> tf.Tensor:
        """(B,) Σ over pairs of the mean over positions of (map_s − map_t)², unweighted; `pairs`
        (from `resolve`) say which map to resample where sizes differ."""
        flags = [p.teacher_to_student for p in pairs] if pairs else [False] * len(student_features)
        terms = [
            attention_transfer_per_example(s, tf.stop_gradient(t), self.p, to_student)
            for s, t, to_student in zip(student_features, teacher_features, flags, strict=True)
        ]
        return tf.add_n(terms)

    def get_config(self) -> dict:
        pairs = self.pairs if isinstance(self.pairs, str) else [list(p) for p in self.pairs]
        return {"pairs": pairs, "beta": self.beta, "p": self.p}

    @classmethod
    def from_config(cls, config: dict) -> AttentionTransfer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"AttentionTransfer(pairs={self.pairs!r}, beta={self.beta}, p={self.p})"


@keras.saving.register_keras_serializable(package="tfdistill")
class GradientAttentionTransfer:
    """Gradient-based attention transfer: the loss gains beta / 2 · ‖J_s − J_t‖₂ per example,
    averaged over the batch, where J = ∂CE/∂x (B, ...) is a network's input gradient.

    The cross-entropy uses the label where there is one and the teacher's top class where the
    example is unlabeled. Trained by double backprop; logged unweighted as
    `gradient_attention_loss`. The default beta of 0.1 follows `benchmarks/ablation.py`: on the
    embedded digits, beta 1 cost the student 14 points; 0.1 was within noise of no teacher.
    """

    def __init__(self, beta: float = 0.1):
        self.beta = check_beta(beta, "GradientAttentionTransfer")

    @staticmethod
    def per_example(student_grad: tf.Tensor, teacher_grad: tf.Tensor) -> tf.Tensor:
        """(B,) ‖J_s − J_t‖₂."""
        return input_gradient_distance(student_grad, tf.stop_gradient(teacher_grad))

    def get_config(self) -> dict:
        return {"beta": self.beta}

    @classmethod
    def from_config(cls, config: dict) -> GradientAttentionTransfer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"GradientAttentionTransfer(beta={self.beta})"


AttentionLike = AttentionTransfer | GradientAttentionTransfer


def stage_maps(
    model: keras.Model, layers: Sequence[str], images: Any, p: float = 2.0
) -> list[np.ndarray]:
    """For `images` (B, H, W, C) at `model`'s input size, the attention map the loss compares
    (mean over channels of |A|^p, L2-normalised per example) of each of `layers`' outputs, as
    (B, H_l, W_l) arrays: what `AttentionTransfer` matches, drawn as pictures."""
    taps = keras.Model(model.inputs, [layer_output(model, name, "model") for name in layers])
    outputs = taps(np.asarray(images), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [
        np.asarray(attention_map(out, p)).reshape(-1, *static_map_size(out, model, name))
        for out, name in zip(outputs, layers, strict=True)
    ]
