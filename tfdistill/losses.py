"""Distillation losses as small composable `keras.losses.Loss` objects.

Every loss here returns per-example values from `call` (shape (B,)), so the Distiller can weight
examples, mask unlabeled ones and scale to the global batch under `tf.distribute`. Called as plain
Keras losses they reduce as usual.

Rule for a wrapped base loss: an object with `from_logits=True` receives logits; any other loss
(function, object) receives probabilities. The string losses "kl_divergence" and
"categorical_crossentropy" are computed from log-softmaxes instead, exact at any confidence.
The Distiller always hands logits to these objects, and softmax-ending models are turned into
log-probabilities first. Inputs of any float dtype (float16, bfloat16 under mixed precision)
are cast to float32 before any softmax, log or division by the temperature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from tfdistill import _keras_internals, distribute, resolution
from tfdistill.ensemble import check_ensemble_weights as check_ensemble_weights
from tfdistill.ensemble import ensemble_logits as ensemble_logits

DISTILLATION_LOSSES: dict[str, Callable] = {
    "kl_divergence": keras.losses.kl_divergence,
    "categorical_crossentropy": keras.losses.categorical_crossentropy,
}
STUDENT_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy")

LossLike = str | keras.losses.Loss | Callable | None


def _from_logits(fn: Any) -> bool:
    if hasattr(fn, "from_logits"):
        return bool(fn.from_logits)
    return bool(_keras_internals.loss_function_kwargs(fn).get("from_logits", False))


def _per_example(fn: Callable, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Unreduced loss, shape (B,)."""
    values = fn.call(y_true, y_pred) if isinstance(fn, keras.losses.Loss) else fn(y_true, y_pred)
    values = tf.cast(values, tf.float32)
    batch = tf.shape(y_pred)[0]
    if values.shape.rank == 0:
        return tf.fill([batch], values)
    if values.shape.rank > 1:
        values = tf.reduce_mean(tf.reshape(values, [batch, -1]), axis=-1)
    return values


def _serialize(fn: LossLike) -> Any:
    return fn if fn is None or isinstance(fn, str) else keras.saving.serialize_keras_object(fn)


def _deserialize(config: Any) -> LossLike:
    if config is None or isinstance(config, str):
        return config
    return keras.saving.deserialize_keras_object(config)


def resolve_distillation_base(loss: LossLike) -> Callable:
    """The loss comparing teacher and student class distributions; strings name Keras losses."""
    if loss is None:
        loss = "kl_divergence"
    if isinstance(loss, str):
        if loss not in DISTILLATION_LOSSES:
            raise ValueError(
                f"distillation_loss_fn={loss!r} is not a known loss; use one of "
                f"{sorted(DISTILLATION_LOSSES)}, a keras.losses.Loss or a callable."
            )
        return DISTILLATION_LOSSES[loss]
    if not callable(loss):
        raise ValueError(
            f"distillation_loss_fn must be a string, a keras.losses.Loss or a callable, "
            f"not {type(loss).__name__}."
        )
    return loss


def check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    return float(temperature)


LOG_SPACE_LOSSES = ("kl_divergence", "categorical_crossentropy")


def _log_space(base: str, teacher: tf.Tensor, student: tf.Tensor) -> tf.Tensor:
    """(B,) KL(p_t ‖ p_s) or CE(p_t, p_s) of float32 (B, C) logits, from log-softmaxes: exact
    where a probability is below float32's range or Keras's 1e-7 clip, where Keras's
    probability-space losses lose both the value and the gradient."""
    log_teacher = tf.nn.log_softmax(teacher)
    log_student = tf.nn.log_softmax(student)
    soft_teacher = tf.exp(log_teacher)
    if base == "kl_divergence":
        return tf.reduce_sum(soft_teacher * (log_teacher - log_student), axis=-1)
    return -tf.reduce_sum(soft_teacher * log_student, axis=-1)


