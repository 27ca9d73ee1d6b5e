"""FitNets hints (Romero et al., ICLR 2015): the student's intermediate features, through a
trainable adapter, regress the teacher's.

The Distiller taps the paired layers in the same forward pass as attention transfer; the
adapters are the Distiller's own layers, trained with the student and never part of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from tfdistill import resolution
from tfdistill.attention import (
    AttentionTransfer,
    GradientAttentionTransfer,
    Pair,
    check_beta,
    check_functional,
    layer_output,
    static_map_size,
)

PAIRINGS = ("auto", "all")


@keras.saving.register_keras_serializable(package="tfdistill")
class HintAdapter(keras.layers.Layer):
    """FitNets' regressor r: (B, h, w, c_s) -> (B, H, W, c_t), a 1×1 convolution to the
    teacher's channels, resampled to the teacher's grid where (h, w) ≠ (H, W)
    (`resolution.resize_images`: bilinear, antialiased when shrinking; a 1×1 convolution and a
    spatial resize commute), then BatchNormalization, synchronized: under `tf.distribute` its
    batch statistics are the global batch's, as on one device. Computes in float32."""

    def __init__(self, channels: int, size: Sequence[int], **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.size = (int(size[0]), int(size[1]))
        self.conv = keras.layers.Conv2D(
            self.channels, 1, use_bias=False, dtype="float32", name="conv"
        )
        self.norm = keras.layers.BatchNormalization(dtype="float32", synchronized=True, name="bn")

    def build(self, input_shape: Any) -> None:
        self.conv.build(input_shape)
        self.norm.build((*input_shape[:3], self.channels))
        self.built = True

    def call(self, features: tf.Tensor, training: bool = False) -> tf.Tensor:
        mapped = self.conv(tf.cast(features, tf.float32))
        mapped = resolution.resize_images(mapped, self.size)
        return self.norm(mapped, training=training)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], *self.size, self.channels)

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels, "size": list(self.size)}


def _hint_shape(tensor: Any, model: keras.Model, name: str) -> tuple[int, int, int]:
    """(H, W, C) of a tapped (B, H, W, C) feature map, or a ValueError naming the layer."""
    shape = tuple(tensor.shape)
    if len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            f"Layer {name!r} of {model.name!r} gives {shape}; no adapter maps it: FitNets hints "
            "pair (B, H, W, C) feature maps of known channels. Pair convolutional stages."
        )
    return (*static_map_size(tensor, model, name), int(shape[-1]))


