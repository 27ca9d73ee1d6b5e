"""Magnitude pruning with TFMOT (Zhu & Gupta 2017's polynomial schedule), with distillation.

`prune` rebuilds the student in tf_keras, wraps its convolution and dense layers in
`prune_low_magnitude` (TFMOT leaves depthwise kernels dense: a few percent of a MobileNet's
weights), fine-tunes it (from the teacher's soft targets when one is given) while
`UpdatePruningStep` raises the sparsity of every kernel along `PolynomialDecay`, strips the
wrappers, and returns a Keras 3 model with the same layers, whose kernels are sparse.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfdistill.compress._tfmot import require_tfmot
from tfdistill.compress.bridge import to_keras, to_tf_keras
from tfdistill.compress.slimming import StructuredSparsity

_KERNELS = {
    "Conv1D": "kernel",
    "Conv2D": "kernel",
    "Conv3D": "kernel",
    "Conv2DTranspose": "kernel",
    "Conv3DTranspose": "kernel",
    "SeparableConv1D": "pointwise_kernel",
    "SeparableConv2D": "pointwise_kernel",
    "Dense": "kernel",
    "Embedding": "embeddings",
}


def _kernels(model: Any) -> list[tuple[str, np.ndarray]]:
    """(layer name, kernel) of every layer whose kernel TFMOT prunes: convolutions (not
    depthwise ones), dense layers and embeddings."""
    found = []
    for layer in model.layers:
        attribute = _KERNELS.get(type(layer).__name__)
        if attribute is not None and hasattr(layer, attribute):
            kernel = keras.ops.convert_to_numpy(getattr(layer, attribute))
            found.append((layer.name, np.asarray(kernel)))
    return found


def kernel_sparsity(model: Any) -> dict[str, float]:
    """Layer name -> the fraction of exact zeros in its prunable kernel (see `_kernels`), for a
    Keras 3 or tf_keras model."""
    return {name: float(np.mean(kernel == 0.0)) for name, kernel in _kernels(model)}


def overall_sparsity(model: Any) -> float:
    """Zeros over all prunable kernel entries of `model` (see `kernel_sparsity`)."""
    kernels = [kernel for _, kernel in _kernels(model)]
    total = sum(k.size for k in kernels)
    return sum(int(np.sum(k == 0.0)) for k in kernels) / total if total else 0.0


MAX_FREQUENCY = 100  # TFMOT's own default
MASK_UPDATES = 10


def pruning_frequency(
    steps_per_epoch: int, epochs: int, begin_step: int = 0, end_step: int | None = None
) -> int:
    """The steps between mask updates when the caller gives none: about `MASK_UPDATES` (10)
    updates over the pruning span, every `MAX_FREQUENCY` (100) steps at most on long schedules,
    every step when the span is shorter than 10 (TFMOT's fixed 100 left no update at all in
    runs of a few hundred images). The span runs from `begin_step` to `end_step`, or to the
    end of the first `epochs - 1` epochs (see `pruning_end_step`); with a given `end_step` the
    frequency is the largest one within those bounds that divides the span, so the last update
    lands on `end_step`. A span of no steps gives 1 (`pruning_end_step` then says what is
    wrong)."""
    if end_step is None:
        span = steps_per_epoch * max(epochs - 1, 1) - begin_step
    else:
        span = end_step - begin_step
    if span < 1:
        return 1
    frequency = min(max(span // MASK_UPDATES, 1), MAX_FREQUENCY)
    if end_step is not None:
        while span % frequency:
            frequency -= 1
    return frequency


def pruning_end_step(
    steps_per_epoch: int, epochs: int, begin_step: int, end_step: int | None, frequency: int
) -> int:
    """The step at which the last mask update brings every kernel to the target.

    Masks update at steps begin_step + k·frequency (k = 0, 1, ...), counted from 1 at the first
    batch. By default pruning ends at the last such step within the first `epochs - 1` epochs,
    so the last epoch fine-tunes at the target (within the only epoch when `epochs` is 1). A
    given `end_step` must be such a step and come within the run.
    """
    total = steps_per_epoch * epochs
    if end_step is None:
        horizon = steps_per_epoch * max(epochs - 1, 1)
        if begin_step >= horizon:
            raise ValueError(
                f"begin_step={begin_step} leaves no pruning before step {horizon} "
                f"({steps_per_epoch} steps per epoch × {epochs} epochs, the last one for "
                "recovery): lower begin_step or train longer."
            )
        updates = (horizon - begin_step) // frequency
        if updates < 1:
            raise ValueError(
                f"frequency={frequency} leaves no mask update between begin_step={begin_step} and "
                f"step {horizon} ({steps_per_epoch} steps per epoch × {epochs} epochs): lower "
                f"frequency to at most {max((horizon - begin_step) // 4, 1)} or train longer."
            )
        return begin_step + updates * frequency
    if end_step <= begin_step or end_step > total:
        raise ValueError(
            f"end_step={end_step} must lie after begin_step={begin_step} and within the run's "
            f"{total} steps ({steps_per_epoch} per epoch × {epochs} epochs)."
        )
    if (end_step - begin_step) % frequency:
        raise ValueError(
            f"end_step - begin_step = {end_step - begin_step} is not a multiple of "
            f"frequency={frequency}, so the last mask update would fall short of the target; "
            f"use end_step={begin_step + (end_step - begin_step) // frequency * frequency}."
        )
    return end_step


def check_integers(**values: tuple[Any, int]) -> None:
    """name=(value, minimum): a ValueError naming any value that is not an integer >= minimum."""
    for name, (value, low) in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def prune(
    student: keras.Model,
    data: Any,
    *,
    teacher: keras.Model | None = None,
    target_sparsity: float = 0.5,
    epochs: int = 2,
    batch_size: int = 32,
    begin_step: int = 0,
    end_step: int | None = None,
    frequency: int | None = None,
    alpha: float = 0.1,
    temperature: float = 3.0,
    optimizer: Any = "adam",
    seed: int | None = None,
    verbose: int = 0,
    callbacks: list | None = None,
    sparsity: StructuredSparsity | None = None,
) -> keras.Model:
    """A copy of `student` whose prunable kernels hold `target_sparsity` zeros.

    `data`: (x (N, ...), y (N,)) arrays, batched and shuffled here, or a batched
    `tf.data.Dataset` of (x, y[, w]) or of `cache_teacher_outputs` batches; y = -1 marks an
    unlabeled example. With a `teacher` (Keras 3, (B, ...) -> (B, C)) or cached logits, the loss
    is the Distiller's (`alpha`, `temperature`); otherwise cross-entropy. `optimizer` is a
    tf_keras optimizer or its name. Sparsity follows PolynomialDecay from 0 at `begin_step` to
    the target at `end_step` (see `pruning_end_step`), updated every `frequency` steps (by
    default about ten updates, every 100 steps at most: `pruning_frequency`).
    `callbacks` (tf_keras) join the fit, e.g. `tf_keras.callbacks.BackupAndRestore`.
    `sparsity`: a `StructuredSparsity` penalty of the student's weights added to the loss
    while it fine-tunes (network slimming, group lasso; see `compress.slimming`).
    The returned Keras 3 model is stripped of the wrappers; `student` is unchanged.
    """
    tfmot, tf_keras = require_tfmot()
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must be in [0, 1), got {target_sparsity}.")
    check_integers(epochs=(epochs, 1), batch_size=(batch_size, 1), begin_step=(begin_step, 0))
    if frequency is not None:
        check_integers(frequency=(frequency, 1))
    from tfdistill.compress import tuner

    tuning = tuner.prepare(
        student,
        data,
        teacher,
        batch_size=batch_size,
        seed=seed,
        alpha=alpha,
        temperature=temperature,
        optimizer=optimizer,
        epochs=epochs,
        verbose=verbose,
        sparsity=sparsity,
    )
    if frequency is None:
        frequency = pruning_frequency(tuning.steps_per_epoch, epochs, begin_step, end_step)
    end = pruning_end_step(tuning.steps_per_epoch, epochs, begin_step, end_step, frequency)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=target_sparsity,
        begin_step=begin_step,
        end_step=end,
        frequency=frequency,
    )

    def wrap(layer: Any) -> Any:
        if type(layer).__name__ in _KERNELS:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    twin = to_tf_keras(student)
    wrapped = tf_keras.models.clone_model(twin, clone_function=wrap)
    tuning.run(wrapped, callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), *(callbacks or [])])
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    return to_keras(stripped, like=student)


def expected_sparsity(target_sparsity: float, size: int) -> float:
    """The zero fraction TFMOT leaves in a kernel of `size` entries: it keeps
    max(round(size · (1 - target)), 1) of them, rounding half to even."""
    return 1.0 - max(int(np.round(size * (1.0 - target_sparsity))), 1) / size


__all__ = [
    "check_integers",
    "expected_sparsity",
    "kernel_sparsity",
    "overall_sparsity",
    "prune",
    "pruning_end_step",
    "pruning_frequency",
]
