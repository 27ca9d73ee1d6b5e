"""`tf.distribute` for tfdistill: the strategies `tfdistill run` takes, the workers' roles in a
multi-worker run, and what Keras 3's `fit` needs to train under several replicas.

Keras 3.15's `fit` averages the replicas' shares of the first batch to learn the data's shapes
before the first step: under `MirroredStrategy` that fails when the first batch splits unevenly
over the replicas (64 images on 3 GPUs), and under `MultiWorkerMirroredStrategy` it always fails
(keras-team/keras#20585), where each step's scalar logs are also reduced along an axis 0 they
lack. `support_strategy` mends both for one model: the shapes come from this replica's own
batch, and the logs travel as vectors of one value. The Distiller applies it to itself;
`tfdistill run` to every model it fits.

A replica can also get no example at all: the last batch of 13 images in batches of 4 splits
1 + 0 over two replicas. TensorFlow 2.21's oneDNN convolution (on by default on CPUs with
AVX-512 VNNI/BF16 or AMX) then returns its input unchanged in graph mode, and the next layer
fails ("input depth must be evenly divisible by filter depth"). `padded_if_empty` gives such a
replica one row of zeros that weighs nothing: its losses and gradients are zero, and
synchronized BatchNorm leaves it out of its statistics, so every replica still enters the same
collectives and the step equals one device's.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from tfdistill import _keras_internals

# Marks a model `support_strategy` already changed (an attribute of tfdistill's own).
_MENDED = "_tfdistill_mended"
STRATEGIES = ("default", "mirrored", "multi_worker", "one_device")
TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
    '"index": 0}}'
)


def cluster_task(environ: dict | None = None) -> tuple[dict[str, list[str]], str, int]:
    """(cluster {job: [host:port]}, task type, task index) from `TF_CONFIG`; a ValueError that
    says what is wrong and shows a valid one otherwise."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    hint = f"; set it on every worker, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'"
    if not text:
        raise ValueError(
            "--strategy=multi_worker reads the cluster from the TF_CONFIG environment "
            f"variable, which is not set{hint}."
        )
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], task["index"]
        jobs = {job: hosts for job, hosts in cluster.items() if job in ("chief", "worker")}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"TF_CONFIG must be JSON with 'cluster' and 'task' ({type(error).__name__}: "
            f"{error}){hint}."
        ) from None
    for job, hosts in jobs.items():
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
            raise ValueError(
                f"TF_CONFIG's cluster job {job!r} must be a non-empty list of 'host:port' "
                f"strings, got {hosts!r}{hint}."
            )
    if len(jobs.get("chief", [])) > 1:
        raise ValueError(f"TF_CONFIG's cluster has {len(jobs['chief'])} chiefs; one at most{hint}.")
    valid_index = isinstance(index, int) and not isinstance(index, bool)
    if (
        not isinstance(kind, str)
        or kind not in jobs
        or not valid_index
        or not 0 <= index < len(jobs[kind])
    ):
        raise ValueError(
            f"TF_CONFIG's task {task} is not one of its cluster's workers {jobs} (tfdistill "
            f"runs 'chief' and 'worker' tasks; no parameter servers or evaluators){hint}."
        )
    return jobs, kind, index