@keras.saving.register_keras_serializable(package="tfdistill")
class FeatureHint:
    """FitNets hints; give it as `Distiller(..., features=...)` (beside attention transfer).

    The Distiller's loss gains beta · Σ_pairs mean((r(f_s) − f_t)²), the mean over the
    teacher's (H, W, C) elements and the batch, f_s (B, h, w, c_s) and f_t (B, H, W, C) the
    paired layers' outputs and r a `HintAdapter` (1×1 conv + BN, resampled to (H, W)). This
    is `beta · F.mse_loss(regressor(f_s), f_t)` of the reference implementations (mdistiller,
    RepDistiller), where beta is 100 with cross-entropy weight 1 (alpha = 1 in tfdistill), and
    trains the hint jointly rather than in FitNets' first stage. Logged unweighted as
    `hint_loss`.

    pairs: "auto" one pair, the middle of the stages the two models share (at one resolution,
    or at one stride for models of different input sizes), as FitNets hints the middle layer
    (for a CIFAR ResNet, the second of three groups); "all" every shared stage; or a list of
    (student_layer, teacher_layer) names, whose maps may differ in size at any ratio.
    With a teacher ensemble the hints come from the first teacher.
    """

    def __init__(self, pairs: str | Sequence[tuple[str, str]] = "auto", beta: float = 100.0):
        if isinstance(pairs, str):
            if pairs not in PAIRINGS:
                raise ValueError(
                    f'pairs must be "auto", "all" or a list of (student_layer, teacher_layer), '
                    f"got {pairs!r}."
                )
            self.pairs: Any = pairs
        else:
            self.pairs = AttentionTransfer(pairs).pairs
        self.beta = check_beta(beta, "FeatureHint")

    def resolve(self, student: keras.Model, teacher: keras.Model) -> list[Pair]:
        """The concrete layer pairs for these two models, shallow to deep."""
        for role, model in (("student", student), ("teacher", teacher)):
            check_functional(model, role, "FitNets hints")
        if isinstance(self.pairs, str):
            differ = resolution.input_shapes_differ(student, teacher)
            shared = AttentionTransfer._auto(student, teacher, differ)
            found = shared if self.pairs == "all" else [shared[len(shared) // 2]]
            named = [(p.student, p.teacher) for p in found]
        else:
            named = self.pairs
        resolved = []
        for s_name, t_name in named:
            s_out = layer_output(student, s_name, "student")
            t_out = layer_output(teacher, t_name, "teacher")
            s_shape = _hint_shape(s_out, student, s_name)
            t_shape = _hint_shape(t_out, teacher, t_name)
            resolved.append(Pair(s_name, t_name, s_shape[:2], t_shape[:2], s_out, t_out))
        return resolved

    @staticmethod
    def adapters(pairs: Sequence[Pair]) -> list[HintAdapter]:
        """One built `HintAdapter` per pair, to the teacher's channels and grid."""
        made = []
        for pair in pairs:
            channels = int(pair.teacher_tensor.shape[-1])
            adapter = HintAdapter(channels, pair.teacher_size, name=f"hint_{pair.student}")
            adapter.build((None, *pair.student_size, int(pair.student_tensor.shape[-1])))
            made.append(adapter)
        return made

    @staticmethod
    def per_example(
        student_features: Sequence[tf.Tensor],
        teacher_features: Sequence[tf.Tensor],
        adapters: Sequence[HintAdapter],
        training: bool,
    ) -> tf.Tensor:
        """(B,) Σ over pairs of each example's mean over (H, W, C) of (r(f_s) − f_t)²."""
        terms = []
        for s, t, adapter in zip(student_features, teacher_features, adapters, strict=True):
            diff = adapter(s, training=training) - tf.stop_gradient(tf.cast(t, tf.float32))
            terms.append(tf.reduce_mean(tf.square(diff), axis=[1, 2, 3]))
        return tf.add_n(terms)

    def get_config(self) -> dict:
        pairs = self.pairs if isinstance(self.pairs, str) else [list(p) for p in self.pairs]
        return {"pairs": pairs, "beta": self.beta}

    @classmethod
    def from_config(cls, config: dict) -> FeatureHint:
        return cls(**config)

    def __repr__(self) -> str:
        return f"FeatureHint(pairs={self.pairs!r}, beta={self.beta})"


FeatureMethod = AttentionTransfer | GradientAttentionTransfer | FeatureHint
KINDS = (AttentionTransfer, GradientAttentionTransfer, FeatureHint)


def split_features(
    features: FeatureMethod | Sequence[FeatureMethod] | None,
) -> tuple[AttentionTransfer | None, GradientAttentionTransfer | None, FeatureHint | None]:
    """`Distiller(features=...)`: None, one method, or a list with at most one of each kind."""
    if features is None:
        return None, None, None
    methods = list(features) if isinstance(features, (list, tuple)) else [features]
    found = [[m for m in methods if type(m) is kind] for kind in KINDS]
    if sum(map(len, found)) != len(methods) or any(len(f) > 1 for f in found):
        raise ValueError(
            "features must be None, an AttentionTransfer, a GradientAttentionTransfer, a "
            f"FeatureHint, or a list with at most one of each; got {features!r}."
        )
    activation, gradient, hint = ((f or [None])[0] for f in found)
    return activation, gradient, hint
