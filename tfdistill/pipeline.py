"""The stages of `tfdistill run`: data -> teacher -> students (scratch, distilled) -> [prune]
-> [qat] -> export -> bench -> report.

The default setting is the one where soft targets pay off (Hinton et al. 2015, section 3): the
student sees labels for only a few images per class, while it distils on every training image.
The scratch student trains on the labeled images alone for the same number of steps.

Models take raw pixels (0..255, or 0..16 for digits): each starts with a `Rescaling` layer,
so the `.tflite` files do too. A run folder keeps a ledger (`tfdistill.resume`): re-running the
same config skips the finished stages, and an interrupted training stage resumes from its last
backed-up epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdistill import (
    artifacts,
    compress,
    data,
    distribute,
    models,
    plots,
    precision,
    report,
    resume,
)
from tfdistill import bench as bench_lib
from tfdistill.attention import AttentionTransfer, GradientAttentionTransfer
from tfdistill.distiller import Distiller, check_alpha, resolve_jit_compile
from tfdistill.export import (
    QUANTIZATIONS,
    evaluate_tflite,
    file_size,
    inference_function,
    to_tflite,
)
from tfdistill.losses import check_temperature
from tfdistill.profile import profile, weight_bytes
from tfdistill.progress import Progress

METHODS = ("kd", "at", "kd+at", "gat")
SCHEDULES = ("cosine", "step", "constant")
STRATEGIES = distribute.STRATEGIES
MIXED_PRECISION = precision.MIXED_PRECISION
XLA = ("auto", "on", "off")
DISTRIBUTED_STAGES = ("teacher", "scratch", "distil")
NATURAL_IMAGES = ("cifar10", "cifar100", "folder:", "tfds:")
NOT_FINGERPRINTED = ("out", "quiet", "strategy", "deterministic", "teacher_weights")
EXPORT_SETTINGS = ("quantize",)
BENCH_SETTINGS = (
    "threads",
    "bench_runs",
    "android",
    "benchmark_binary",
    "adb",
    "serial",
    "use_gpu",
    "use_nnapi",
    "taskset",
)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    out: str
    dataset: str = "digits"
    data_dir: str | None = None
    teacher: str = "convnet"
    teacher_kwargs: dict = dataclasses.field(
        default_factory=lambda: {"widths": (16, 32, 64), "depth": 2}
    )
    student: str = "convnet"
    student_kwargs: dict = dataclasses.field(default_factory=lambda: {"widths": (4, 8, 16)})
    labels_per_class: int = 10
    teacher_epochs: int = 10
    student_epochs: int = 30
    batch_size: int = 64
    teacher_learning_rate: float = 3e-3
    student_learning_rate: float = 1e-2
    alpha: float = 0.1
    temperature: float = 4.0
    seed: int = 0
    quantize: tuple[str, ...] = ("none", "float16", "dynamic", "int8")
    threads: int | None = None
    bench_runs: int = 50
    prune: float | None = None
    qat: bool = False
    compress_epochs: int = 6
    method: str = "kd"
    beta: float | None = None
    teacher_weights: str | None = None
    lr_schedule: str = "cosine"
    augment: bool | None = None
    strategy: str = "default"
    deterministic: bool = False
    mixed_precision: str = "none"
    xla: str = "auto"
    quiet: bool = False
    android: bool = False
    benchmark_binary: str | None = None
    adb: str = "adb"
    serial: str | None = None
    use_gpu: bool = False
    use_nnapi: bool = False
    taskset: str | None = None

    def __post_init__(self) -> None:
        for name in ("teacher_epochs", "student_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.labels_per_class < 0:
            raise ValueError(
                f"labels_per_class must be >= 0 (0: every label), got {self.labels_per_class}."
            )
        for name, value, choices in (
            ("lr_schedule", self.lr_schedule, SCHEDULES),
            ("strategy", self.strategy, STRATEGIES),
            ("mixed_precision", self.mixed_precision, MIXED_PRECISION),
            ("xla", self.xla, XLA),
        ):
            if value not in choices:
                raise ValueError(f"Unknown {name} {value!r}; choose from {list(choices)}.")
        if self.xla == "on" and self.deterministic:
            raise ValueError(
                "xla='on' and deterministic cannot go together: TensorFlow's deterministic ops "
                "have no XLA kernels. Use xla='auto' or 'off' with deterministic."
            )
        if self.teacher_weights is not None and not Path(self.teacher_weights).is_file():
            raise FileNotFoundError(f"teacher_weights {self.teacher_weights!r} is not a file.")
        if self.android and not self.benchmark_binary:
            raise ValueError("android needs benchmark_binary, the phone's benchmark_model.")
        check_alpha(self.alpha)
        check_temperature(self.temperature)
        unknown = [q for q in self.quantize if q not in QUANTIZATIONS]
        if unknown:
            raise ValueError(f"Unknown quantization {unknown}; choose from {list(QUANTIZATIONS)}.")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}.")
        if self.bench_runs < 1:
            raise ValueError(f"bench_runs must be >= 1, got {self.bench_runs}.")
        if self.prune is not None and not 0.0 < self.prune < 1.0:
            raise ValueError(f"prune (the target sparsity) must be in (0, 1), got {self.prune}.")
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; choose from {list(METHODS)}.")
        if self.beta is not None and self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}.")
        if self.compress_epochs < 1:
            raise ValueError(f"compress_epochs must be >= 1, got {self.compress_epochs}.")
        if self.prune is not None or self.qat:
            compress.require_tfmot()
        data.check_name(self.dataset)
        for role in ("teacher", "student"):
            if getattr(self, role) not in models.names():
                raise ValueError(
                    f"Unknown {role} model {getattr(self, role)!r}; available: {models.names()}."
                )


def read_config(path: str | Path) -> dict:
    """The RunConfig fields in a JSON (.json) or YAML (.yaml, .yml) file: a mapping from field
    names (the `tfdistill run` flag names) to values; `epochs` sets `teacher_epochs` and
    `student_epochs` where the file does not. Unknown keys and values of the wrong type
    are ValueErrors that name them and the valid keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found.")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ValueError(
                    f"config file {str(path)!r} is YAML, which needs PyYAML: pip install pyyaml "
                    "(or write the file as .json)."
                ) from None
            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:
        raise ValueError(f"config file {str(path)!r} does not parse: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of keys to values.")
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    if "epochs" in values:
        epochs = _typed("epochs", values.pop("epochs"), 1)
        for key in ("teacher_epochs", "student_epochs"):
            values.setdefault(key, epochs)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = sorted([*fields, "epochs"])
        raise ValueError(f"config file keys {unknown} are unknown; valid keys: {valid}.")
    checked = {}
    for key, value in values.items():
        default = RunConfig.__dataclass_fields__[key].default
        if (
            default is dataclasses.MISSING
            and fields[key].default_factory is not dataclasses.MISSING
        ):
            default = fields[key].default_factory()
        if default is None and value is not None:
            annotation = str(fields[key].type)
            default = next((t() for n, t in _NULLABLE if annotation.startswith(n)), None)
        checked[key] = _typed(key, value, default)
    return checked


