"""Every private name of Keras and TensorFlow that tfdistill touches, in one place.

Each function says why it needs the private name and the versions it was checked on
("checked": read in the source and exercised by the smoke tests, `pytest -m smoke`, on the
lowest and highest Keras that `setup.py` allows). A Keras or TensorFlow release that renames
one breaks this module alone; `tests/test_internals.py` fails if another module of tfdistill
touches a private name of Keras, TensorFlow, tf_keras or TFMOT.
"""

from __future__ import annotations

import contextlib
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import nn as _tf_nn

# The Keras releases the test suite and CI run on: the smoke subset on the lowest, the whole
# suite on the highest. `setup.py` allows exactly these.
TESTED_KERAS = ">=3.12,<3.16"
_TESTED_RANGE = ((3, 12), (3, 16))

_rows = threading.local()
_original_sync_moments = _tf_nn._compute_moments_sync


def _masked_sync_moments(x: tf.Tensor, axes: Any, keepdims: bool) -> tuple[tf.Tensor, tf.Tensor]:
    rows = getattr(_rows, "count", None)
    if rows is not None:
        x = x[:rows]
    return _original_sync_moments(x, axes, keepdims)


@contextlib.contextmanager
def batch_norm_rows(rows: tf.Tensor) -> Iterator[None]:
    """Inside, synchronized BatchNormalization layers traced on this thread compute their
    batch statistics from the first `rows` rows of their (B, ..., C) inputs alone, so rows
    appended as padding change neither the mean, the variance nor the count all-reduced over
    the replicas. Each replica traces on a thread of its own under `MirroredStrategy`.

    Keras 3.12-3.15.1: `BatchNormalization(synchronized=True)` reaches the module function
    `keras.src.backend.tensorflow.nn._compute_moments_sync(x, axes, keepdims)` (the batch axis 0
    is among `axes`), which is replaced once, on first use, by one that slices `x`."""
    if _tf_nn._compute_moments_sync is not _masked_sync_moments:
        _tf_nn._compute_moments_sync = _masked_sync_moments
    previous = getattr(_rows, "count", None)
    _rows.count = rows
    try:
        yield
    finally:
        _rows.count = previous


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs oneDNN kernels: `TF_ENABLE_ONEDNN_OPTS` as read
    at import, else TensorFlow's default for this CPU (on with AVX-512 VNNI/BF16 or AMX).
    TensorFlow 2.21: `tensorflow.python.util._pywrap_util_port.IsMklEnabled`."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def check_keras_version(version: str = keras.__version__) -> None:
    """A `UserWarning` naming `version` and `TESTED_KERAS` when `version` is outside it.
    `tfdistill/__init__.py` calls it once, at import."""
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        release = None
    low, high = _TESTED_RANGE
    if release is None or not low <= release < high:
        warnings.warn(
            f"tfdistill was tested with Keras {TESTED_KERAS}; Keras {version} is installed. "
            "It touches a few Keras internals (tfdistill/_keras_internals.py) that another "
            "release may have renamed.",
            UserWarning,
            stacklevel=2,
        )


def op_determinism_enabled() -> bool:
    """Whether `tf.config.experimental.enable_op_determinism()` is on; TensorFlow has no
    public getter. TensorFlow 2.21: `tensorflow.python.framework.config`."""
    from tensorflow.python.framework.config import is_op_determinism_enabled

    return bool(is_op_determinism_enabled())


# Functional graphs. Keras has no public API to walk or re-run a Functional model's graph
# with other layers (cloning it layer by layer, folding BatchNorm, building a tf_keras twin).
# Checked on Keras 3.12.0 and 3.15.1: `Function._nodes_by_depth`, `_inputs_struct`,
# `_run_through_graph(inputs, operation_fn, call_fn=None)`, `Functional._standardize_inputs`,
# `Sequential._functional`, `KerasTensor._keras_history.operation`, `Layer._inbound_nodes` /
# `_outbound_nodes`.


def functional_graph(model: Any) -> Any | None:
    """The Functional graph of a functional or built Sequential model, or None."""
    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None)
    if model is None or not hasattr(model, "_run_through_graph"):
        return None
    return model


def nodes_by_depth(graph: Any) -> dict[int, list[Any]]:
    """{depth: the graph's nodes (layer calls) at it}; the outputs are at depth 0."""
    return graph._nodes_by_depth


def run_through_graph(
    graph: Any, inputs: Any, operation_fn: Callable, call_fn: Callable | None = None
) -> Any:
    """The graph re-run on `inputs` (symbolic or real), each layer replaced by
    `operation_fn(layer)` and, with `call_fn`, called as `call_fn(layer, *args, **kwargs)`."""
    if call_fn is None:
        return graph._run_through_graph(inputs, operation_fn=operation_fn)
    return graph._run_through_graph(inputs, operation_fn=operation_fn, call_fn=call_fn)


