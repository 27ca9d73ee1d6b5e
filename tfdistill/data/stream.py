"""The resumable stream of training batches: ``shuffled_batches``, the same batch k in every
process, on every worker and after any restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from tfdistill.data.store import ImageStore

if TYPE_CHECKING:
    import tensorflow as tf


def _on_disk(t: Any) -> bool:
    return isinstance(t, (ImageStore, np.memmap))


def as_tensors(elements: Any) -> Any:
    """`elements` with every array as a tensor; `ImageStore`s and memory maps stay on disk."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda t: t if _on_disk(t) else tf.convert_to_tensor(t), elements)


def _gather(t: Any, indices: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    if isinstance(t, ImageStore):
        return t.gather(indices)
    if isinstance(t, np.memmap):
        rows = tf.numpy_function(lambda i: np.asarray(t[i], np.float32), [indices], tf.float32)
        return tf.ensure_shape(rows, [None, *t.shape[1:]])
    return tf.gather(t, indices)


def gather_rows(tensors: Any, indices: tf.Tensor) -> Any:
    """Rows `indices` (k,) of each tensor, of each store (uint8) and memory map (float32),
    the last two read from disk."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda t: _gather(t, indices), tensors)


def row_count(elements: Any) -> int:
    import tensorflow as tf

    return len(tf.nest.flatten(elements)[0])


def shuffled_batches(
    elements: Any,
    batch_size: int,
    *,
    seed: int,
    skip: int = 0,
    augment: Callable[[Any, tf.Tensor], Any] | None = None,
) -> tf.data.Dataset:
    """An endless stream of batches of ``elements``, a structure (tuple, dict) of arrays that
        share their first dimension N (an `ImageStore` among them is read a batch at a time, as
    uint8). Pass p over the rows is the permutation drawn from
        ``(seed, p)``; batch i of a pass (ceil(N / batch_size) batches, the last one short) goes
        through ``augment(batch, stateless seed (2,) made of (seed, p, i))`` when given. Batch k of
        the stream is thus the same in every process, on every worker and after any restart: the
        stream that starts at batch ``skip`` continues exactly where an interrupted one stopped.
        Feed it to ``fit`` with ``steps_per_epoch``.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    tensors = as_tensors(elements)
    rows = row_count(tensors)
    if rows == 0:
        raise ValueError("shuffled_batches got no rows.")
    per_pass = -(-rows // batch_size)

    def one_pass(p: tf.Tensor) -> tf.data.Dataset:
        pass_seed = tf.stack([tf.constant(seed, tf.int64), p])
        order = tf.random.experimental.stateless_shuffle(tf.range(rows), seed=pass_seed)

        def take(i: tf.Tensor, indices: tf.Tensor) -> Any:
            batch = gather_rows(tensors, indices)
            if augment is None:
                return batch
            return augment(batch, tf.random.experimental.stateless_fold_in(pass_seed, i))

        indices = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()
        return indices.map(take, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    first_pass, within = divmod(skip, per_pass)
    stream = tf.data.Dataset.range(first_pass, 2**62).flat_map(one_pass).skip(within)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return stream.with_options(options).prefetch(tf.data.AUTOTUNE)