@keras.saving.register_keras_serializable(package="tfdistill")
class SoftTargetLoss(keras.losses.Loss):
    """Hinton et al. (2015) soft-target loss: T² · base(softmax(t/T), softmax(s/T)).

    `standardize=True`: logit standardization (Sun et al., "Logit Standardization in Knowledge
    Distillation", CVPR 2024): t and s are first z-scored over the classes of each example
    (`standardized`), so the loss no longer asks the student to match the teacher's logit
    scale or offset, only their relations.

    `call(teacher_logits, student_logits)`: both (B, C) logits of any float dtype; returns (B,)
    float32. With the default base, this is T² · KL(softmax(t/T) ‖ softmax(s/T)); the T² keeps
    its gradients on the scale of the hard-target loss as T changes. The string bases work on
    float32 log-softmaxes (see `_log_space`).
    """

    def __init__(
        self,
        temperature: float = 3.0,
        base: LossLike = "kl_divergence",
        name: str = "soft_target",
        standardize: bool = False,
    ):
        super().__init__(name=name)
        self.temperature = check_temperature(temperature)
        self.base = base if base is not None else "kl_divergence"
        self._base_fn = resolve_distillation_base(self.base)
        self.standardize = bool(standardize)

    def call(self, teacher_logits: tf.Tensor, student_logits: tf.Tensor) -> tf.Tensor:
        t = self.temperature
        teacher, student = _prepared(teacher_logits, student_logits, self.standardize)
        teacher, student = teacher / t, student / t
        if self.base in LOG_SPACE_LOSSES:
            return (t * t) * _log_space(self.base, teacher, student)
        soft_teacher = tf.nn.softmax(teacher)
        if not _from_logits(self._base_fn):
            student = tf.nn.softmax(student)
        return (t * t) * _per_example(self._base_fn, soft_teacher, student)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "temperature": self.temperature,
            "base": _serialize(self.base),
            "standardize": self.standardize,
        }

    @classmethod
    def from_config(cls, config: dict) -> SoftTargetLoss:
        config = dict(config)
        config["base"] = _deserialize(config.get("base"))
        return cls(**config)


def standardized(logits: tf.Tensor) -> tf.Tensor:
    """float32 (B, C) logits z-scored over the classes of each row: (z - mean) / (1e-7 + std),
    std with Bessel's correction, as the reference code of Sun et al. (CVPR 2024) has it
    (`torch.std`)."""
    z = tf.cast(logits, tf.float32)
    mean = tf.reduce_mean(z, axis=-1, keepdims=True)
    classes = tf.cast(tf.shape(z)[-1], tf.float32)
    variance = tf.reduce_sum(tf.square(z - mean), axis=-1, keepdims=True) / (classes - 1.0)
    return (z - mean) / (1e-7 + tf.sqrt(variance))


def _prepared(
    teacher_logits: tf.Tensor, student_logits: tf.Tensor, standardize: bool
) -> tuple[tf.Tensor, tf.Tensor]:
    """Both as float32, z-scored per example when `standardize`."""
    if standardize:
        return standardized(teacher_logits), standardized(student_logits)
    return tf.cast(teacher_logits, tf.float32), tf.cast(student_logits, tf.float32)


