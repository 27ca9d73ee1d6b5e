"""Partly labeled sets: ``label_subset`` (a class-balanced subset of indices) and
``mask_labels`` (-1 for every label outside it); labels are int64 of shape (N,)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def label_subset(y: np.ndarray, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of a class-balanced random subset of ``y`` (shape (N,)).

    Draws ``per_class`` indices of every class present in ``y``; negative (unlabeled) entries
    are never drawn. The same ``y``, ``per_class`` and ``seed`` give the same indices.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must have shape (N,), got {y.shape}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    classes, counts = np.unique(y[y >= 0], return_counts=True)
    short = {int(c): int(n) for c, n in zip(classes, counts, strict=True) if n < per_class}
    if short:
        listed = ", ".join(f"class {c} has {n}" for c, n in short.items())
        raise ValueError(f"per_class={per_class} exceeds the examples available: {listed}")
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def mask_labels(y: np.ndarray, keep_indices: np.ndarray | Sequence[int]) -> np.ndarray:
    """A copy of ``y`` (int64, shape (N,)) with -1 everywhere except at ``keep_indices``."""
    y = np.asarray(y)
    masked = np.full(y.shape, -1, dtype=np.int64)
    keep = np.asarray(keep_indices, dtype=np.int64)
    masked[keep] = y[keep]
    return masked
