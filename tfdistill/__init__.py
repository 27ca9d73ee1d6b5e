"""tfdistill: turn big, accurate Keras models into small, fast ones that run on phones."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfdistill import _quiet  # noqa: E402

_quiet.for_the_command()  # before TensorFlow is imported; only for the `tfdistill` command

__version__ = "0.1.0"

from tfdistill import _keras_internals  # noqa: E402

_keras_internals.check_keras_version()  # a warning once, at import, outside the tested range

from tfdistill import (  # noqa: E402
    bench,
    compress,
    data,
    distribute,
    export,
    losses,
    models,
    precision,
)
from tfdistill.attention import AttentionTransfer, GradientAttentionTransfer  # noqa: E402
from tfdistill.data import cache_teacher_outputs, shuffled_batches  # noqa: E402
from tfdistill.distiller import Distiller, resolve_jit_compile  # noqa: E402
from tfdistill.distribute import support_strategy, synchronize_batch_norm  # noqa: E402
from tfdistill.hints import FeatureHint, HintAdapter  # noqa: E402
from tfdistill.losses import (  # noqa: E402
    DIST,
    DecoupledKD,
    HardTargetLoss,
    LogitMethod,
    SoftTargetLoss,
)
from tfdistill.profile import Profile, profile  # noqa: E402
from tfdistill.run import RunConfig  # noqa: E402

__all__ = [
    "DIST",
    "DecoupledKD",
    "LogitMethod",
    "AttentionTransfer",
    "Distiller",
    "FeatureHint",
    "GradientAttentionTransfer",
    "HardTargetLoss",
    "HintAdapter",
    "Profile",
    "RunConfig",
    "SoftTargetLoss",
    "bench",
    "cache_teacher_outputs",
    "compress",
    "data",
    "distribute",
    "export",
    "losses",
    "models",
    "precision",
    "profile",
    "resolve_jit_compile",
    "shuffled_batches",
    "support_strategy",
    "synchronize_batch_norm",
]