def labeled_mask(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """(B,) float mask, 0 where unlabeled: sparse label < 0, or an all-zero one-hot row."""
    labels = tf.convert_to_tensor(labels)
    if is_one_hot(labels, num_classes):
        return tf.cast(tf.reduce_sum(tf.cast(labels, tf.float32), axis=-1) > 0, tf.float32)
    return tf.cast(tf.reshape(labels, [-1]) >= 0, tf.float32)


def is_one_hot(labels: tf.Tensor, num_classes: int) -> bool:
    """Whether (B, C) labels are one-hot rows rather than (B,) or (B, 1) class indices."""
    return (
        labels.shape.rank is not None
        and labels.shape.rank >= 2
        and (labels.shape[-1] == num_classes and num_classes > 1)
    )


@keras.saving.register_keras_serializable(package="tfdistill")
class HardTargetLoss(keras.losses.Loss):
    """Cross-entropy with the labels, on logits; unlabeled examples (label -1) give 0.

    `call(labels, student_logits)`: labels (B,) or (B, 1) ints, or (B, C) one-hot; logits (B, C).
    Returns (B,). `base` replaces the cross-entropy (a string from STUDENT_LOSSES, a Loss or a
    callable; see the module docstring for what it receives).
    """

    def __init__(self, base: LossLike = None, name: str = "hard_target"):
        super().__init__(name=name)
        if isinstance(base, str) and base not in STUDENT_LOSSES:
            raise ValueError(
                f"student_loss_fn={base!r} is not a known loss; use one of {list(STUDENT_LOSSES)}, "
                "a keras.losses.Loss or a callable."
            )
        if base is not None and not isinstance(base, str) and not callable(base):
            raise ValueError(
                f"student_loss_fn must be a string, a keras.losses.Loss or a callable, "
                f"not {type(base).__name__}."
            )
        self.base = base

    def call(self, labels: tf.Tensor, student_logits: tf.Tensor) -> tf.Tensor:
        labels = tf.convert_to_tensor(labels)
        logits = tf.cast(student_logits, tf.float32)
        num_classes = logits.shape[-1]
        mask = labeled_mask(labels, num_classes)
        if is_one_hot(labels, num_classes):
            targets = tf.cast(labels, tf.float32)
            if self.base is None or isinstance(self.base, str):
                values = tf.nn.softmax_cross_entropy_with_logits(targets, logits)
            else:
                values = self._custom(targets, logits)
        else:
            targets = tf.where(labels >= 0, labels, tf.zeros_like(labels))
            if self.base is None or isinstance(self.base, str):
                values = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.cast(tf.reshape(targets, [-1]), tf.int32), logits
                )
            else:
                values = self._custom(targets, logits)
        return values * mask

    def _custom(self, targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        predictions = logits if _from_logits(self.base) else tf.nn.softmax(logits)
        return _per_example(self.base, targets, predictions)

    def get_config(self) -> dict:
        return {"name": self.name, "base": _serialize(self.base)}

    @classmethod
    def from_config(cls, config: dict) -> HardTargetLoss:
        config = dict(config)
        config["base"] = _deserialize(config.get("base"))
        return cls(**config)


class LogitMethod:
    """A distillation term computed from the labels and both models' raw logits, with its own
    temperature: the Distiller hands it `(labels, teacher_logits, student_logits)` as they are
    (no temperature softmax around it) and adds `(1 - alpha) ·` its value to `alpha · CE`.

    `per_example(labels, teacher_logits, student_logits, step)`: float32 (B,), the values the
    Distiller weights and averages over the global batch; `compute(...)`: their batch mean,
    the loss exactly as the paper's reference code computes it. Labels: (B,) class indices or
    (B, C) one-hot; -1 (or an all-zero row) marks an unlabeled example, whose target class is
    the teacher's top class. `step`: the optimizer's step, for warm-ups (None: warmed up).
    `weights`: (B,) the rows' sample weights; rows of weight 0 (padding) take no part in terms
    computed over the batch."""

    def per_example(
        self,
        labels: Any,
        teacher_logits: tf.Tensor,
        student_logits: tf.Tensor,
        step: Any = None,
        weights: Any = None,
    ) -> tf.Tensor:
        raise NotImplementedError

    def compute(
        self, labels: Any, teacher_logits: tf.Tensor, student_logits: tf.Tensor, step: Any = None
    ) -> tf.Tensor:
        """The batch mean of `per_example`: a float32 scalar."""
        return tf.reduce_mean(self.per_example(labels, teacher_logits, student_logits, step))

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> LogitMethod:
        return cls(**config)


def target_classes(labels: Any, teacher_logits: tf.Tensor) -> tf.Tensor:
    """int32 (B,) target classes: the labels, or the teacher's top class where unlabeled."""
    classes = int(teacher_logits.shape[-1])
    labels = tf.convert_to_tensor(labels)
    if is_one_hot(labels, classes):
        given = tf.argmax(labels, axis=-1, output_type=tf.int32)
    else:
        given = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    top = tf.argmax(teacher_logits, axis=-1, output_type=tf.int32)
    return tf.where(labeled_mask(labels, classes) > 0, given, top)


def _binary_and_rest(log_p: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """From log-probabilities (B, C): log [p_target, 1 - p_target] (B, 2), and the
    log-softmax over the non-target classes (B, C), the target's entry pushed to -1000
    before the softmax as the reference code does."""
    log_target = tf.reduce_sum(log_p * target, axis=-1, keepdims=True)
    log_rest = tf.reduce_logsumexp(log_p - 1e9 * target, axis=-1, keepdims=True)
    return tf.concat([log_target, log_rest], axis=-1), tf.nn.log_softmax(log_p - 1000.0 * target)


def _kl_rows(log_p: tf.Tensor, log_q: tf.Tensor) -> tf.Tensor:
    """(B,) Σ p · (log p - log q), with 0 · log 0 = 0."""
    p = tf.exp(log_p)
    return tf.reduce_sum(tf.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)


@keras.saving.register_keras_serializable(package="tfdistill")
class DecoupledKD(LogitMethod):
    """Decoupled knowledge distillation (Zhao et al., "Decoupled Knowledge Distillation",
    CVPR 2022): KD split into the target class's binary term and the non-target classes' term,
    weighted apart.

        TCKD = KL(b_t ‖ b_s),  b = [p_target, 1 - p_target] of softmax(z / T)
        NCKD = KL(p̂_t ‖ p̂_s),  p̂ = softmax over the non-target classes of z / T
        loss = T² · (alpha · TCKD + beta · NCKD) · min(step / warmup_steps, 1)

    as mdistiller's `dkd_loss` computes it (NCKD's softmax takes z / T - 1000 at the target).
    The paper trains with CE + DKD: `Distiller.compile(alpha=0.5)` gives half of that, the same
    direction at half the step (double the learning rate to match). `standardize=True`: logit
    standardization first (Sun et al., CVPR 2024; `standardized`). Needs 3 classes or more."""

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup_steps: int = 0,
        standardize: bool = False,
    ):
        if alpha < 0 or beta < 0:
            raise ValueError(f"DecoupledKD weights must be >= 0, got alpha={alpha}, beta={beta}.")
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature = check_temperature(temperature)
        self.warmup_steps, self.standardize = int(warmup_steps), bool(standardize)

    def per_example(
        self,
        labels: Any,
        teacher_logits: tf.Tensor,
        student_logits: tf.Tensor,
        step: Any = None,
        weights: Any = None,
    ) -> tf.Tensor:
        classes = teacher_logits.shape[-1]
        if classes is not None and classes < 3:
            raise ValueError(
                f"DecoupledKD separates the target class from the others and needs at least 3 "
                f"classes; these logits have {classes}. Use SoftTargetLoss (KD) instead."
            )
        t = self.temperature
        teacher, student = _prepared(teacher_logits, student_logits, self.standardize)
        target = tf.one_hot(target_classes(labels, teacher), tf.shape(teacher)[-1])
        teacher_binary, teacher_rest = _binary_and_rest(tf.nn.log_softmax(teacher / t), target)
        student_binary, student_rest = _binary_and_rest(tf.nn.log_softmax(student / t), target)
        tckd = _kl_rows(teacher_binary, student_binary)
        nckd = _kl_rows(teacher_rest, student_rest)
        loss = (t * t) * (self.alpha * tckd + self.beta * nckd)
        if self.warmup_steps and step is not None:
            loss = loss * tf.minimum(tf.cast(step, tf.float32) / self.warmup_steps, 1.0)
        return loss

    def get_config(self) -> dict:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "temperature": self.temperature,
            "warmup_steps": self.warmup_steps,
            "standardize": self.standardize,
        }


