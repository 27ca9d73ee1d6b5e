"""The optional `compress` extra (TFMOT and tf_keras), found on demand. A module of its own so
that `bridge`, `qat` and `sparsity` reach it without importing their package back."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = 'pip install "tfdistill[compress]" (or pip install -e ".[compress]" from the repo)'


def require_tfmot() -> tuple[ModuleType, ModuleType]:
    """(tensorflow_model_optimization, tf_keras), imported on demand; ImportError naming the
    extra to install when either is missing."""
    try:
        tfmot = importlib.import_module("tensorflow_model_optimization")
        tf_keras = importlib.import_module("tf_keras")
    except ImportError as error:
        raise ImportError(
            f"This needs tensorflow_model_optimization and tf_keras ({error.name} is missing): "
            f"{INSTALL_HINT}."
        ) from error
    return tfmot, tf_keras
