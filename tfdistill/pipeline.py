"""The stages of `tfdistill run`: data -> teacher -> students (scratch, distilled) -> report.

The default setting is the one where soft targets pay off (Hinton et al. 2015, section 3): the
student sees labels for only a few images per class, while it distils on every training image.
The scratch student trains on the labeled images alone for the same number of steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdistill import artifacts, compress, data, models, plots, report
from tfdistill.attention import AttentionTransfer, GradientAttentionTransfer
from tfdistill.bench import benchmark_tflite
from tfdistill.distiller import Distiller, check_alpha
from tfdistill.export import (
    QUANTIZATIONS,
    evaluate_tflite,
    file_size,
    inference_function,
    to_tflite,
)
from tfdistill.losses import check_temperature
from tfdistill.profile import profile, weight_bytes

METHODS = ("kd", "at", "kd+at", "gat")


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

    def __post_init__(self) -> None:
        for name in ("labels_per_class", "teacher_epochs", "student_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
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
    names (the `tfdistill run` flag names) to values. Unknown keys and values of the wrong type
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
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"config file keys {unknown} are unknown; valid keys: {sorted(fields)}.")
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


_NULLABLE = (("float", float), ("int", int), ("str", str))


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


def _classifier(name: str, kwargs: dict, ds: data.Dataset, role: str) -> keras.Model:
    return models.get(
        name, num_classes=ds.num_classes, input_shape=ds.input_shape, name=role, **kwargs
    )


def _adam(learning_rate: float, steps: int) -> keras.optimizers.Optimizer:
    """Adam with cosine decay to zero: the weights settle at the end, so BatchNorm's moving
    statistics catch up with them (with a constant 1e-2, test accuracy swung by 40 points
    between the last epochs of a run)."""
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps))


def _compile(model: keras.Model, learning_rate: float, steps: int) -> None:
    model.compile(
        optimizer=_adam(learning_rate, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
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


def train_teacher(config: RunConfig, ds: data.Dataset) -> keras.Model:
    """The teacher learns from every label in the training split."""
    teacher = _classifier(config.teacher, config.teacher_kwargs, ds, "teacher")
    steps = _steps(config, ds, config.teacher_epochs)
    _compile(teacher, config.teacher_learning_rate, steps)
    train = ds.as_tf_dataset("train", config.batch_size, shuffle=True, seed=config.seed)
    teacher.fit(train, epochs=config.teacher_epochs, verbose=0, shuffle=False)
    return teacher


def _steps(config: RunConfig, ds: data.Dataset, epochs: int) -> int:
    """Optimizer steps for `epochs` passes over every training image."""
    return math.ceil(len(ds.x_train) / config.batch_size) * epochs


def train_scratch(
    config: RunConfig, ds: data.Dataset, labeled: np.ndarray, init: list[np.ndarray]
) -> keras.Model:
    """The student alone, on the labeled images, for as many steps as the distilled one takes."""
    student = _classifier(config.student, config.student_kwargs, ds, "student_scratch")
    student.set_weights(init)
    steps = _steps(config, ds, config.student_epochs)
    _compile(student, config.student_learning_rate, steps)
    x, y = ds.x_train[labeled], ds.y_train[labeled]
    train = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(config.batch_size)
    )
    student.fit(train, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return student


def distillation_data(
    config: RunConfig, ds: data.Dataset, teacher: keras.Model, labeled: np.ndarray
) -> tf.data.Dataset:
    """Every training image with the teacher's cached logits; labels only where `labeled`."""
    partly_labeled = dataclasses.replace(ds, y_train=data.mask_labels(ds.y_train, labeled))
    return data.cache_teacher_outputs(
        partly_labeled.as_tf_dataset("train", config.batch_size),
        teacher,
        shuffle=True,
        seed=config.seed,
    )


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
    train: tf.data.Dataset,
    init: list[np.ndarray],
    labeled: np.ndarray | None = None,
) -> keras.Model:
    """The student on every training image: soft targets everywhere, labels where it has them.

    `config.method`: "kd" (Hinton et al.), "at" (labels + attention transfer, alpha 1),
    "kd+at", or "gat" (labels + gradient attention transfer). The attention methods need the
    teacher's features every step, so they train on the uncached images (`labeled` marks the
    labels they see); "kd" trains on `train`, the cached teacher logits.
    """
    student = _classifier(config.student, config.student_kwargs, ds, "student_distilled")
    student.set_weights(init)
    attention = attention_of(config)
    if attention is not None:
        keep = labeled if labeled is not None else np.arange(len(ds.y_train))
        partly_labeled = dataclasses.replace(ds, y_train=data.mask_labels(ds.y_train, keep))
        train = partly_labeled.as_tf_dataset(
            "train", config.batch_size, shuffle=True, seed=config.seed
        )
    distiller = Distiller(student, teacher, attention=attention)
    distiller.compile(
        optimizer=_adam(config.student_learning_rate, _steps(config, ds, config.student_epochs)),
        metrics=["accuracy"],
        alpha=config.alpha if "kd" in config.method else 1.0,
        temperature=config.temperature,
    )
    history = distiller.fit(train, epochs=config.student_epochs, verbose=0, shuffle=False)
    object.__setattr__(student, "distillation_history", history.history)
    return student