def standardize_inputs(graph: Any, x: Any) -> list[Any]:
    """`x` flattened and converted the way the Functional model's own call does."""
    return graph._standardize_inputs(x)


def inputs_structure(graph: Any, flat_inputs: list[Any]) -> Any:
    """`flat_inputs` packed in the nesting of the graph's inputs (a tensor, list or dict)."""
    return keras.tree.pack_sequence_as(graph._inputs_struct, flat_inputs)


def producer(tensor: Any) -> Any | None:
    """The layer (operation) whose call made the symbolic `tensor`; None for other tensors."""
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.operation


def inbound_nodes(layer: Any) -> list[Any]:
    """The calls of `layer` (Keras 3 nodes, or tf_keras nodes on a tf_keras layer)."""
    return list(layer._inbound_nodes)


def outbound_nodes(layer: Any) -> list[Any]:
    """The calls that consume `layer`'s outputs (tf_keras layers; checked on tf_keras 2.21)."""
    return list(layer._outbound_nodes)


# Layers and models. Checked on Keras 3.12.0 and 3.15.1.


def flatten_layers(model: Any, include_self: bool = True) -> list[Any]:
    """Every layer of `model`, nested models' included, each once (`Layer._flatten_layers`:
    `model.layers` stops at the first level)."""
    return list(model._flatten_layers(include_self=include_self))


def seed_generators(layer: Any) -> list[Any]:
    """The `SeedGenerator`s `layer` itself holds (`Layer._seed_generators`): their states are
    variables that `save_weights` leaves out."""
    return list(getattr(layer, "_seed_generators", []))


def takes_training(layer: Any) -> bool:
    """Whether `layer.call` has a `training` argument (`Layer._call_has_training_arg`)."""
    return bool(getattr(layer, "_call_has_training_arg", False))


def strategy_made_in(model: Any) -> Any | None:
    """The `tf.distribute` strategy `model` was made under, or None
    (`TensorFlowTrainer._distribute_strategy`; `model.distribute_strategy` falls back to the
    default strategy)."""
    return getattr(model, "_distribute_strategy", None)


def compiled_metrics(model: Any) -> Any | None:
    """The metrics container `compile(metrics=...)` made (`Trainer._compile_metrics`), for a
    model whose `metrics` property is its own."""
    return model._compile_metrics


def loss_function_kwargs(loss: Any) -> dict:
    """The keyword arguments a `LossFunctionWrapper` passes its function
    (`LossFunctionWrapper._fn_kwargs`), {} for other losses."""
    return dict(getattr(loss, "_fn_kwargs", {}) or {})


def build_from_local_batch(model: Any, local_batch: Callable[[Any, Any], Any]) -> None:
    """Makes `fit` / `evaluate` build `model` from `local_batch(strategy, first batch)`, the
    batch of one replica, instead of the distributed batch Keras 3 builds from (which fails
    for an uneven split and under `MultiWorkerMirroredStrategy`).

    Keras 3.12.0 and 3.15.1: `TensorFlowTrainer._maybe_symbolic_build(iterator, data_batch)`
    (the iterator yields (begin step, end step, batches)) and `Trainer._symbolic_build`,
    replaced on this instance."""

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = local_batch(self.distribute_strategy, next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    object.__setattr__(
        model, "_maybe_symbolic_build", types.MethodType(maybe_symbolic_build, model)
    )


class BackupAndRestoreBase(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups subclasses write themselves, in
    `save_backup(epoch, batch)`, to `weights_file` and `metadata_file` (the files its own
    `on_train_begin` loads).

    Keras 3.12.0 and 3.15.1: the callback saves in `_save_model()`, with the epoch count in
    `_current_epoch` and the batch in `_last_batch_seen`, to `_weights_path` and
    `_training_metadata_path`."""

    def save_backup(self, epoch: int, batch: int) -> None:
        """Writes the backup of `self.model` at `epoch` (epochs done) and `batch`."""
        raise NotImplementedError

    def _save_model(self) -> None:
        self.save_backup(self._current_epoch, self._last_batch_seen)

    @property
    def weights_file(self) -> Path:
        return Path(self._weights_path)

    @property
    def metadata_file(self) -> Path:
        return Path(self._training_metadata_path)


def tfmot_output_quantize_config() -> type:
    """TFMOT's `QuantizeConfig` that quantizes a layer's output alone (no weights), which its
    public API does not export. Checked on tensorflow-model-optimization 0.8.1:
    `tensorflow_model_optimization.python.core.quantization.keras.default_8bit.
    default_8bit_quantize_configs.Default8BitOutputQuantizeConfig`."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs,
    )

    return default_8bit_quantize_configs.Default8BitOutputQuantizeConfig