def _safe_sqrt(x: tf.Tensor) -> tf.Tensor:
    """sqrt(x) with a zero gradient where x is 0 (a constant row or column, a batch of one):
    the reference's norm of a zero vector, without tf.sqrt's infinite slope there."""
    positive = x > 0.0
    return tf.where(positive, tf.sqrt(tf.where(positive, x, 1.0)), 0.0)


def _pearson_rows(a: tf.Tensor, b: tf.Tensor, eps: float = 1e-8) -> tf.Tensor:
    """(B,) Pearson correlation of each row of `a` with the same row of `b` (B, C), the eps of
    the reference's cosine similarity added to the product of the norms."""
    a = a - tf.reduce_mean(a, axis=-1, keepdims=True)
    b = b - tf.reduce_mean(b, axis=-1, keepdims=True)
    norms = _safe_sqrt(tf.reduce_sum(a * a, -1)) * _safe_sqrt(tf.reduce_sum(b * b, -1))
    return tf.reduce_sum(a * b, axis=-1) / (norms + eps)


def _pearson_columns(a: tf.Tensor, b: tf.Tensor, rows: tf.Tensor, eps: float = 1e-8) -> tf.Tensor:
    """(C,) Pearson correlation of each column of `a` with that of `b` (B, C) over the rows
    where `rows` (B,) is 1; under `tf.distribute` over the global batch (means, then centred
    moments, summed over the replicas)."""
    rows = rows[:, None]
    count = tf.maximum(distribute.global_sum(tf.reduce_sum(rows)), 1.0)
    means = distribute.global_sum(
        tf.stack([tf.reduce_sum(a * rows, 0), tf.reduce_sum(b * rows, 0)])
    )
    a, b = (a - means[0] / count) * rows, (b - means[1] / count) * rows
    sums = tf.stack([tf.reduce_sum(a * b, 0), tf.reduce_sum(a * a, 0), tf.reduce_sum(b * b, 0)])
    covariance, spread_a, spread_b = tf.unstack(distribute.global_sum(sums))
    return covariance / (_safe_sqrt(spread_a) * _safe_sqrt(spread_b) + eps)