_NULLABLE = (("bool", bool), ("float", float), ("int", int), ("str", str))


def _typed(key: str, value: Any, default: Any) -> Any:
    """`value` as the type of the field's default; a ValueError when it is not one."""
    if value is None or default is None or default is dataclasses.MISSING:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, list | tuple)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        kinds = {"int": "an integer", "float": "a number", "bool": "true or false"}
        kinds.update({"str": "a string", "tuple": "a list", "dict": "a mapping"})
        kind = kinds.get(type(default).__name__, type(default).__name__)
        raise ValueError(f"config key {key!r} must be {kind}, got {value!r}.")
    return value


def fingerprinted(config: RunConfig) -> dict:
    """The settings that decide a run's trained models: its config without
    `NOT_FINGERPRINTED` and the export and bench settings (those stages keep their own and run
    again when they change), plus the digest of the `teacher_weights` file's contents.
    `mixed_precision` and `xla` count only when set, so runs from before the flags still
    resume; XLA changes the order of floating-point operations, so a stage trained with it is
    not resumed without it."""
    values = _settings(config)
    for name, default in (("mixed_precision", "none"), ("xla", "auto")):
        if values.get(name) == default:
            del values[name]
    if config.teacher_weights:
        digest = hashlib.sha256(Path(config.teacher_weights).read_bytes()).hexdigest()
        values["teacher_weights_sha256"] = digest
    skip = {*NOT_FINGERPRINTED, *EXPORT_SETTINGS, *BENCH_SETTINGS}
    return {key: value for key, value in values.items() if key not in skip}


def _settings(config: RunConfig, names: Sequence[str] | None = None) -> dict:
    """`config`'s values of `names` (default: every field), as JSON would give them back."""
    names = [f.name for f in dataclasses.fields(RunConfig)] if names is None else names
    return json.loads(json.dumps({name: getattr(config, name) for name in names}))


def data_digest(ds: data.Dataset) -> str:
    """A hex digest of the images and labels of both splits."""
    digest = hashlib.sha256()
    for array in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()[:16]


def augments(config: RunConfig) -> bool:
    """`config.augment`, or by default whether the dataset holds natural images (CIFAR, an
    image folder, TFDS), which random crops and mirroring suit; digits do not mirror."""
    if config.augment is not None:
        return config.augment
    return config.dataset.startswith(NATURAL_IMAGES)


def _crop_flip(batch: tuple, seed: Any) -> tuple:
    """(x (B, H, W, C), ...) with x randomly cropped and mirrored; `seed` as in
    `data.random_crop_flip` (an op seed, or a stateless pair)."""
    x, *rest = batch
    return (data.random_crop_flip(x, seed=seed), *rest)


Stream = Callable[[int], tf.data.Dataset]


def _stream(config: RunConfig, elements: tuple) -> Stream:
    """skip -> the endless batches of `elements` ((x, y) arrays, x possibly a dict), from batch
    `skip` on, augmented if `augments` (see `data.shuffled_batches`)."""

    def stream(skip: int) -> tf.data.Dataset:
        return data.shuffled_batches(
            elements,
            config.batch_size,
            seed=config.seed,
            skip=skip,
            augment=_crop_flip if augments(config) else None,
        )

    return stream