def prune(
    config: RunConfig, ds: data.Dataset, distilled: keras.Model, train: tf.data.Dataset
) -> keras.Model:
    """The distilled student pruned to `config.prune` sparsity, still distilling from the cached
    teacher logits: sparsity rises over all but the last epoch (about ten mask updates), and
    the last epoch recovers at the target."""
    per_epoch = math.ceil(len(ds.x_train) / config.batch_size)
    horizon = per_epoch * max(config.compress_epochs - 1, 1)
    return compress.prune(
        distilled,
        train,
        target_sparsity=config.prune,
        epochs=config.compress_epochs,
        frequency=max(horizon // 10, 1),
        alpha=config.alpha,
        temperature=config.temperature,
        seed=config.seed,
    )


def quantize_aware(config: RunConfig, student: keras.Model, train: tf.data.Dataset) -> Any:
    """Quantization-aware fine-tuning of `student` with distillation; keeps a pruned student's
    zeros."""
    return compress.quantize_aware(
        student,
        train,
        epochs=config.compress_epochs,
        alpha=config.alpha,
        temperature=config.temperature,
        preserve_sparsity=config.prune is not None,
        seed=config.seed,
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
    """Every planned model in each of its modes, evaluated on the test split against its own
    Keras model and timed in LiteRT. Sparse float files store pruned kernels in TFLite's sparse
    format; int8 ones stay dense, since XNNPACK cannot run sparse int8 FULLY_CONNECTED (their
    zeros show in the gzipped size)."""
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
            timing = benchmark_tflite(path, num_threads=config.threads, num_runs=config.bench_runs)
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
                    "latency_us": timing.avg_us,
                    "latency_p50_us": timing.p50_us,
                    "threads": timing.num_threads,
                }
            )
    return rows


def _config_json(config: RunConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def run(config: RunConfig, log: Callable[[str], None] = print) -> dict:
    """Runs every stage; writes the models and report.json to `config.out`; returns the report."""
    keras.utils.set_random_seed(config.seed)
    out = Path(config.out)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        log(f"[{name}] ...")
        result = fn()
        timings[name] = round(time.perf_counter() - began, 2)
        log(f"[{name}] done in {timings[name]:.1f} s")
        return result

    ds = stage("data", lambda: data.load(config.dataset, data_dir=config.data_dir))
    if ds.skipped:
        log(f"[data] skipped {ds.skipped} file(s) that did not decode as images")
    labeled = data.label_subset(ds.y_train, config.labels_per_class, seed=config.seed)
    teacher = stage("teacher", lambda: train_teacher(config, ds))
    artifacts.save_model(teacher, out / "teacher.keras")
    init = _classifier(config.student, config.student_kwargs, ds, "student").get_weights()
    scratch = stage("scratch", lambda: train_scratch(config, ds, labeled, init))
    train = distillation_data(config, ds, teacher, labeled)
    distilled = stage("distil", lambda: distil(config, ds, teacher, train, init, labeled))
    saved = {"student_scratch": scratch, "student_distilled": distilled}
    plan = [Export("student_distilled", distilled, config.quantize)]
    students = {}
    if config.prune is not None:
        pruned = stage("prune", lambda: prune(config, ds, distilled, train))
        saved["student_pruned"] = pruned
        plan.append(Export("student_pruned", pruned, ("none", "int8"), sparse=True))
        students["pruned"] = {"sparsity": compress.overall_sparsity(pruned)}
    if config.qat:
        base = saved.get("student_pruned", distilled)
        qat = stage("qat", lambda: quantize_aware(config, base, train))
        plan.append(Export("student_qat", qat, ("int8",)))
    for name, model in saved.items():
        artifacts.save_model(model, out / f"{name}.keras")
    plan.append(Export("teacher", teacher, ("none",)))
    tflite = stage("export", lambda: export(config, ds, plan, out))
    timings["total"] = round(time.perf_counter() - start, 2)
    result = {
        "dataset": {
            "name": ds.name,
            "train": len(ds.x_train),
            "test": len(ds.x_test),
            "num_classes": ds.num_classes,
            "input_shape": list(ds.input_shape),
            "labels_per_class": config.labels_per_class,
            "labeled": len(labeled),
            "skipped_files": ds.skipped,
        },
        "teacher": _entry(teacher, ds, config, model=config.teacher, file="teacher.keras"),
        "students": {
            "scratch": _entry(
                scratch,
                ds,
                config,
                model=config.student,
                labels=len(labeled),
                file="student_scratch.keras",
            ),
            "distilled": _entry(
                distilled,
                ds,
                config,
                model=config.student,
                labels=len(labeled),
                alpha=config.alpha,
                temperature=config.temperature,
                file="student_distilled.keras",
            ),
            **{
                name: _entry(
                    saved[f"student_{name}"],
                    ds,
                    config,
                    model=config.student,
                    file=f"student_{name}.keras",
                    **extra,
                )
                for name, extra in students.items()
            },
        },
        "tflite": tflite,
        "config": _config_json(config),
        "timings_s": timings,
    }
    histories = {
        "teacher": teacher.history.history,
        "student (scratch)": scratch.history.history,
        "student (distilled)": distilled.distillation_history,
    }
    result["history"] = histories
    stage("report", lambda: write_reports(result, out))
    return result


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