@keras.saving.register_keras_serializable(package="tfdistill")
class DIST(LogitMethod):
    """DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022):
    match the teacher's relations, not its exact probabilities. With Y = softmax(z / τ)
    (B, C) for student and teacher and ρ the Pearson correlation,

        inter = τ² · (1 - mean over examples of ρ(Y_s[i, :], Y_t[i, :]))
        intra = τ² · (1 - mean over classes of ρ(Y_s[:, c], Y_t[:, c]))
        loss = beta · inter + gamma · intra

    as the paper's reference code computes it. The intra-class term is over the batch: under
    `tf.distribute` over the global batch (moments summed over the replicas), so replicas train
    as one device. `per_example` gives each row its own inter term plus the batch's intra term,
    whose mean is the loss. The paper trains with CE + DIST (beta = gamma = 1, τ = 1 on
    ImageNet; beta = gamma = 2, τ = 4 on CIFAR-100)."""

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0):
        if beta < 0 or gamma < 0:
            raise ValueError(f"DIST weights must be >= 0, got beta={beta}, gamma={gamma}.")
        self.beta, self.gamma = float(beta), float(gamma)
        self.temperature = check_temperature(temperature)

    def per_example(
        self,
        labels: Any,
        teacher_logits: tf.Tensor,
        student_logits: tf.Tensor,
        step: Any = None,
        weights: Any = None,
    ) -> tf.Tensor:
        t = self.temperature
        teacher, student = _prepared(teacher_logits, student_logits, False)
        y_t, y_s = tf.nn.softmax(teacher / t), tf.nn.softmax(student / t)
        inter = (t * t) * (1.0 - _pearson_rows(y_s, y_t))
        rows = (
            tf.ones_like(inter)
            if weights is None
            else tf.cast(tf.reshape(weights, [-1]) > 0, tf.float32)
        )
        intra = (t * t) * (1.0 - tf.reduce_mean(_pearson_columns(y_s, y_t, rows)))
        return self.beta * inter + self.gamma * intra

    def get_config(self) -> dict:
        return {"beta": self.beta, "gamma": self.gamma, "temperature": self.temperature}


def check_p(p: float) -> float:
    """The exponent of an attention map; p >= 1 keeps |A|^p differentiable where A = 0."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ValueError(f"p must be a number >= 1, got {p!r}.")
    if not p >= 1:
        raise ValueError(
            f"p must be >= 1, got {p}: below 1 the gradient of |A|^p is infinite where an "
            "activation is 0, as after every ReLU."
        )
    return float(p)


def spatial_size(features: Any) -> tuple[int | None, int | None]:
    """(H, W) of (B, H, W, C) features."""
    shape = tuple(features.shape)
    if len(shape) != 4:
        raise ValueError(f"Attention maps need features shaped (B, H, W, C), got {shape}.")
    return shape[1], shape[2]


def check_resizable(source: tuple[int, int], target: tuple[int, int], what: str = "") -> None:
    """Raises unless each side of `source` is an integer multiple or divisor of `target`'s."""
    for a, b in zip(source, target, strict=True):
        if a is None or b is None or (a % b and b % a):
            raise ValueError(
                f"Cannot resize a {source[0]}x{source[1]} attention map to {target[0]}x"
                f"{target[1]}{what}: the sides must be an integer factor apart. Pair layers of "
                "matching resolution."
            )