def strategy_of(name: str) -> tf.distribute.Strategy:
    """The strategy `name` (see `STRATEGIES`): "mirrored" takes every local GPU (the CPU when
    there is none); "multi_worker" every worker of `TF_CONFIG`, and must be made before
    TensorFlow runs anything else in the process; "one_device" the first GPU, else the CPU."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        cluster_task()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"Unknown strategy {name!r}; choose from {list(STRATEGIES)}.")


def _cluster(strategy: tf.distribute.Strategy) -> tuple[dict, str | None, int | None]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return {}, None, None
    return resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together under `strategy` (1 outside a multi-worker one)."""
    cluster, _, _ = _cluster(strategy)
    return max(sum(len(cluster.get(job, [])) for job in ("chief", "worker")), 1)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        num_workers(strategy) > 1
    )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the 'chief' task, or worker 0 when the
    cluster has no chief; every single-process strategy."""
    cluster, kind, index = _cluster(strategy)
    if not is_multi_worker(strategy) or kind is None:
        return True
    if "chief" in cluster:
        return kind == "chief"
    return kind == "worker" and index == 0


def worker_name(strategy: tf.distribute.Strategy) -> str:
    """'chief', or 'worker 3' for the others."""
    _, kind, index = _cluster(strategy)
    return "chief" if is_chief(strategy) else f"{kind} {index}"


def agree(strategy: tf.distribute.Strategy, values: dict[str, int]) -> None:
    """Raises a ValueError naming the first of `values` ({what: int in [0, 2**24)}) on which
    the workers of a multi-worker `strategy` differ: workers that went separate ways (other
    flags, other data, a stale view of the shared folder) would otherwise train apart or wait
    on each other forever. One all-gather; nothing under other strategies."""
    if not is_multi_worker(strategy) or not values:
        return
    vector = tf.constant([list(values.values())], tf.float32)

    def gather() -> tf.Tensor:
        return tf.distribute.get_replica_context().all_gather(vector, axis=0)

    seen = strategy.experimental_local_results(strategy.run(gather))[0].numpy()
    for i, what in enumerate(values):
        column = [int(v) for v in seen[:, i]]
        if len(set(column)) > 1:
            each = ", ".join(f"{value} on replica {r}" for r, value in enumerate(column))
            raise ValueError(
                f"the workers disagree on {what} ({each}); start every worker with the same "
                "flags and data, and an --out that they all see alike."
            )


def _local_batch(strategy: tf.distribute.Strategy, batch: Any) -> Any:
    def local(value: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(local, batch)


def _vector_logs(logs: Any) -> Any:
    """Each scalar of a step's logs as a vector of one value, which Keras's multi-worker
    reduction (a mean along axis 0 over the workers) turns back into the scalar."""

    def vector(value: Any) -> Any:
        if isinstance(value, tf.Tensor) and value.shape.rank == 0:
            return tf.reshape(value, [1])
        return value

    return tf.nest.map_structure(vector, logs)


def _pad_rows(value: Any, pad: tf.Tensor) -> Any:
    if not isinstance(value, tf.Tensor) or value.shape.rank in (None, 0):
        return value
    zeros = tf.zeros(tf.concat([[pad], tf.shape(value)[1:]], 0), value.dtype)
    return tf.concat([value, zeros], 0)


def batch_rows(data: Any) -> tf.Tensor:
    """The number of rows B of a batch: the first dimension of its first (B, ...) tensor."""
    for value in tf.nest.flatten(data):
        if isinstance(value, tf.Tensor) and value.shape.rank:
            return tf.shape(value)[0]
    raise ValueError("A batch needs at least one tensor with a batch dimension.")


@contextlib.contextmanager
def padded_if_empty(data: Any) -> Iterator[tuple[Any, tf.Tensor]]:
    """Yields (`data` with one row of zeros appended to each (B, ...) tensor when B is 0, the
    real B as an int32 scalar). Inside, synchronized BatchNorm computes its statistics from the
    real rows alone. The caller gives the padding row zero weight (see the module docstring)."""
    rows = batch_rows(data)
    pad = tf.cast(tf.equal(rows, 0), tf.int32)
    with _keras_internals.batch_norm_rows(rows):
        yield tf.nest.map_structure(lambda value: _pad_rows(value, pad), data), rows


def _padded_steps(model: keras.Model) -> None:
    """Wraps `model`'s train, test and predict steps in `padded_if_empty`; the padding row
    gets sample weight 0 (every output's) and is cut from the predictions."""

    def weighted(step: Any) -> Any:
        def run(data: Any) -> Any:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            with padded_if_empty((x, y, sample_weight)) as ((x, y, sample_weight), rows):
                if y is not None and sample_weight is None:
                    real = tf.cast(tf.range(batch_rows(x)) < rows, tf.float32)
                    sample_weight = tf.nest.map_structure(lambda _: real, y)
                return step(keras.utils.pack_x_y_sample_weight(x, y, sample_weight))

        return run

    def predict(step: Any) -> Any:
        def run(data: Any) -> Any:
            x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
            with padded_if_empty(x) as (x, rows):
                return tf.nest.map_structure(lambda out: out[:rows], step((x,)))

        return run

    object.__setattr__(model, "train_step", weighted(model.train_step))
    object.__setattr__(model, "test_step", weighted(model.test_step))
    object.__setattr__(model, "predict_step", predict(model.predict_step))


def support_strategy(model: keras.Model, pad_empty: bool = True) -> keras.Model:
    """Lets `model.fit`, `evaluate` and `predict` run under the strategy it was made in,
    whatever the split of a batch over its replicas (one with no example included), and under
    `MultiWorkerMirroredStrategy` (see the module docstring); a no-op for one replica.
    `pad_empty=False` leaves empty replicas to a model whose own steps call `padded_if_empty`
    (the Distiller). Returns `model`."""
    strategy = _keras_internals.strategy_made_in(model)
    if strategy is None or strategy.num_replicas_in_sync == 1 or hasattr(model, _MENDED):
        return model

    def vector_step(step: Any) -> Any:
        def run(data: Any) -> Any:
            return _vector_logs(step(data))

        return run

    _keras_internals.build_from_local_batch(model, _local_batch)
    if pad_empty:
        _padded_steps(model)
    if is_multi_worker(strategy):
        object.__setattr__(model, "train_step", vector_step(model.train_step))
        object.__setattr__(model, "test_step", vector_step(model.test_step))
    object.__setattr__(model, _MENDED, True)
    return model


def synchronize_batch_norm(model: keras.Model) -> keras.Model:
    """Sets `synchronized=True` on every BatchNormalization layer of `model` (nested ones
    too): in training, each layer's batch mean and variance then come from the global batch,
    all-reduced over the replicas, as on one device, instead of from each replica's slice.
    Returns `model`."""
    for layer in _keras_internals.flatten_layers(model, include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    return model


def global_sum(values: tf.Tensor) -> tf.Tensor:
    """Sum over all replicas (identity outside tf.distribute). Differentiable: the gradient
    reaching the sum is summed over the replicas too (`ReplicaContext.all_reduce`)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