def epoch_batches(config: RunConfig, elements: tuple) -> tf.data.Dataset:
    """One epoch of batches of `elements` per pass, reshuffled every pass and augmented if
    `augments` (for the TFMOT stages, which count an epoch's batches)."""
    x, _ = elements
    rows = len(x["inputs"] if isinstance(x, dict) else x)
    batches = (
        tf.data.Dataset.from_tensor_slices(elements)
        .shuffle(rows, seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
    )
    if augments(config):
        batches = batches.map(
            lambda *batch: _crop_flip(batch, config.seed), num_parallel_calls=tf.data.AUTOTUNE
        )
    return batches.prefetch(tf.data.AUTOTUNE)


strategy_of = distribute.strategy_of


def _classifier(
    name: str, kwargs: dict, ds: data.Dataset, role: str, mixed_precision: str = "none"
) -> keras.Model:
    """Zoo model `name` for `ds` (raw pixels, see `Dataset.raw_pixels`): its first layer
    scales them to [0, 1]. Its BatchNormalization layers are synchronized: under a strategy
    of several replicas they take the statistics of the global batch, and on one device they
    compute them the same way (E[x²] - E[x]²). Built under the dtype policy of
    `mixed_precision` (see `precision.MIXED_PRECISION`); the global policy is left as it was."""
    with precision.dtype_policy(precision.policy_name(mixed_precision)):
        model = models.get(
            name, num_classes=ds.num_classes, input_shape=ds.input_shape, name=role, **kwargs
        )
        model = models.with_preprocessing(model, 1.0 / ds.pixel_max)
    return distribute.synchronize_batch_norm(model)


def _schedule(learning_rate: float, steps: int, kind: str) -> Any:
    """`kind` "cosine": decay to zero over `steps`; "step": ×0.2 after 30, 60 and 80% of the
    steps (the WRN recipe's shape); "constant"."""
    if kind == "constant":
        return learning_rate
    if kind == "step":
        boundaries = sorted({max(round(steps * f), 1) for f in (0.3, 0.6, 0.8)})
        values = [learning_rate * 0.2**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    raise ValueError(f"Unknown lr_schedule {kind!r}; choose from {list(SCHEDULES)}.")


def _adam(learning_rate: float, steps: int, schedule: str = "cosine") -> keras.optimizers.Optimizer:
    """Adam, by default with cosine decay to zero: the weights settle at the end, so
    BatchNorm's moving statistics catch up with them."""
    return keras.optimizers.Adam(_schedule(learning_rate, steps, schedule))


def _jit_compile(config: RunConfig, model: keras.Model) -> bool:
    """`config.xla` "on" or "off"; "auto": where a GPU is present, as the Distiller decides
    (`resolve_jit_compile`), and off on CPU-only machines, where the embedded data's runs of a
    few hundred steps do not repay the compilation (measured: README, XLA)."""
    if config.xla == "auto":
        return bool(tf.config.list_physical_devices("GPU")) and resolve_jit_compile(model)
    return config.xla == "on"


def _compile(model: keras.Model, config: RunConfig, learning_rate: float, steps: int) -> None:
    """Adam on the cross-entropy; XLA per `_jit_compile`."""
    model.compile(
        optimizer=_adam(learning_rate, steps, config.lr_schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=_jit_compile(config, model),
    )


def _accuracy(model: keras.Model, ds: data.Dataset, batch_size: int) -> float:
    correct = 0
    for start in range(0, len(ds.x_test), batch_size):
        logits = model(ds.x_test[start : start + batch_size], training=False)
        correct += int(np.sum(np.argmax(logits, axis=-1) == ds.y_test[start : start + batch_size]))
    return correct / len(ds.x_test)


def _entry(trained: keras.Model, ds: data.Dataset, config: RunConfig, **extra: Any) -> dict:
    cost = profile(trained)
    return {
        "accuracy": _accuracy(trained, ds, config.batch_size),
        "params": cost.params,
        "trainable_params": cost.trainable_params,
        "macs": cost.macs,
        "peak_activation_bytes": cost.peak_activation_bytes,
        "weight_bytes": weight_bytes(trained),
        **extra,
    }


@dataclasses.dataclass(frozen=True)
class Fitting:
    """How a training stage calls `fit`: `verbose`, extra Keras callbacks, and the folder it
    backs up in at the end of an epoch, at most every `backup_interval_s` seconds, to resume
    from after an interruption (None: no backup). With `save_dir` it resumes from
    `backup_dir` but backs up to `save_dir` (the other workers of a multi-worker run)."""

    verbose: int = 0
    callbacks: tuple = ()
    backup_dir: Path | None = None
    backup_interval_s: float = 10.0
    save_dir: Path | None = None


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model and its history: {metric: [value per epoch]}."""

    model: keras.Model
    history: dict[str, list[float]]


def _fit(
    model: keras.Model, stream: Stream, epochs: int, steps_per_epoch: int, fitting: Fitting
) -> dict:
    """`model.fit` for `epochs` of `steps_per_epoch` batches of `stream` with the stage's
    callbacks; the logs of every epoch, across a resume too. A fit resumed at epoch k starts
    the stream at batch k · steps_per_epoch, so it sees what an unbroken one would have."""
    callbacks = list(fitting.callbacks)
    epoch_log, first_epoch = None, 0
    if fitting.backup_dir is not None:
        first_epoch = resume.next_epoch(fitting.backup_dir)
        epoch_log, backup = resume.fit_callbacks(
            fitting.backup_dir, fitting.backup_interval_s, save_to=fitting.save_dir
        )
        callbacks = [*backup, *callbacks]
    distribute.agree(tf.distribute.get_strategy(), {"the epoch to resume from": first_epoch})
    distribute.support_strategy(model)
    history = model.fit(
        stream(first_epoch * steps_per_epoch),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        verbose=fitting.verbose,
        callbacks=callbacks,
        shuffle=False,
    )
    return epoch_log.history if epoch_log is not None else history.history


def _steps(config: RunConfig, ds: data.Dataset, epochs: int) -> int:
    """Optimizer steps for `epochs` passes over every training image."""
    return math.ceil(len(ds.x_train) / config.batch_size) * epochs


def labeled_subset(config: RunConfig, ds: data.Dataset) -> np.ndarray:
    """Indices of the training images whose labels the students see: `labels_per_class` of
    each class, or all of them when it is 0."""
    if config.labels_per_class == 0:
        return np.arange(len(ds.y_train), dtype=np.int64)
    return data.label_subset(ds.y_train, config.labels_per_class, seed=config.seed)


def train_teacher(config: RunConfig, ds: data.Dataset, fitting: Fitting = Fitting()) -> Trained:
    """The teacher learns from every label in the training split."""
    teacher = _classifier(
        config.teacher, config.teacher_kwargs, ds, "teacher", config.mixed_precision
    )
    steps = _steps(config, ds, config.teacher_epochs)
    _compile(teacher, config, config.teacher_learning_rate, steps)
    stream = _stream(config, (ds.x_train, ds.y_train))
    per_epoch = _steps(config, ds, 1)
    return Trained(teacher, _fit(teacher, stream, config.teacher_epochs, per_epoch, fitting))


def load_teacher(path: str | Path, ds: data.Dataset) -> tuple[keras.Model, str | None]:
    """The trained teacher in `.keras` file `path`, checked against `ds`, and a warning when it
    does not start by rescaling raw pixels as tfdistill's models do (else None)."""
    try:
        teacher = keras.models.load_model(path)
    except Exception as error:
        raise ValueError(f"teacher_weights {str(path)!r} does not load: {error}") from None
    if len(getattr(teacher, "inputs", None) or []) != 1:
        raise ValueError(f"teacher_weights {str(path)!r} is not a model with one image input.")
    takes = tuple(teacher.inputs[0].shape[1:])
    gives = teacher.outputs[0].shape[-1]
    if takes != ds.input_shape or gives != ds.num_classes:
        raise ValueError(
            f"teacher_weights {str(path)!r} maps {takes} images to {gives} classes, but "
            f"--dataset={ds.name} has {ds.input_shape} images of {ds.num_classes} classes."
        )
    layers = [layer for layer in teacher.layers if not isinstance(layer, keras.layers.InputLayer)]
    warning = None
    if not (layers and isinstance(layers[0], keras.layers.Rescaling)):
        warning = (
            f"teacher_weights {str(path)!r} does not start with a Rescaling layer; tfdistill "
            f"feeds it raw pixels in [0, {ds.pixel_max:g}]"
        )
    return teacher, warning


def train_scratch(
    config: RunConfig,
    ds: data.Dataset,
    labeled: np.ndarray,
    init: list[np.ndarray],
    fitting: Fitting = Fitting(),
) -> Trained:
    """The student alone, on the labeled images, for as many steps as the distilled one takes."""
    student = _classifier(
        config.student, config.student_kwargs, ds, "student_scratch", config.mixed_precision
    )
    student.set_weights(init)
    per_epoch = _steps(config, ds, 1)
    steps = per_epoch * config.student_epochs
    _compile(student, config, config.student_learning_rate, steps)
    stream = _stream(config, (ds.x_train[labeled], ds.y_train[labeled]))
    return Trained(student, _fit(student, stream, config.student_epochs, per_epoch, fitting))


def distillation_elements(
    config: RunConfig, ds: data.Dataset, teacher: keras.Model | None, labeled: np.ndarray
) -> tuple[Any, np.ndarray]:
    """(inputs, labels) of every training image, labels -1 except where `labeled`. The inputs
    hold the teacher's cached logits, {"inputs": x, "teacher_logits": t}, unless images are
    augmented or `teacher` is None; then they are the images, for a teacher that runs online
    on each augmented batch."""
    labels = data.mask_labels(ds.y_train, labeled)
    if teacher is None or augments(config):
        return ds.x_train, labels
    logits = data.teacher_logits(ds.x_train, teacher, batch_size=config.batch_size)
    return {"inputs": ds.x_train, "teacher_logits": logits}, labels


def attention_of(config: RunConfig) -> AttentionTransfer | GradientAttentionTransfer | None:
    """The attention term of `config.method`: AT for "at" and "kd+at", GAT for "gat"
    (`config.beta`, or the method's default β), none for "kd"."""
    beta = {} if config.beta is None else {"beta": config.beta}
    if config.method in ("at", "kd+at"):
        return AttentionTransfer(**beta)
    if config.method == "gat":
        return GradientAttentionTransfer(**beta)
    return None


def distil(
    config: RunConfig,
    ds: data.Dataset,
    teacher: keras.Model,
    elements: tuple,
    init: list[np.ndarray],
    fitting: Fitting = Fitting(),
) -> Trained:
    """The student on every training image: soft targets everywhere, labels where it has them.

    `config.method`: "kd" (Hinton et al.), "at" (labels + attention transfer, alpha 1),
    "kd+at", or "gat" (labels + gradient attention transfer). `elements`: the
    `distillation_elements`; the attention methods need the teacher's features every step, so
    they take the images without cached logits.
    """
    student = _classifier(
        config.student, config.student_kwargs, ds, "student_distilled", config.mixed_precision
    )
    student.set_weights(init)
    attention = attention_of(config)
    inputs, labels = elements
    if attention is not None and isinstance(inputs, dict):
        elements = (inputs["inputs"], labels)
    distiller = Distiller(student, teacher, attention=attention)
    steps = _steps(config, ds, config.student_epochs)
    distiller.compile(
        optimizer=_adam(config.student_learning_rate, steps, config.lr_schedule),
        metrics=["accuracy"],
        alpha=config.alpha if "kd" in config.method else 1.0,
        temperature=config.temperature,
        jit_compile=_jit_compile(config, distiller),
    )
    per_epoch = _steps(config, ds, 1)
    stream = _stream(config, elements)
    return Trained(student, _fit(distiller, stream, config.student_epochs, per_epoch, fitting))


def prune(
    config: RunConfig,
    ds: data.Dataset,
    distilled: keras.Model,
    train: tf.data.Dataset,
    teacher: keras.Model | None = None,
    callbacks: list | None = None,
) -> keras.Model:
    """The distilled student pruned to `config.prune` sparsity, still distilling (from cached
    teacher logits in `train`, or from `teacher` online): sparsity rises over all but the last
    epoch (about ten mask updates), and the last epoch recovers at the target."""
    per_epoch = math.ceil(len(ds.x_train) / config.batch_size)
    horizon = per_epoch * max(config.compress_epochs - 1, 1)
    return compress.prune(
        distilled,
        train,
        teacher=teacher,
        target_sparsity=config.prune,
        epochs=config.compress_epochs,
        frequency=max(horizon // 10, 1),
        alpha=config.alpha,
        temperature=config.temperature,
        seed=config.seed,
        verbose=0 if config.quiet else 2,
        callbacks=callbacks,
    )


def quantize_aware(
    config: RunConfig,
    student: keras.Model,
    train: tf.data.Dataset,
    teacher: keras.Model | None = None,
    callbacks: list | None = None,
) -> Any:
    """Quantization-aware fine-tuning of `student` with distillation; keeps a pruned student's
    zeros."""
    return compress.quantize_aware(
        student,
        train,
        teacher=teacher,
        epochs=config.compress_epochs,
        alpha=config.alpha,
        temperature=config.temperature,
        preserve_sparsity=config.prune is not None,
        seed=config.seed,
        verbose=0 if config.quiet else 2,
        callbacks=callbacks,
    )


CALIBRATION_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Export:
    """One model to export: files `<name>_<mode>.tflite`, one per quantization mode."""

    name: str
    model: Any
    quantizations: tuple[str, ...]
    sparse: bool = False


def export(config: RunConfig, ds: data.Dataset, plan: list[Export], out: Path) -> list[dict]:
    """Every planned model in each of its modes, evaluated on the test split in LiteRT against
    its own Keras model. Sparse float files store pruned kernels in TFLite's sparse format; int8
    ones stay dense, since XNNPACK cannot run sparse int8 FULLY_CONNECTED (their zeros show in
    the gzipped size)."""
    rows = []
    for item in plan:
        function = inference_function(item.model)
        for quantization in item.quantizations:
            suffix = "fp32" if quantization == "none" else quantization
            sparse = item.sparse and quantization in ("none", "float16")
            path = to_tflite(
                function,
                out / f"{item.name}_{suffix}.tflite",
                quantization=quantization,
                representative_data=ds.x_train,
                num_calibration_samples=min(len(ds.x_train), CALIBRATION_SAMPLES),
                sparsity=sparse,
            )
            checked = evaluate_tflite(path, ds.x_test, ds.y_test, reference=item.model)
            size = file_size(path)
            rows.append(
                {
                    "file": path.name,
                    "model": item.name,
                    "quantization": quantization,
                    "sparse_format": sparse,
                    "size_bytes": size.raw_bytes,
                    "gzip_bytes": size.gzip_bytes,
                    "accuracy": checked.accuracy,
                    "agreement": checked.agreement,
                    "max_abs_error": checked.max_abs_error,
                }
            )
    return rows


def bench(config: RunConfig, files: list[Path]) -> dict:
    """LiteRT timings of every `.tflite` file, and with `config.android` `benchmark_model`'s on
    the phone: {"litert": {file name: BenchmarkResult dict}, "android": {...} or None, ...}.
    Latencies in microseconds."""
    litert, android = {}, {}
    for path in files:
        timing = bench_lib.benchmark_tflite(
            path, num_threads=config.threads, num_runs=config.bench_runs
        )
        litert[path.name] = timing.to_dict()
        if config.android:
            on_phone = bench_lib.android.benchmark(
                path,
                benchmark_binary=config.benchmark_binary,
                adb=config.adb,
                serial=config.serial,
                num_threads=config.threads or 1,
                use_gpu=config.use_gpu,
                use_nnapi=config.use_nnapi,
                num_runs=config.bench_runs,
                taskset=config.taskset,
            )
            android[path.name] = on_phone.to_dict()
    return {
        "threads": config.threads or 1,
        "num_runs": config.bench_runs,
        "litert": litert,
        "android": android or None,
    }


def with_latency(rows: list[dict], timings: dict) -> list[dict]:
    """The export `rows` with each file's latencies from `bench` (µs): LiteRT mean and median,
    and the phone's mean with --android."""
    merged = []
    for row in rows:
        litert = timings["litert"][row["file"]]
        row = {
            **row,
            "latency_us": litert["avg_us"],
            "latency_p50_us": litert["p50_us"],
            "threads": litert["num_threads"],
        }
        if timings.get("android"):
            row["android_latency_us"] = timings["android"][row["file"]]["avg_us"]
        merged.append(row)
    return merged


def stage_names(config: RunConfig) -> list[str]:
    """The stages `run` goes through for `config`, in order."""
    compress_stages = [
        name for name, on in (("prune", config.prune is not None), ("qat", config.qat)) if on
    ]
    return ["data", "teacher", "scratch", "distil", *compress_stages, "export", "bench", "report"]


def _stage_work(config: RunConfig, ds: data.Dataset) -> dict[str, int]:
    """The stages of this run with their training steps (for the time estimate)."""
    epochs = {
        "teacher": 0 if config.teacher_weights else config.teacher_epochs,
        "scratch": config.student_epochs,
        "distil": config.student_epochs,
        "prune": config.compress_epochs,
        "qat": config.compress_epochs,
    }
    return {name: _steps(config, ds, epochs.get(name, 0)) for name in stage_names(config)}


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def run(
    config: RunConfig,
    log: Callable[[str], None] = print,
    *,
    callbacks: tuple = (),
    strategy: tf.distribute.Strategy | None = None,
    backup_interval_s: float = 10.0,
) -> dict:
    """Runs every stage; writes the models, `.tflite` files, bench.json, report.json,
    report.md and plots to `config.out`; returns the report.

    A folder holding an earlier run of the same config (`run.json`) gives back its finished
    stages instead of re-running them, and a training stage cut short resumes from its last
    backed-up epoch; a folder of another config or other data is a ValueError. `callbacks`
    join every Keras 3 `fit` (teacher, scratch, distil); `strategy` (default:
    `config.strategy`) holds the models of those stages; they back up at the end of an epoch
    at most every `backup_interval_s`.

    Under a multi-worker strategy every worker calls `run` with the same config and `out` (a
    folder they all reach). The chief alone writes there; the others read its ledger and
    backups, train with it, back up to a temporary folder of their own (all workers back up
    every epoch: saving takes part in their collective ops), and return {"worker": name}
    after the distil stage, leaving the rest to the chief.

    `config.mixed_precision` "float16" or "bfloat16": the teacher, scratch and distilled
    students are built under "mixed_float16" or "mixed_bfloat16"; the TFMOT stages, the
    export and the report take float32 copies of them with the same weights. The global dtype
    policy is left as it was.
    """
    strategy = strategy or strategy_of(config.strategy)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    chief = distribute.is_chief(strategy)
    settings = {k: v for k, v in _settings(config).items() if k != "quiet"}
    digits = int(resume.fingerprint(settings)[:6], 16)
    distribute.agree(strategy, {"the settings (the first digits of their digest)": digits})
    out = Path(config.out)
    ledger = resume.Ledger(out, fingerprinted(config), writable=chief)
    keep = out if chief else Path(tempfile.mkdtemp(prefix="tfdistill-worker-"))
    try:
        return _run(config, log, callbacks, strategy, backup_interval_s, ledger, keep)
    finally:
        if not chief:
            shutil.rmtree(keep, ignore_errors=True)


def _run(
    config: RunConfig,
    log: Callable[[str], None],
    callbacks: tuple,
    strategy: tf.distribute.Strategy,
    backup_interval_s: float,
    ledger: resume.Ledger,
    keep: Path,
) -> dict:
    """`run` with its `ledger` open; files go to `keep` (`config.out` on the chief, a
    temporary folder on the other workers)."""
    keras.utils.set_random_seed(config.seed)
    out = Path(config.out)
    chief = ledger.writable
    progress = Progress(
        dict.fromkeys(stage_names(config), 0),
        kinds={"scratch": "student", "distil": "student", "prune": "tfmot", "qat": "tfmot"},
        quiet=config.quiet,
        log=log,
    )
    timings: dict[str, float] = {}
    loaded: list[str] = []
    fresh = False

    stale: set[str] = set()

    def fitting(name: str) -> Fitting:
        """The chief backs up in `ledger.backup_dir`; the other workers restore from there
        (unless the chief is dropping it as stale) and save in `keep`, every epoch, as it does
        in a multi-worker run."""
        folder = ledger.backup_dir(name)
        save_dir = None if chief else keep / resume.BACKUPS / name
        if not chief and name in stale:
            folder = save_dir
        interval = 0.0 if distribute.is_multi_worker(strategy) else backup_interval_s
        return Fitting(progress.fit_verbose, tuple(callbacks), folder, interval, save_dir)

    def stage(
        name: str,
        detail: str,
        work: Callable[[], tuple[Any, dict]],
        reload: Callable[[dict], Any],
        files: Callable[[dict], list[str]] = lambda record: [],
        settings: dict | None = None,
    ) -> tuple[Any, dict]:
        """Runs `work` (-> value, record), or gives `reload(record)` when this config finished
        the stage before with the same stage `settings`, its files are there and no earlier
        stage ran again."""
        nonlocal fresh
        record = ledger.record(name)
        progress.start(name, detail)
        reusable = (
            record is not None
            and not fresh
            and record.get("settings") == settings
            and all((out / f).exists() for f in files(record))
        )
        if name in DISTRIBUTED_STAGES:
            distribute.agree(strategy, {f"whether stage {name} is done": int(reusable)})
        if reusable:
            value = reload(record)
            progress.finish(name, skipped=True)
            loaded.append(name)
            timings[name] = record["seconds"]
            return value, record
        ledger.start(name, list(progress.work), keep_backup=not fresh)
        if fresh:
            stale.add(name)
        fresh = True
        resumed = ledger.resumable(name)
        if resumed:
            progress.log(f"   {name}: resuming from its last backed-up epoch")
        keras.utils.set_random_seed(config.seed + list(progress.work).index(name))
        value, record = work()
        seconds = round(progress.finish(name, paced=not resumed), 2)
        record = {**record, "settings": settings, "seconds": seconds}
        ledger.finish(name, record)
        timings[name] = record["seconds"]
        return value, record

    def load(file: str) -> Callable[[dict], keras.Model]:
        def reload(record: dict) -> keras.Model:
            with strategy.scope():
                return keras.models.load_model(out / file)

        return reload

    progress.start("data", config.dataset)
    ds = data.load(config.dataset, data_dir=config.data_dir).raw_pixels()
    digest = data_digest(ds)
    distribute.agree(strategy, {"the data (the first digits of its digest)": int(digest[:6], 16)})
    earlier = ledger.record("data")
    if earlier is not None and earlier["digest"] != digest:
        raise ValueError(
            f"--dataset={config.dataset} holds other images or labels than when the run in "
            f"--out {str(out)!r} began; pass a new --out, or delete {str(out)!r} to start over."
        )
    progress.work = _stage_work(config, ds)
    timings["data"] = round(progress.finish("data"), 2)
    if earlier is None:
        ledger.finish("data", {"digest": digest, "seconds": timings["data"]})
    if ds.skipped:
        progress.log(f"   data: skipped {ds.skipped} file(s) that did not decode as images")
    labeled = labeled_subset(config, ds)

    def teacher_work() -> tuple[keras.Model, dict]:
        with strategy.scope():
            if config.teacher_weights:
                teacher, warning = load_teacher(config.teacher_weights, ds)
                if warning:
                    progress.log(f"   teacher: {warning}")
                trained = Trained(teacher, {})
            else:
                trained = train_teacher(config, ds, fitting("teacher"))
        artifacts.save_model(trained.model, keep / "teacher.keras")
        return trained.model, {"history": trained.history}

    teacher, teacher_record = stage(
        "teacher",
        f"{config.teacher}, from {config.teacher_weights}"
        if config.teacher_weights
        else f"{config.teacher}, {_epochs(config.teacher_epochs)} on every label",
        teacher_work,
        load("teacher.keras"),
        lambda record: ["teacher.keras"],
    )
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        init = _classifier(config.student, config.student_kwargs, ds, "student").get_weights()

    def student_work(name: str, train_fn: Callable[[], Trained]) -> Callable:
        def work() -> tuple[keras.Model, dict]:
            with strategy.scope():
                trained = train_fn()
            artifacts.save_model(trained.model, keep / f"{name}.keras")
            return trained.model, {"history": trained.history}

        return work

    scratch, scratch_record = stage(
        "scratch",
        f"{config.student} on the {len(labeled)} labeled images",
        student_work(
            "student_scratch",
            lambda: train_scratch(config, ds, labeled, init, fitting("scratch")),
        ),
        load("student_scratch.keras"),
        lambda record: ["student_scratch.keras"],
    )
    cached: list[tuple] = []

    def elements() -> tuple:
        """The `distillation_elements`, made when a stage first trains on them (caching the
        teacher's logits takes a pass of the teacher over the training split). Always by the
        teacher as trained (16-bit under mixed precision), whichever stage comes first."""
        if not cached:
            cached.append(distillation_elements(config, ds, teacher, labeled))
        return cached[0]

    def train() -> tf.data.Dataset:
        return epoch_batches(config, elements())

    def distil_elements() -> tuple:
        """The attention methods need the teacher online: no pass over the data to cache its
        logits for them."""
        if attention_of(config) is None:
            return elements()
        return distillation_elements(config, ds, None, labeled)

    distilled, distil_record = stage(
        "distil",
        f"{config.method}, {_epochs(config.student_epochs)} on all {len(ds.x_train)} images",
        student_work(
            "student_distilled",
            lambda: distil(config, ds, teacher, distil_elements(), init, fitting("distil")),
        ),
        load("student_distilled.keras"),
        lambda record: ["student_distilled.keras"],
    )
    if not chief:
        return {"worker": distribute.worker_name(strategy)}
    teacher32, scratch, distilled = (
        precision.float32_copy(model) for model in (teacher, scratch, distilled)
    )
    online_teacher = teacher32 if augments(config) else None
    plan = [Export("student_distilled", distilled, config.quantize)]
    students: dict[str, tuple[keras.Model, dict]] = {}
    base = distilled
    if config.prune is not None:

        def prune_work() -> tuple[keras.Model, dict]:
            backup = _tf_keras_backup(ledger.backup_dir("prune"))
            pruned = prune(config, ds, distilled, train(), online_teacher, backup)
            artifacts.save_model(pruned, out / "student_pruned.keras")
            return pruned, {}

        base, _ = stage(
            "prune",
            f"to {config.prune:.0%} sparsity, {_epochs(config.compress_epochs)}",
            prune_work,
            lambda record: keras.models.load_model(out / "student_pruned.keras"),
            lambda record: ["student_pruned.keras"],
        )
        plan.append(Export("student_pruned", base, ("none", "int8"), sparse=True))
        students["pruned"] = (base, {"sparsity": compress.overall_sparsity(base)})
    if config.qat:
        weights = out / "student_qat.weights.h5"

        def qat_work() -> tuple[Any, dict]:
            backup = _tf_keras_backup(ledger.backup_dir("qat"))
            model = quantize_aware(config, base, train(), online_teacher, backup)
            artifacts.save_weights(model, weights)
            return model, {}

        def qat_reload(record: dict) -> Any:
            model = compress.quantize_model(base, preserve_sparsity=config.prune is not None)
            model.load_weights(weights)
            return model

        qat, _ = stage(
            "qat",
            f"quantization-aware, {_epochs(config.compress_epochs)}",
            qat_work,
            qat_reload,
            lambda record: [weights.name],
        )
        plan.append(Export("student_qat", qat, ("int8",)))
    plan.append(Export("teacher", teacher32, ("none",)))

    def export_work() -> tuple[list[dict], dict]:
        exported = export(config, ds, plan, out)
        return exported, {"rows": exported}

    rows, _ = stage(
        "export",
        f"{sum(len(item.quantizations) for item in plan)} .tflite files",
        export_work,
        lambda record: record["rows"],
        lambda record: [row["file"] for row in record["rows"]],
        _settings(config, EXPORT_SETTINGS),
    )

    def bench_work() -> tuple[dict, dict]:
        measured = bench(config, [out / row["file"] for row in rows])
        artifacts.write_atomic(out / "bench.json", lambda f: json.dump(measured, f, indent=2))
        return measured, {"bench": measured}

    where = " and on the phone" if config.android else ""
    latency, _ = stage(
        "bench",
        f"{config.bench_runs} runs of each file in LiteRT{where}",
        bench_work,
        lambda record: record["bench"],
        lambda record: ["bench.json"],
        _settings(config, BENCH_SETTINGS),
    )
    timings["total"] = round(sum(timings.values()), 2)
    entry = {"model": config.student, "labels": len(labeled)}
    result = {
        "dataset": {
            "name": ds.name,
            "train": len(ds.x_train),
            "test": len(ds.x_test),
            "num_classes": ds.num_classes,
            "input_shape": list(ds.input_shape),
            "pixel_max": ds.pixel_max,
            "augmented": augments(config),
            "labels_per_class": config.labels_per_class,
            "labeled": len(labeled),
            "skipped_files": ds.skipped,
        },
        "teacher": _entry(teacher32, ds, config, model=config.teacher, file="teacher.keras"),
        "students": {
            "scratch": _entry(scratch, ds, config, **entry, file="student_scratch.keras"),
            "distilled": _entry(
                distilled,
                ds,
                config,
                **entry,
                alpha=config.alpha,
                temperature=config.temperature,
                file="student_distilled.keras",
            ),
            **{
                name: _entry(
                    model, ds, config, model=config.student, file=f"student_{name}.keras", **extra
                )
                for name, (model, extra) in students.items()
            },
        },
        "tflite": with_latency(rows, latency),
        "config": _settings(config),
        "timings_s": timings,
        "loaded_stages": loaded,
        "history": {
            "teacher": teacher_record["history"],
            "student (scratch)": scratch_record["history"],
            "student (distilled)": distil_record["history"],
        },
    }
    progress.start("report", "report.md, report.json and plots")
    write_reports(result, out)
    progress.finish("report")
    return result


def _tf_keras_backup(folder: Path) -> list:
    """tf_keras's epoch backup for the TFMOT stages, which fit tf_keras models; a backup that
    does not load is a ValueError that says to delete it."""
    import tf_keras

    class Backup(tf_keras.callbacks.BackupAndRestore):
        def on_train_begin(self, logs: dict | None = None) -> None:
            try:
                super().on_train_begin(logs)
            except Exception as error:
                raise ValueError(resume.backup_error(folder, error)) from None

    folder.mkdir(parents=True, exist_ok=True)
    return [Backup(str(folder), delete_checkpoint=False)]


PLOTS = {
    "accuracy against latency": "accuracy_latency.png",
    "file sizes": "sizes.png",
    "training loss": "training_curves.png",
}


def write_reports(result: dict, out: Path) -> None:
    """report.json, report.md and the plots it shows."""
    plots.accuracy_latency(result["tflite"], out / PLOTS["accuracy against latency"])
    plots.sizes(result["tflite"], out / PLOTS["file sizes"])
    plots.training_curves(result["history"], out / PLOTS["training loss"])
    report.write_markdown(result, out / "report.md", PLOTS)
    report.write_json(result, out / "report.json")