def _resize_map(maps: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """(B, H, W) -> (B, *size): average pooling where a side shrinks, bilinear where it grows."""
    (h, w), (th, tw) = maps.shape[1:3], size
    check_resizable((h, w), size)
    maps = maps[..., tf.newaxis]
    pool = (h // th if h > th else 1, w // tw if w > tw else 1)
    if pool != (1, 1):
        maps = tf.nn.avg_pool2d(maps, pool, pool, "VALID")
    if tuple(maps.shape[1:3]) != tuple(size):
        maps = tf.image.resize(maps, size, method="bilinear")
    return maps[..., 0]


def attention_map(
    features: tf.Tensor,
    p: float = 2.0,
    size: tuple[int, int] | None = None,
    any_ratio: bool = False,
) -> tf.Tensor:
    """Activation-based attention (Zagoruyko & Komodakis 2017): (B, H, W, C) -> (B, H·W).

    The mean over channels of |A|^p, L2-normalised per example. `size` resamples the map to
    (H', W') before normalising, giving (B, H'·W'): sides an integer factor apart (average
    pooling or bilinear), or with `any_ratio` at any ratio (`resolution.resample_attention`:
    the area mean where both sides shrink).
    """
    p = check_p(p)
    spatial_size(features)
    magnitude = tf.abs(tf.cast(features, tf.float32))
    powered = tf.square(magnitude) if p == 2.0 else tf.pow(magnitude, p)
    maps = tf.reduce_mean(powered, axis=-1)
    if size is not None and tuple(maps.shape[1:3]) != tuple(size):
        resample = resolution.resample_attention if any_ratio else _resize_map
        maps = resample(maps, tuple(size))
    flat = tf.reshape(maps, [tf.shape(maps)[0], -1])
    return tf.math.l2_normalize(flat, axis=-1)


def attention_transfer_per_example(
    student_features: tf.Tensor,
    teacher_features: tf.Tensor,
    p: float = 2.0,
    teacher_to_student: bool = False,
) -> tf.Tensor:
    """(B,) mean over positions of (map_s − map_t)²; channel counts may differ. Where the
    resolutions differ, the student's map is resampled to the teacher's (an integer factor
    apart), or with `teacher_to_student` the teacher's un-normalised map to the student's
    (any ratio, `resolution.resample_attention`), then each is L2-normalised."""
    if teacher_to_student:
        student = attention_map(student_features, p)
        teacher = attention_map(teacher_features, p, spatial_size(student_features), True)
        return tf.reduce_mean(tf.square(student - teacher), axis=-1)
    size = spatial_size(teacher_features)
    student = attention_map(student_features, p, size=size)
    teacher = attention_map(teacher_features, p)
    return tf.reduce_mean(tf.square(student - teacher), axis=-1)


def attention_transfer_loss(
    student_features: tf.Tensor, teacher_features: tf.Tensor, p: float = 2.0
) -> tf.Tensor:
    """Scalar: the mean over the batch and the positions of (map_s − map_t)²."""
    return tf.reduce_mean(attention_transfer_per_example(student_features, teacher_features, p))


def input_gradient_distance(student_grad: tf.Tensor, teacher_grad: tf.Tensor) -> tf.Tensor:
    """(B,) ‖J_s − J_t‖₂ per example, J = ∂CE/∂x (B, ...); its gradient is 0, not NaN, where the
    two are equal."""
    difference = tf.cast(student_grad, tf.float32) - tf.cast(teacher_grad, tf.float32)
    squares = tf.reduce_sum(
        tf.reshape(tf.square(difference), [tf.shape(difference)[0], -1]), axis=-1
    )
    positive = squares > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, squares, 1.0)), 0.0)
