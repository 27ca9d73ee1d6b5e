"""Hinton knowledge distillation as a `keras.Model` you `compile()` and `fit()`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from tfdistill import _keras_internals, distribute, precision, resolution
from tfdistill import outputs as outputs_lib
from tfdistill.attention import check_functional
from tfdistill.batches import INPUTS as INPUTS
from tfdistill.batches import TEACHER_LOGITS as TEACHER_LOGITS
from tfdistill.batches import split_cached, split_views
from tfdistill.ensemble import members_of
from tfdistill.folding import folded_forward
from tfdistill.hints import FeatureHint, FeatureMethod, split_features
from tfdistill.losses import (
    HardTargetLoss,
    LogitMethod,
    LossLike,
    SoftTargetLoss,
    check_ensemble_weights,
    check_temperature,
    ensemble_logits,
    is_one_hot,
    labeled_mask,
)


def _single_output(model: keras.Model, role: str) -> Any:
    outputs = getattr(model, "outputs", None)
    if outputs is None:
        return None
    if len(outputs) != 1:
        raise ValueError(f"The {role} must have one output (class scores), it has {len(outputs)}.")
    return outputs[0]


def check_models(student: keras.Model, teacher: keras.Model) -> None:
    for role, model in (("student", student), ("teacher", teacher)):
        if not isinstance(model, keras.Model):
            raise ValueError(f"The {role} must be a keras.Model, not {type(model).__name__}.")
    s_out, t_out = _single_output(student, "student"), _single_output(teacher, "teacher")
    if s_out is not None and t_out is not None:
        check_class_counts(s_out.shape[-1], t_out.shape[-1])
    s_in, t_in = getattr(student, "inputs", None), getattr(teacher, "inputs", None)
    if s_in and t_in:
        s_shape, t_shape = tuple(s_in[0].shape[1:]), tuple(t_in[0].shape[1:])
        # Images (H, W, C) may differ in size (see `resolution`), not in channels.
        fixed = slice(2, None) if len(s_shape) == 3 else slice(None)
        compatible = len(s_shape) == len(t_shape) and all(
            a is None or b is None or a == b
            for a, b in zip(s_shape[fixed], t_shape[fixed], strict=True)
        )
        if len(s_in) != len(t_in) or not compatible:
            raise ValueError(
                f"The student and teacher take different inputs: student {s_shape}, teacher "
                f"{t_shape}. Both must see the same images: images may differ in height and "
                "width (teacher_input_size), not in channels or rank."
            )


def check_ensemble(teachers: Sequence[keras.Model]) -> list[keras.Model]:
    """The teachers of an ensemble: at least one, each a model with one output, all predicting
    the same classes from images of one size."""
    if not teachers:
        raise ValueError("The teacher ensemble is empty; give a keras.Model or a list of them.")
    classes, sizes = [], []
    for i, teacher in enumerate(teachers):
        if not isinstance(teacher, keras.Model):
            raise ValueError(f"Teacher {i} must be a keras.Model, not {type(teacher).__name__}.")
        out = _single_output(teacher, f"teacher {i}")
        classes.append(None if out is None else out.shape[-1])
        sizes.append(resolution.static_image_size(teacher))
    if len(set(classes) - {None}) > 1:
        raise ValueError(
            f"The ensemble's teachers predict different numbers of classes {classes}; "
            "ensembled soft targets need the same classes from every teacher."
        )
    if len(set(sizes) - {None}) > 1:
        raise ValueError(
            f"The ensemble's teachers take images of different sizes {sizes}; give teachers of "
            "one input size (resize a teacher inside its own model if needed)."
        )
    return list(teachers)


def check_class_counts(student_classes: int | None, teacher_classes: int | None) -> None:
    if student_classes is not None and teacher_classes is not None:
        if student_classes != teacher_classes:
            raise ValueError(
                f"The student predicts {student_classes} classes but the teacher predicts "
                f"{teacher_classes}; distillation needs the same classes."
            )


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    return float(alpha)


XLA_ENV = "TFDISTILL_XLA"


def _slow_under_cpu_xla(layer: keras.layers.Layer) -> bool:
    """Depthwise, separable and grouped convolutions: XLA's CPU backend trained MobileNet v1
    and ShuffleNet v2 students 4.3× and 3.7× slower than TensorFlow's own kernels
    (`benchmarks/xla_cpu.py`)."""
    if isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
        return True
    return isinstance(layer, keras.layers.Conv2D) and layer.groups > 1


def resolve_jit_compile(model: keras.Model) -> bool:
    """What `compile(jit_compile="auto")` means in tfdistill: XLA, also on CPU-only machines
    (where Keras's own "auto" turns it off), unless `model` was made under a `tf.distribute`
    strategy or one is in scope, TensorFlow's op determinism is on, a layer of `model`
    (nested models' too) has `supports_jit=False`, on a machine without a GPU a layer is a
    depthwise, separable or grouped convolution (slower under XLA's CPU backend), or the
    environment variable TFDISTILL_XLA is "off" (each compiled model pays seconds of XLA
    compilation: short runs, tests)."""
    setting = os.environ.get(XLA_ENV, "auto")
    if setting not in ("auto", "off"):
        raise ValueError(f"{XLA_ENV}={setting!r} is not allowed; choose one of ['auto', 'off'].")
    if setting == "off":
        return False
    if _keras_internals.strategy_made_in(model) is not None or tf.distribute.has_strategy():
        return False
    if _keras_internals.op_determinism_enabled():
        return False
    layers = _keras_internals.flatten_layers(model)
    if not tf.config.list_physical_devices("GPU") and any(map(_slow_under_cpu_xla, layers)):
        return False
    return all(layer.supports_jit for layer in layers)


class TeacherPass(NamedTuple):
    """The frozen teacher's outputs for one batch, all without gradient."""

    logits: tf.Tensor
    features: list[tf.Tensor]
    input_grad: tf.Tensor | None
    targets: tf.Tensor | None


class Batch(NamedTuple):
    """One replica's share of a batch: B rows, of which the first `rows` are real."""

    x: Any
    y: Any
    sample_weight: Any
    weights: tf.Tensor  # (B,) float32: the sample weight, 0 on padding rows
    mask: tf.Tensor  # (B,) float32: 1 on labeled real rows
    rows: tf.Tensor  # int32 scalar


class StudentPass(NamedTuple):
    logits: tf.Tensor
    features: list[tf.Tensor]
    input_grad: tf.Tensor | None


def _tap_model(model: keras.Model, taps: list[Any], name: str) -> keras.Model:
    """One functional model giving [model's output, *taps]: the features come from the same
    forward pass as the prediction."""
    return keras.Model(model.inputs, [model.outputs[0], *taps], name=name)


def _float_input(x: Any) -> tf.Tensor:
    if isinstance(x, (dict, list, tuple)):
        raise ValueError(
            "Gradient attention transfer needs a single image tensor as input, got "
            f"{type(x).__name__}."
        )
    x = tf.convert_to_tensor(x)
    return x if x.dtype.is_floating else tf.cast(x, tf.float32)


def _gradient_targets(y: Any, mask: tf.Tensor, teacher_logits: tf.Tensor) -> tf.Tensor:
    """(B, C) one-hot targets of the cross-entropy behind J: the label, or where there is none,
    the teacher's top class."""
    num_classes = teacher_logits.shape[-1]
    guess = tf.one_hot(tf.argmax(teacher_logits, axis=-1), num_classes)
    if y is None:
        return guess
    y = tf.convert_to_tensor(y)
    if is_one_hot(y, num_classes):
        labels = tf.cast(y, tf.float32)
    else:
        sparse = tf.reshape(tf.cast(y, tf.int32), [-1])
        labels = tf.one_hot(tf.maximum(sparse, 0), num_classes)
    return tf.where(mask[:, tf.newaxis] > 0, labels, guess)


def _summed_cross_entropy(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Σ over the batch of −Σ_c t·log softmax(s), so its input gradient is each example's own
    ∂CE/∂x. Written out rather than TensorFlow's fused op, whose gradient softmax − t assumes
    Σ_c t = 1: a row of zero targets (padding) must have zero gradient."""
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    return -tf.reduce_sum(tf.cast(targets, tf.float32) * log_probs)


class LossShare(NamedTuple):
    """`loss_share`'s result: this replica's share and the sums and counts it came from."""

    share: tf.Tensor  # float32 scalar: this replica's share of the global-batch loss
    hard_sum: tf.Tensor  # float32 scalar: Σ weights · hard on this replica
    soft_sum: tf.Tensor | None  # float32 scalar: Σ weights · soft on this replica (or None)
    local_counts: tf.Tensor  # float32 (2,): [rows, labeled rows] on this replica
    global_counts: tf.Tensor  # float32 (2,): the same summed over the replicas


def loss_share(
    hard: tf.Tensor,
    soft: tf.Tensor | None,
    weights: tf.Tensor,
    mask: tf.Tensor,
    rows: tf.Tensor,
    alpha: float | tf.Tensor,
) -> LossShare:
    """This replica's share of the distillation loss of the global batch, the one formula of
    the Distiller and the tf_keras fine-tuner.

    `hard`, `soft`: (B,) float32 per-example losses (hard CE, 0 on unlabeled rows; T²·KL);
    `weights`: (B,) sample weights, 0 on padding rows; `mask`: (B,) 1.0 on labeled real rows;
    `rows`: scalar, the real rows of this replica's B. With N and N_lab the real and labeled
    rows summed over the replicas,

        share = alpha · Σ weights·hard / max(N_lab, 1) + (1 - alpha) · Σ weights·soft / max(N, 1)

    (without a teacher, `soft` None: Σ weights·hard / max(N_lab, 1)). The shares of all
    replicas add up to the loss of the global batch, so summed gradients are its gradient."""
    hard_sum = tf.reduce_sum(weights * hard)
    local_counts = tf.stack([tf.cast(rows, tf.float32), tf.reduce_sum(mask)])
    global_counts = distribute.global_sum(local_counts)
    labeled = tf.maximum(global_counts[1], 1.0)
    if soft is None:
        return LossShare(hard_sum / labeled, hard_sum, None, local_counts, global_counts)
    soft_sum = tf.reduce_sum(weights * soft)
    share = alpha * hard_sum / labeled + (1.0 - alpha) * soft_sum / tf.maximum(
        global_counts[0], 1.0
    )
    return LossShare(share, hard_sum, soft_sum, local_counts, global_counts)


def _architecture(model: keras.Model) -> dict:
    """`model` serialized without its own compile config: the Distiller trains it or holds it
    fixed, so the optimizer it was trained with is not restored (a load would otherwise warn
    that the saved optimizer's variables do not match a fresh one's)."""
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    return config


@keras.saving.register_keras_serializable(package="tfdistill")
class Distiller(keras.Model):
    """Trains `student` on hard labels and the frozen `teacher`'s soft targets.

    loss = alpha · CE(y, s) + (1 - alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the
    global batch. Inputs (B, ...) go to both models; both give (B, C) class scores. Labels are
    (B,) ints or (B, C) one-hot; a label of -1 (or an all-zero one-hot row) marks an unlabeled
    example, which only the soft term sees. Batches shaped `({"inputs": x, "teacher_logits": t},
    y)`, as made by `tfdistill.data.cache_teacher_outputs`, skip the teacher.

    Teacher and student at different resolutions: a batch `({"inputs": x_s, "teacher_inputs":
    x_t}, y)` (`tfdistill.batches.two_views`), x_s (B, h, w, C) and x_t (B, H, W, C) the same
    crops at each model's size, runs the student on x_s and the teacher on x_t; this is the
    path to take. `teacher_input_size` says what a one-view batch x (B, h, w, C) becomes for the
    teacher: "auto" (default) the teacher's own static input size where it differs from the
    student's, (H, W) that size, None unchanged (a teacher of another size then needs two
    views). x is resized inside the step (bilinear, antialiased when shrinking): when the
    teacher is larger that upsamples the student's small image, which gives the teacher no
    detail of its own and warns once. Attention maps and input gradients are compared on the
    student's grid (see `AttentionTransfer`, `resolution.pull_back`).

    `features` (older name `attention`): an `AttentionTransfer`, a `GradientAttentionTransfer`,
    a `FeatureHint`, or a list with at most one of each; their terms add to the loss above (see
    `tfdistill.attention`, `tfdistill.hints`). The student's tapped layers come from its one
    forward pass; the hints' adapters are the Distiller's layers, trained with the student and
    saved with the Distiller, never part of `student`.

    Teacher ensembles: `teacher=[t_1, ..., t_K]` with `ensemble_weights` (K,) (default equal;
    normalised to sum 1). The soft targets at temperature T are Σ_k w_k · softmax(t_k / T): the
    soft term is given z = T · log Σ_k w_k softmax(t_k / T) (`losses.ensemble_logits`, at a
    method's own temperature), whose temperature softmax is exactly that mean.
    `teacher_logits(x)` gives z at T = 1, the log of the mean probabilities. Attention
    transfer, gradient attention, hints and the top-class targets of unlabeled examples use the
    first teacher. A `tfdistill.ensemble.teacher_ensemble` model given as `teacher` is taken
    apart into its teachers and weights. The teachers must predict the same classes from
    images of one size. Cached
    batches carry every teacher's logits, (B, K, C) (`cache_teacher_outputs(data,
    distiller.teachers)`).

    `teacher_outputs` / `student_outputs`: "logits", "probabilities", or "auto" (a final softmax
    means probabilities, used as log-probabilities).

    Under `MirroredStrategy` or `MultiWorkerMirroredStrategy` (build it in the strategy's
    scope) every term is divided by the global batch, so the replicas train as one device
    would; `tfdistill.synchronize_batch_norm(student)` does the same for BatchNorm statistics.

    XLA is on by default (`compile(jit_compile="auto")`), on CPU too: on a 2-core x86 CPU a
    convnet student trained 1.07× as fast as without (teacher run every step), 1.28× with
    cached teacher logits. It is off under a `tf.distribute` strategy, with TensorFlow's op
    determinism on, when a layer has `supports_jit=False`, and without a GPU when a layer is a
    depthwise, separable or grouped convolution (about 4× slower under XLA on CPU)
    (`resolve_jit_compile`); `jit_compile=True` or `False` is taken as given.

    Mixed precision: build the student and/or teacher under
    `keras.config.set_dtype_policy("mixed_float16")` (or "mixed_bfloat16"). Their logits,
    tapped features and input gradients are cast to float32 before the temperature softmax,
    log-softmax, KL, cross-entropy, T² scaling and attention maps, and a float16 student's
    loss is scaled (`LossScaleOptimizer`) against gradient underflow.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model | Sequence[keras.Model],
        *,
        features: FeatureMethod | list[FeatureMethod] | None = None,
        attention: FeatureMethod | list[FeatureMethod] | None = None,
        ensemble_weights: Sequence[float] | None = None,
        teacher_outputs: str = "auto",
        student_outputs: str = "auto",
        teacher_input_size: resolution.TeacherSize = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if features is not None and attention is not None:
            raise ValueError(
                "Give features= or its older name attention=, not both: features=[...] takes "
                "attention transfer and FeatureHint together."
            )
        features = attention if features is None else features
        unpacked = None if isinstance(teacher, (list, tuple)) else members_of(teacher)
        if unpacked is not None:  # a `teacher_ensemble` model: distil from its teachers
            teacher = unpacked[0]
            ensemble_weights = unpacked[1] if ensemble_weights is None else ensemble_weights
        teachers = check_ensemble(
            list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
        )
        for member in teachers:
            check_models(student, member)
        teacher = teachers[0]
        object.__setattr__(
            self, "ensemble_weights", check_ensemble_weights(ensemble_weights, len(teachers))
        )
        object.__setattr__(
            self, "teacher_input_size", resolution.deserialize_size(teacher_input_size)
        )
        object.__setattr__(
            self,
            "_teacher_size",
            resolution.resolve_teacher_size(student, teacher, self.teacher_input_size),
        )
        object.__setattr__(
            self,
            "_teacher_kinds",
            tuple(
                outputs_lib.resolve_output_kind(t, teacher_outputs, "teacher_outputs")
                for t in teachers
            ),
        )
        self._teacher_kind = self._teacher_kinds[0]
        self._student_kind = outputs_lib.resolve_output_kind(
            student, student_outputs, "student_outputs"
        )
        self._resolve_features(student, teacher, features)
        self.features = tuple(features) if isinstance(features, list) else features
        self.teacher_outputs = teacher_outputs
        self.student_outputs = student_outputs
        self.student = student
        self.teacher = teacher
        self.other_teachers = list(teachers[1:])
        for member in teachers:
            member.trainable = False
        self.hint_adapters = FeatureHint.adapters(self.hint_pairs)
        self._build_forwards()
        self._make_trackers()
        self.alpha = 0.1
        self.temperature = 3.0
        if student.built and all(t.built for t in teachers):
            self.built = True
        distribute.support_strategy(self, pad_empty=False)

    @property
    def attention(self) -> Any:
        """The older name of `features`."""
        return self.features

    @property
    def teachers(self) -> tuple[keras.Model, ...]:
        """The teacher, or the ensemble's teachers, first the one that gives features."""
        return (self.teacher, *self.other_teachers)

    def _resolve_features(self, student: keras.Model, teacher: keras.Model, features: Any) -> None:
        """The feature methods and the layer pairs they tap, all on the first teacher."""
        self._activation_at, self._gradient_at, self._hint = split_features(features)
        pairs = self._activation_at.resolve(student, teacher) if self._activation_at else []
        hint_pairs = self._hint.resolve(student, teacher) if self._hint else []
        object.__setattr__(self, "pairs", tuple(pairs))
        object.__setattr__(self, "hint_pairs", tuple(hint_pairs))
        if self._gradient_at is not None:
            check_functional(student, "student", "Gradient attention transfer")
            if len(student.inputs) != 1:
                raise ValueError(
                    "Gradient attention transfer needs a model with one image input; the "
                    f"student has {len(student.inputs)} inputs."
                )

    def _make_trackers(self) -> None:
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        named = {
            "attention_loss": self._activation_at,
            "gradient_attention_loss": self._gradient_at,
            "hint_loss": self._hint,
        }
        trackers = {
            name: keras.metrics.Mean(name=name)
            for name, method in named.items()
            if method is not None
        }
        for name, tracker in trackers.items():
            setattr(self, f"{name}_tracker", tracker)
        object.__setattr__(self, "_attention_trackers", trackers)

    def _build_forwards(self) -> None:
        """The teachers' folded inference passes and, with tapped features, the student's
        multi-output pass. Kept off Keras's tracking: they share the models' variables."""
        student_forward: Any = self.student
        teacher_graph = self.teacher
        taps = [*self.pairs, *self.hint_pairs]
        if taps:
            student_forward = _tap_model(
                self.student, [p.student_tensor for p in taps], f"{self.student.name}_taps"
            )
            teacher_graph = _tap_model(
                self.teacher, [p.teacher_tensor for p in taps], f"{self.teacher.name}_taps"
            )
        object.__setattr__(self, "_student_forward", student_forward)
        object.__setattr__(self, "_teacher_forward", folded_forward(teacher_graph))
        object.__setattr__(
            self, "_member_forwards", [folded_forward(t) for t in self.other_teachers]
        )

    def _trained_variables(self) -> list:
        """The student's trainable variables, then the hint adapters'."""
        adapters = [v for a in self.hint_adapters for v in a.trainable_variables]
        return [*self.student.trainable_variables, *adapters]

    def build(self, input_shape: Any = None) -> None:
        for model in (self.student, *self.teachers):
            if not model.built and input_shape is not None:
                model.build(input_shape)
        self.built = True

    def compile(
        self,
        optimizer: Any = "adam",
        metrics: Any = None,
        student_loss_fn: LossLike = None,
        distillation_loss_fn: LossLike = None,
        alpha: float = 0.1,
        temperature: float = 3.0,
        jit_compile: bool | str = "auto",
        **kwargs,
    ) -> None:
        """Same argument names as the keras.io distillation example.

        `alpha` weights the hard-label loss. `distillation_loss_fn`: "kl_divergence" (default),
        "categorical_crossentropy", a Loss or a callable (the temperature softmax and T² are
        applied whatever the form); or a method that sees the raw logits and the labels with
        its own temperature: a `LogitMethod` (`DecoupledKD`) or a `SoftTargetLoss` (e.g. with
        `standardize=True`, logit standardization). `jit_compile="auto"`: see
        `resolve_jit_compile`. A student computing in float16 gets its optimizer wrapped in a
        `LossScaleOptimizer`, whatever the policy the Distiller was made under (unless
        `auto_scale_loss=False`).
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "Distiller.compile takes student_loss_fn and distillation_loss_fn, not loss="
            )
        kwargs.pop("loss", None)
        if jit_compile not in (True, False, "auto") or not isinstance(jit_compile, (bool, str)):
            raise ValueError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}.")
        object.__setattr__(self, "_jit_request", jit_compile)
        if jit_compile == "auto":
            jit_compile = not kwargs.get("run_eagerly", False) and resolve_jit_compile(self)
        optimizer = keras.optimizers.get(optimizer)
        if (
            kwargs.get("auto_scale_loss", True)
            and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            and precision.needs_loss_scaling(self.student)
        ):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name="loss_scale_optimizer")
        self.alpha = check_alpha(alpha)
        self.temperature = check_temperature(temperature)
        self.hard_loss = HardTargetLoss(student_loss_fn)
        if isinstance(distillation_loss_fn, LogitMethod | SoftTargetLoss):
            self.soft_loss = distillation_loss_fn  # with its own temperature
        else:
            self.soft_loss = SoftTargetLoss(temperature, distillation_loss_fn)
        self._loss_fns = {
            "student_loss_fn": student_loss_fn,
            "distillation_loss_fn": distillation_loss_fn,
        }
        super().compile(optimizer=optimizer, metrics=metrics, jit_compile=jit_compile, **kwargs)

    def get_compile_config(self) -> dict:
        config = super().get_compile_config()
        if not config:
            return config
        config.pop("loss", None)
        config.pop("loss_weights", None)
        config["alpha"] = self.alpha
        config["temperature"] = self.temperature
        config["jit_compile"] = getattr(self, "_jit_request", config.get("jit_compile", "auto"))
        for key, fn in self._loss_fns.items():
            config[key] = keras.saving.serialize_keras_object(fn)
        return config

    def compile_from_config(self, config: dict) -> None:
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self._trained_variables())

    def get_config(self) -> dict:
        config = super().get_config()
        teachers = [_architecture(t) for t in self.teachers]
        config.update(
            student=_architecture(self.student),
            teacher=teachers if self.other_teachers else teachers[0],
            features=keras.saving.serialize_keras_object(self.features),
            teacher_outputs=self.teacher_outputs,
            student_outputs=self.student_outputs,
            teacher_input_size=resolution.serialize_size(self.teacher_input_size),
        )
        if self.other_teachers:
            config["ensemble_weights"] = list(self.ensemble_weights)
        return config

    @classmethod
    def from_config(cls, config: dict) -> Distiller:
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        teacher = config.pop("teacher")
        if isinstance(teacher, list):  # an ensemble
            teacher = [keras.saving.deserialize_keras_object(t) for t in teacher]
        else:
            teacher = keras.saving.deserialize_keras_object(teacher)
        key = "features" if "features" in config else "attention"  # files before `features`
        config[key] = keras.saving.deserialize_keras_object(config.get(key))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attention pair")
            return cls(student, teacher, **config)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        metrics = [
            self.loss_tracker,
            self.student_loss_tracker,
            self.distillation_loss_tracker,
            *self._attention_trackers.values(),
        ]
        compiled = _keras_internals.compiled_metrics(self) if self.compiled else None
        if compiled is not None:
            metrics.append(compiled)
        return metrics

    def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
        """The student's outputs, (B, C)."""
        inputs, _ = split_cached(inputs)
        return self.student(inputs, training=training)

    def _teacher_outputs(self, x: Any) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """The first teacher's (B, C) logits and its tapped features."""
        outputs = self._teacher_forward(x)
        if not (self.pairs or self.hint_pairs):
            return outputs_lib.as_logits(outputs, self._teacher_kind), []
        return outputs_lib.as_logits(outputs[0], self._teacher_kind), list(outputs[1:])

    def _members(self, first: tf.Tensor, x: Any) -> tf.Tensor:
        """(B, K, C): the first teacher's logits `first` and those of the others on `x`."""
        others = [
            outputs_lib.as_logits(forward(x), kind)
            for forward, kind in zip(self._member_forwards, self._teacher_kinds[1:], strict=True)
        ]
        return tf.stack([first, *others], axis=1)

    def soft_temperature(self) -> float:
        """The temperature of the soft term: the method's own, else the Distiller's."""
        return getattr(getattr(self, "soft_loss", None), "temperature", self.temperature)

    def teacher_logits(self, x: Any) -> tf.Tensor:
        """(B, C) float32 teacher logits, no gradient; the teacher runs in inference mode, with its
        BatchNorm folded into the preceding layers (`tfdistill.folding`). An ensemble's are the
        log of its weighted mean probabilities, `ensemble_logits` at T = 1."""
        logits = self._teacher_outputs(x)[0]
        if self.other_teachers:
            logits = ensemble_logits(self._members(logits, x), self.ensemble_weights)
        return tf.stop_gradient(logits)

    def _soft_targets(self, logits: tf.Tensor) -> tf.Tensor:
        """(B, C) or (B, K, C) teacher logits -> the (B, C) logits the soft term is given: an
        ensemble's combined at the soft term's temperature (`ensemble_logits`)."""
        if not self.other_teachers:
            if logits.shape.rank == 3:
                raise ValueError(
                    f"The cached teacher logits are {logits.shape} (several teachers) but this "
                    "Distiller has one teacher; cache with the Distiller's own teacher."
                )
            return logits
        if logits.shape.rank != 3 or logits.shape[1] != len(self.teachers):
            raise ValueError(
                f"The ensemble of {len(self.teachers)} teachers needs cached logits (B, "
                f"{len(self.teachers)}, C) of every teacher, got {logits.shape}; cache them with "
                "cache_teacher_outputs(data, distiller.teachers)."
            )
        return ensemble_logits(logits, self.ensemble_weights, self.soft_temperature())

    def _teacher_view(self, x: Any, teacher_x: Any) -> Any:
        """What the teacher sees: its own view `teacher_x` (B, H, W, C) of a two-view batch, else
        the student's batch `x` (B, h, w, C), resized to the teacher's input size when that
        differs (`teacher_input_size`). The resize upsamples when the teacher is larger: it
        warns, once, that a two-view batch gives the teacher its own detail."""
        if teacher_x is not None:
            return teacher_x
        if self._teacher_size is None:
            own = resolution.static_image_size(self.teacher)
            shape = getattr(x, "shape", None)
            if own is not None and shape is not None and len(shape) == 4:
                if None not in shape[1:3] and tuple(shape[1:3]) != own:
                    raise ValueError(
                        f"The teacher takes {own[0]}x{own[1]} images but the batch has one view "
                        f"of {shape[1]}x{shape[2]} and teacher_input_size=None; give two views "
                        '(tfdistill.batches.two_views) or teacher_input_size="auto".'
                    )
            return x
        h, w = x.shape[1:3]
        if h is None or w is None or h < self._teacher_size[0] or w < self._teacher_size[1]:
            warnings.warn(
                f"The student's {h}x{w} batch is upsampled to the teacher's "
                f"{self._teacher_size[0]}x{self._teacher_size[1]}: the teacher sees no detail the "
                "student does not. Batches with the teacher's own view "
                "(tfdistill.batches.two_views) avoid this.",
                stacklevel=2,
            )
        return resolution.resize_images(x, self._teacher_size)

    def _teacher_pass(self, x: Any, y: Any, real: tf.Tensor, teacher_x: Any = None) -> TeacherPass:
        """`real` (B,): 1 on real rows, 0 on padding, whose gradient targets are all zero (its
        cross-entropy would reach the real rows' input gradients through training-mode
        BatchNorm's statistics). The teacher runs on `_teacher_view(x, teacher_x)`; its input
        gradient J_t is taken w.r.t. the student's pixels `x` (B, h, w, C): through the resize
        of a one-view batch, or, of a two-view batch, pulled back from the teacher's view as
        `resolution.pull_back` (Rᵀ J_t, R the student-to-teacher resize) where the sizes differ."""
        if self._gradient_at is None:
            view = self._teacher_view(x, teacher_x)
            logits, features = self._teacher_outputs(view)
            return TeacherPass(
                tf.stop_gradient(self._combined(logits, view)),
                [tf.stop_gradient(f) for f in features],
                None,
                None,
            )
        source = x if teacher_x is None else teacher_x
        with tf.GradientTape() as tape:
            tape.watch(source)
            view = self._teacher_view(x, teacher_x)
            logits, features = self._teacher_outputs(view)
            mask = tf.zeros_like(logits[:, 0]) if y is None else labeled_mask(y, logits.shape[-1])
            targets = _gradient_targets(y, mask, logits) * real[:, tf.newaxis]
            cross_entropy = _summed_cross_entropy(targets, logits)
        input_grad = tape.gradient(cross_entropy, source)
        if teacher_x is not None:
            input_grad = resolution.pull_back(input_grad, x)
        return TeacherPass(
            tf.stop_gradient(self._combined(logits, view)),
            [tf.stop_gradient(f) for f in features],
            tf.stop_gradient(input_grad),
            targets,
        )

    def _combined(self, first: tf.Tensor, view: Any) -> tf.Tensor:
        """The soft term's (B, C) teacher logits from the first teacher's `first`."""
        return self._soft_targets(self._members(first, view)) if self.other_teachers else first

    def _student_pass(self, x: Any, training: bool, teacher: TeacherPass) -> StudentPass:
        """Runs the student once; with gradient attention, also takes ∂CE/∂x on an inner tape,
        which stays differentiable for the outer one (double backprop)."""
        num_classes = teacher.logits.shape[-1]
        if self._gradient_at is None:
            logits, features = self._student_outputs(x, training, num_classes)
            return StudentPass(logits, features, None)
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits, features = self._student_outputs(x, training, num_classes)
            cross_entropy = _summed_cross_entropy(teacher.targets, logits)
        return StudentPass(logits, features, tape.gradient(cross_entropy, x))

    def _student_outputs(
        self, x: Any, training: bool, num_classes: int | None
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        outputs = self._student_forward(x, training=training)
        features = []
        if self.pairs or self.hint_pairs:
            outputs, features = outputs[0], list(outputs[1:])
        logits = outputs_lib.as_logits(outputs, self._student_kind)
        check_class_counts(logits.shape[-1], num_classes)
        return logits, features

    def _attention_terms(
        self, student: StudentPass, teacher: TeacherPass, training: bool
    ) -> dict[str, tuple[float, tf.Tensor]]:
        """name -> (weight in the loss, (B,) unweighted per-example value). The tapped features
        are the attention pairs' then the hint pairs'."""
        terms = {}
        at = len(self.pairs)
        if self._activation_at is not None:
            terms["attention_loss"] = (
                self._activation_at.beta / 2.0,
                self._activation_at.per_example(
                    student.features[:at], teacher.features[:at], self.pairs
                ),
            )
        if self._hint is not None:
            terms["hint_loss"] = (
                self._hint.beta,
                self._hint.per_example(
                    student.features[at:], teacher.features[at:], self.hint_adapters, training
                ),
            )
        if self._gradient_at is not None:
            terms["gradient_attention_loss"] = (
                self._gradient_at.beta / 2.0,
                self._gradient_at.per_example(student.input_grad, teacher.input_grad),
            )
        return terms

    def _loss_terms(
        self, batch: Batch, student: StudentPass, teacher: TeacherPass, training: bool
    ) -> tuple[tf.Tensor, dict[str, tuple[tf.Tensor, tf.Tensor]], tf.Tensor]:
        """This replica's share of the global loss; (local mean, local weight) per logged term; and
        global batch / local batch, which turns a share into a value a Mean tracker can average."""
        student_logits = student.logits
        weights = batch.weights
        if isinstance(self.soft_loss, LogitMethod):
            step = self.optimizer.iterations if self.optimizer is not None else None
            soft = self.soft_loss.per_example(
                batch.y, teacher.logits, student_logits, step, weights
            )
        else:
            soft = self.soft_loss.call(teacher.logits, student_logits)
        terms = loss_share(
            self.hard_loss.call(batch.y, student_logits),
            soft,
            weights,
            batch.mask,
            batch.rows,
            self.alpha,
        )
        share, hard_sum, soft_sum, local_counts, global_counts = terms
        global_n = tf.maximum(global_counts[0], 1.0)
        n_local, labeled_local = local_counts[0], local_counts[1]
        logged = {
            "student_loss": (hard_sum / tf.maximum(labeled_local, 1.0), labeled_local),
            "distillation_loss": (soft_sum / tf.maximum(n_local, 1.0), n_local),
        }
        for name, (weight, values) in self._attention_terms(student, teacher, training).items():
            total = tf.reduce_sum(weights * values)
            share = share + weight * total / global_n
            logged[name] = (total / tf.maximum(n_local, 1.0), n_local)
        return share, logged, global_counts[0] / tf.maximum(n_local, 1.0)

    def _regularization(self) -> tf.Tensor:
        """The student's weight penalties (kernel_regularizer and the like), a scalar."""
        if not self.student.losses:
            return tf.constant(0.0)
        return tf.add_n([tf.cast(v, tf.float32) for v in self.student.losses])

    def _update_trackers(self, logged: dict[str, tuple[tf.Tensor, tf.Tensor]]) -> None:
        self.loss_tracker.update_state(logged["loss"][0], sample_weight=logged["loss"][1])
        self.student_loss_tracker.update_state(*logged["student_loss"])
        self.distillation_loss_tracker.update_state(*logged["distillation_loss"])
        for name, tracker in self._attention_trackers.items():
            tracker.update_state(*logged[name])

    def _metrics_update(self, batch: Batch, student_logits: tf.Tensor) -> dict:
        """Compiled metrics on the labeled examples only."""
        keep = tf.reshape(tf.where(batch.mask > 0), [-1])
        sample_weight = batch.sample_weight
        if sample_weight is not None:
            sample_weight = tf.gather(tf.reshape(sample_weight, [-1]), keep)
        return self.compute_metrics(
            None,
            tf.gather(batch.y, keep),
            tf.gather(student_logits, keep),
            sample_weight=sample_weight,
        )

    def _prepare(self, data: Any, rows: tf.Tensor) -> tuple[Batch, TeacherPass]:
        """A batch whose first `rows` rows are real (the rest padding, see
        `distribute.padded_if_empty`), and the teacher's pass over it."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, teacher_x, cached = split_views(x)
        if self._gradient_at is not None:
            x = _float_input(x)
            teacher_x = None if teacher_x is None else _float_input(teacher_x)
        real = tf.cast(tf.range(distribute.batch_rows(x)) < rows, tf.float32)
        if cached is None:
            teacher = self._teacher_pass(x, y, real, teacher_x)
        elif self.pairs or self.hint_pairs or self._gradient_at is not None:
            raise ValueError(
                "Cached teacher outputs hold only the teacher's logits, but attention transfer "
                "and hints need its features or input gradients each step; train on the "
                "uncached data."
            )
        else:
            teacher = TeacherPass(self._soft_targets(tf.cast(cached, tf.float32)), [], None, None)
        num_classes = teacher.logits.shape[-1]
        weights = real
        if sample_weight is not None:
            weights = real * tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
        mask = real * labeled_mask(y, num_classes)
        return Batch(x, y, sample_weight, weights, mask, rows), teacher

    def train_step(self, data: Any) -> dict:
        variables = self._trained_variables()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with distribute.padded_if_empty(data) as (data, rows):
            batch, teacher = self._prepare(data, rows)
            with tf.GradientTape() as tape:
                student = self._student_pass(batch.x, True, teacher)
                share, logged, to_mean = self._loss_terms(batch, student, teacher, True)
                share = share + self._regularization() / replicas
                scaled = self.optimizer.scale_loss(share)
        logged["loss"] = (share * to_mean, logged["distillation_loss"][1])
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self._update_trackers(logged)
        return self._metrics_update(batch, student.logits)

    def test_step(self, data: Any) -> dict:
        """Logs the student's own loss (hard labels plus regularization) as `loss`."""
        with distribute.padded_if_empty(data) as (data, rows):
            batch, teacher = self._prepare(data, rows)
            student = self._student_pass(batch.x, False, teacher)
        _, logged, _ = self._loss_terms(batch, student, teacher, False)
        own = logged["student_loss"][0] + self._regularization()
        logged["loss"] = (own, logged["student_loss"][1])
        self._update_trackers(logged)
        return self._metrics_update(batch, student.logits)
