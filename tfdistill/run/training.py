"""The model, optimizer and fit helpers of `tfdistill run`'s training stages.

The default setting is the one where soft targets pay off (Hinton et al. 2015, section 3): the
student sees labels for only a few images per class, while it distils on every training image.
The scratch student trains on the labeled images alone for the same number of steps.

Models take raw pixels (0..255, or 0..16 for digits): each starts with a `Rescaling` layer,
so the `.tflite` files do too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import uuid
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdistill import artifacts, compress, data, distribute, ensemble, models, precision, resume
from tfdistill.attention import AttentionTransfer, GradientAttentionTransfer
from tfdistill.batches import INPUTS, TEACHER_LOGITS
from tfdistill.distiller import Distiller, resolve_jit_compile
from tfdistill.errors import brief
from tfdistill.hints import FeatureHint, FeatureMethod
from tfdistill.losses import DIST, DecoupledKD, SoftTargetLoss
from tfdistill.profile import profile, weight_bytes
from tfdistill.resolution import static_image_size
from tfdistill.run.config import LABELS_ONLY, SCHEDULES, RunConfig
from tfdistill.run.feed import Stream, augments, epoch_batches, sizes_of, stream_of

__all__ = ["augments", "epoch_batches"]
LOGITS_IN_MEMORY = 256 * 2**20


def classifier(
    name: str,
    kwargs: dict,
    ds: data.Dataset,
    role: str,
    mixed_precision: str = "none",
    size: tuple[int, int] | None = None,
) -> keras.Model:
    """Zoo model `name` for `ds` (raw pixels, see `Dataset.raw_pixels`): its first layer
    scales them to [0, 1] ("keras.applications.NAME": `models.applications.build`). Its
    BatchNormalization layers are synchronized: under a strategy
    of several replicas they take the statistics of the global batch, and on one device they
    compute them the same way (E[x²] - E[x]²). Built under the dtype policy of
    `mixed_precision` (see `precision.MIXED_PRECISION`); the global policy is left as it was.
    `size`: the (H, W) it takes, by default the dataset's (the student's)."""
    shape = (*(size or ds.input_shape[:2]), ds.input_shape[-1])
    with precision.dtype_policy(precision.policy_name(mixed_precision)):
        if models.applications.is_application(name):  # its BatchNorm stays in inference mode
            return models.applications.build(
                name, ds.num_classes, shape, ds.pixel_max, role, **kwargs
            )
        model = models.get(name, num_classes=ds.num_classes, input_shape=shape, name=role, **kwargs)
        model = models.with_preprocessing(model, 1.0 / ds.pixel_max)
    return distribute.synchronize_batch_norm(model)


def lr_schedule(learning_rate: float, steps: int, kind: str) -> Any:
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


def adam(learning_rate: float, steps: int, schedule: str = "cosine") -> keras.optimizers.Optimizer:
    """Adam, by default with cosine decay to zero: the weights settle at the end, so
    BatchNorm's moving statistics catch up with them."""
    return keras.optimizers.Adam(lr_schedule(learning_rate, steps, schedule))


def use_xla(config: RunConfig, model: keras.Model) -> bool:
    """`config.xla` "on" or "off"; "auto": where a GPU is present, as the Distiller decides
    (`resolve_jit_compile`), and off on CPU-only machines, where the embedded data's runs of a
    few hundred steps do not repay the compilation (measured: docs/distiller.md, XLA)."""
    if config.xla == "auto":
        return bool(tf.config.list_physical_devices("GPU")) and resolve_jit_compile(model)
    return config.xla == "on"


def compile_classifier(
    model: keras.Model, config: RunConfig, learning_rate: float, steps: int
) -> None:
    """Adam on the cross-entropy; XLA per `use_xla`."""
    model.compile(
        optimizer=adam(learning_rate, steps, config.lr_schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=use_xla(config, model),
    )


def accuracy(model: keras.Model, ds: data.Dataset, batch_size: int) -> float:
    """The share of test images `model` classifies right, each seen at its input size."""
    correct = 0
    images = ds.inputs("test", static_image_size(model))
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size], training=False)
        correct += int(np.sum(np.argmax(logits, axis=-1) == ds.y_test[start : start + batch_size]))
    return correct / len(ds.x_test)


def entry(trained: keras.Model, ds: data.Dataset, config: RunConfig, **extra: Any) -> dict:
    cost = profile(trained)
    return {
        "accuracy": accuracy(trained, ds, config.batch_size),
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


def tensorboard(folder: Path) -> keras.callbacks.Callback:
    """Keras's TensorBoard callback for one stage: each epoch's logs (the loss, the Distiller's
    terms, accuracy) and the optimizer's learning rate, without the graph."""
    return keras.callbacks.TensorBoard(log_dir=str(folder), write_graph=False)


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model and its history: {metric: [value per epoch]}."""

    model: keras.Model
    history: dict[str, list[float]]


def fit(
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


def steps_of(config: RunConfig, ds: data.Dataset, epochs: int) -> int:
    """Optimizer steps for `epochs` passes over every training image."""
    return math.ceil(len(ds.x_train) / config.batch_size) * epochs


def labeled_subset(config: RunConfig, ds: data.Dataset) -> np.ndarray:
    """Indices of the training images whose labels the students see: `labels_per_class` of
    each class, or all of them when it is 0."""
    if config.labels_per_class == 0:
        return np.arange(len(ds.y_train), dtype=np.int64)
    return data.label_subset(ds.y_train, config.labels_per_class, seed=config.seed)


def train_teacher(
    config: RunConfig, ds: data.Dataset, fitting: Fitting = Fitting(), size: Any = None
) -> Trained:
    """The teacher learns from every label in the training split, at `size` (H, W) (default:
    the student's); a keras.applications teacher by `fine_tune_teacher`."""
    if models.applications.is_application(config.teacher):
        return fine_tune_teacher(config, ds, fitting, size)
    sizes = sizes_of(ds, size, "teacher")
    teacher = classifier(
        config.teacher, config.teacher_kwargs, ds, "teacher", config.mixed_precision, sizes[0]
    )
    steps = steps_of(config, ds, config.teacher_epochs)
    compile_classifier(teacher, config, config.teacher_learning_rate, steps)
    stream = stream_of(config, ds, (ds.x_train, ds.y_train), sizes)
    per_epoch = steps_of(config, ds, 1)
    return Trained(teacher, fit(teacher, stream, config.teacher_epochs, per_epoch, fitting))


def head_epochs(epochs: int) -> int:
    """Of a fine-tuned teacher's `epochs`, those that train the head alone: about the first
    third, at least one (all of them when `epochs` is 1)."""
    return max(1, round(epochs / 3))


def phase(fitting: Fitting, name: str) -> Fitting:
    """`fitting` backing up in subfolder `name` of its folders: each fit of a stage of
    several fits keeps its own backup and epoch logs."""
    return dataclasses.replace(
        fitting,
        backup_dir=None if fitting.backup_dir is None else fitting.backup_dir / name,
        save_dir=None if fitting.save_dir is None else fitting.save_dir / name,
    )


def fine_tune_teacher(
    config: RunConfig, ds: data.Dataset, fitting: Fitting = Fitting(), size: Any = None
) -> Trained:
    """A keras.applications teacher fine-tuned on every label (Keras's transfer-learning
    recipe): the head alone for `head_epochs` at `teacher_learning_rate`, then every layer at
    a tenth of it, its BatchNorm frozen in inference mode throughout
    (`applications.unfreeze`).

    Two fits, each backed up in its own subfolder ("head", "all"): an interrupted fit resumes
    from its own backup, and once the second has backed up an epoch, a resume skips the first
    (the second's backup holds every weight). The second fit's stream starts where the first's
    ended, so a resumed teacher sees what an unbroken one would have."""
    sizes = sizes_of(ds, size, "teacher")
    teacher = classifier(
        config.teacher, config.teacher_kwargs, ds, "teacher", config.mixed_precision, sizes[0]
    )
    per_epoch = steps_of(config, ds, 1)
    first = head_epochs(config.teacher_epochs)
    rest = config.teacher_epochs - first
    stream = stream_of(config, ds, (ds.x_train, ds.y_train), sizes)
    head, every = phase(fitting, "head"), phase(fitting, "all")
    models.applications.freeze(teacher)
    compile_classifier(teacher, config, config.teacher_learning_rate, per_epoch * first)
    if rest and every.backup_dir is not None and resume.next_epoch(every.backup_dir) > 0:
        history = resume.EpochLog(head.backup_dir / "epochs.json").history
    else:
        history = fit(teacher, stream, first, per_epoch, head)
    if rest:
        models.applications.unfreeze(teacher)
        compile_classifier(teacher, config, config.teacher_learning_rate / 10, per_epoch * rest)
        offset = first * per_epoch
        later = fit(teacher, lambda skip: stream(skip + offset), rest, per_epoch, every)
        keys = dict.fromkeys([*history, *later])
        history = {key: history.get(key, []) + later.get(key, []) for key in keys}
    return Trained(teacher, history)


def load_teacher(
    path: str | Path, ds: data.Dataset, size: Any = None, unsafe: bool = False
) -> tuple[keras.Model, str | None]:
    """The trained teacher in `.keras` file `path` (in Keras safe mode unless `unsafe`),
    checked against `ds` at `size` (H, W) (default: the student's), and a warning when it does
    not start by rescaling raw pixels as tfdistill's models do (else None)."""
    try:
        teacher = artifacts.load_model(path, unsafe=unsafe, what="teacher_weights")
    except Exception as error:
        if "--unsafe_load" in str(error):
            raise
        raise ValueError(f"teacher_weights {str(path)!r} does not load: {brief(error)}") from None
    model_inputs = getattr(teacher, "inputs", None) or []
    if len(model_inputs) != 1:
        raise ValueError(f"teacher_weights {str(path)!r} is not a model with one image input.")
    takes = tuple(teacher.inputs[0].shape[1:])
    gives = teacher.outputs[0].shape[-1]
    wanted = (*sizes_of(ds, size, "teacher")[0], ds.input_shape[-1])
    if takes != wanted or gives != ds.num_classes:
        raise ValueError(
            f"teacher_weights {str(path)!r} maps {takes} images to {gives} classes, but "
            f"--dataset={ds.name} gives it {wanted} images of {ds.num_classes} classes "
            "(--teacher_image_size sets the teacher's H,W)."
        )
    layers = [layer for layer in teacher.layers if not isinstance(layer, keras.layers.InputLayer)]
    warning = None
    rescaling = (keras.layers.Rescaling, models.ImageNetPreprocessing)
    if not (layers and isinstance(layers[0], rescaling)):
        warning = (
            f"teacher_weights {str(path)!r} does not start with a Rescaling layer; tfdistill "
            f"feeds it raw pixels in [0, {ds.pixel_max:g}]"
        )
    return teacher, warning


def load_teachers(
    paths: list[str], ds: data.Dataset, size: Any = None, unsafe: bool = False
) -> tuple[keras.Model, list[str]]:
    """The teacher of `paths`: one `.keras` file's model, or of several the
    `ensemble.teacher_ensemble` of their models (equal weights), each loaded and checked as
    `load_teacher` does; and the warnings."""
    loaded = [load_teacher(path, ds, size, unsafe) for path in paths]
    warnings = [warning for _, warning in loaded if warning]
    if len(loaded) == 1:
        return loaded[0][0], warnings
    # Renamed copies (the same layers): two runs' teacher.keras are both called "teacher".
    members = [
        keras.Model(model.inputs, model.outputs[0], name=f"teacher_{i}")
        for i, (model, _) in enumerate(loaded)
    ]
    return ensemble.teacher_ensemble(members, name="teacher"), warnings


def train_scratch(
    config: RunConfig,
    ds: data.Dataset,
    labeled: np.ndarray,
    init: list[np.ndarray],
    fitting: Fitting = Fitting(),
) -> Trained:
    """The student alone, on the labeled images, for as many steps as the distilled one takes."""
    student = classifier(
        config.student, config.student_kwargs, ds, "student_scratch", config.mixed_precision
    )
    student.set_weights(init)
    per_epoch = steps_of(config, ds, 1)
    steps = per_epoch * config.student_epochs
    compile_classifier(student, config, config.student_learning_rate, steps)
    images = ds.x_train.subset(labeled) if ds.streamed else ds.x_train[labeled]
    stream = stream_of(config, ds, (images, ds.y_train[labeled]), sizes_of(ds, None, "student"))
    return Trained(student, fit(student, stream, config.student_epochs, per_epoch, fitting))


def distillation_elements(
    config: RunConfig,
    ds: data.Dataset,
    teacher: keras.Model | None,
    labeled: np.ndarray,
    size: Any = None,
) -> tuple[Any, np.ndarray]:
    """(inputs, labels) of every training image, labels -1 except where `labeled`. The inputs
    hold the teacher's cached logits, {"inputs": x, "teacher_logits": t}, unless images are
    augmented or `teacher` is None; then they are the images, for a teacher that runs online
    on each augmented batch. The teacher sees its view at `size` (see `feed`). Logits of more
    than `LOGITS_IN_MEMORY` bytes go to a float16 file in the cache folder, read by batch."""
    labels = data.mask_labels(ds.y_train, labeled)
    if teacher is None or augments(config):
        return ds.x_train, labels
    images = ds.inputs("train", sizes_of(ds, size, "teacher")[0])
    path = None
    if len(images) * ds.num_classes * 4 > LOGITS_IN_MEMORY:
        folder = data.folder.cache_root(config.cache_dir) / "teacher_logits"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.npy"
    logits = data.teacher_logits(images, teacher, batch_size=config.batch_size, path=path)
    if path is not None:
        path.unlink()  # the memory map stays readable; the disk is freed when the run ends
    return {INPUTS: ds.x_train, TEACHER_LOGITS: logits}, labels


def teacher_view_elements(
    config: RunConfig,
    ds: data.Dataset,
    teacher: keras.Model,
    labeled: np.ndarray,
    folder: Path,
    size: Any = None,
) -> tuple[dict, np.ndarray, float | None]:
    """(rows, labels, seconds) of every training image with `config.teacher_views` views
    labelled by `teacher` at `size` (see `data.teacher_views`), read from `folder` when an
    earlier (interrupted) run of this teacher labelled them (seconds None), else labelled
    (taking `seconds`) and saved there, replacing views of another teacher."""
    digest = hashlib.sha256()
    for weights in teacher.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    stem = f"teacher_views_{config.teacher_views}_{digest.hexdigest()[:12]}"
    stored = data.TeacherViews.load(folder, stem)
    if stored is None:
        started = time.perf_counter()
        labelled = data.label_views(
            ds,
            teacher,
            config.teacher_views,
            seed=config.seed,
            teacher_size=sizes_of(ds, size, "teacher")[0],
            batch_size=config.batch_size,
        )
        for old in folder.glob("teacher_views_*.npy"):
            old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        labelled.save(folder, stem)
        stored = data.TeacherViews.load(folder, stem)
        seconds = time.perf_counter() - started
    else:
        seconds = None
    return stored.elements(ds.x_train), data.mask_labels(ds.y_train, labeled), seconds


def features_of(config: RunConfig) -> FeatureMethod | None:
    """The feature term of `config.method`: AT for "at" and "kd+at", GAT for "gat", FitNets
    hints for "fitnet" and "kd+fitnet" (`config.beta`, or the method's default β; hints also
    take `config.method_kwargs`), none for the logit methods."""
    beta = {} if config.beta is None else {"beta": config.beta}
    if config.method in ("at", "kd+at"):
        return AttentionTransfer(**beta)
    if config.method == "gat":
        return GradientAttentionTransfer(**beta)
    if config.method.endswith("fitnet"):
        return FeatureHint(**beta, **config.method_kwargs)
    return None


def distil(
    config: RunConfig,
    ds: data.Dataset,
    teacher: keras.Model,
    elements: tuple,
    init: list[np.ndarray],
    fitting: Fitting = Fitting(),
    size: Any = None,
) -> Trained:
    """The student on every training image: soft targets everywhere, labels where it has them.
    The teacher takes (H, W) = `size` (default: the student's): two views of each crop.

    `config.method`: "kd" (Hinton et al.), "at" (labels + attention transfer, alpha 1),
    "kd+at", "gat" (labels + gradient attention transfer), "fitnet" (labels + FitNets hints,
    alpha 1), "kd+fitnet", "dkd", "dist", "kd+ls" or "dkd+ls" (see `distillation_loss_of`).
    `elements`: the `distillation_elements`; the feature methods need the teacher's features
    every step, so they take the images without cached logits.
    """
    student = classifier(
        config.student, config.student_kwargs, ds, "student_distilled", config.mixed_precision
    )
    student.set_weights(init)
    sparsity_of(config).apply(student)
    features = features_of(config)
    inputs, labels = elements
    if features is not None and isinstance(inputs, dict):
        elements = (inputs[INPUTS], labels)
    distiller = Distiller(student, teacher, features=features)
    steps = steps_of(config, ds, config.student_epochs)
    distiller.compile(
        optimizer=adam(config.student_learning_rate, steps, config.lr_schedule),
        metrics=["accuracy"],
        alpha=1.0 if config.method in LABELS_ONLY else config.alpha,
        temperature=config.temperature,
        distillation_loss_fn=distillation_loss_of(config),
        jit_compile=use_xla(config, distiller),
    )
    per_epoch = steps_of(config, ds, 1)
    stream = stream_of(config, ds, elements, sizes_of(ds, size, "both"))
    return Trained(student, fit(distiller, stream, config.student_epochs, per_epoch, fitting))


def sparsity_of(config: RunConfig) -> compress.StructuredSparsity:
    """The structured-sparsity penalty of the distil and fine-tuning stages: network slimming
    at `config.sparsity_l1`, group lasso at `config.sparsity_group_lasso` (off at 0)."""
    return compress.StructuredSparsity(
        bn_l1=config.sparsity_l1, group_lasso=config.sparsity_group_lasso
    )


def distillation_loss_of(config: RunConfig) -> Any:
    """The soft term of `config.method`: `DecoupledKD` for "dkd" and "dkd+ls" (standardized),
    `DIST` for "dist",
    `SoftTargetLoss` at `config.temperature` with logit standardization for "kd+ls", each with
    `config.method_kwargs`; None (the Distiller's KD at `config.temperature`) otherwise."""
    kwargs = dict(config.method_kwargs)
    if config.method.startswith("dkd"):
        return DecoupledKD(standardize=config.method.endswith("+ls"), **kwargs)
    if config.method == "dist":
        return DIST(**kwargs)
    if config.method == "kd+ls":
        return SoftTargetLoss(**{"temperature": config.temperature, **kwargs}, standardize=True)
    return None


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
    epoch (about ten mask updates, `compress.pruning_frequency`), and the last epoch recovers
    at the target."""
    del ds  # the schedule comes from `train`'s length
    return compress.prune(
        distilled,
        train,
        target_sparsity=config.prune,
        **tfmot_fitting(config, teacher, callbacks),
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
        preserve_sparsity=config.prune is not None,
        **tfmot_fitting(config, teacher, callbacks),
    )


def tfmot_fitting(
    config: RunConfig, teacher: keras.Model | None, callbacks: list | None
) -> dict[str, Any]:
    """The arguments the TFMOT stages share: `config.compress_epochs` of distillation with the
    run's `alpha`, `temperature`, seed and structured sparsity, from `teacher` online or from
    cached logits."""
    return {
        "sparsity": sparsity_of(config),
        "teacher": teacher,
        "epochs": config.compress_epochs,
        "alpha": config.alpha,
        "temperature": config.temperature,
        "seed": config.seed,
        "verbose": 0 if config.quiet else 2,
        "callbacks": callbacks,
    }


def tf_keras_backup(folder: Path) -> list:
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


def tf_keras_tensorboard(folder: Path) -> list:
    """tf_keras's TensorBoard callback, for the TFMOT stages' tf_keras fits (see
    `tensorboard`)."""
    import tf_keras

    return [tf_keras.callbacks.TensorBoard(log_dir=str(folder), write_graph=False)]


TEACHER_LABELLED = 1000


def teacher_labelled(
    config: RunConfig, ds: data.Dataset, teacher: keras.Model, size: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The first `TEACHER_LABELLED` training images at the student's size (n, h, w, C) and
    the teacher's top classes (n,): labels a run that may have few of its own can rank
    channels and proposals by."""
    count = min(len(ds.x_train), TEACHER_LABELLED)
    images = np.asarray(ds.inputs("train", sizes_of(ds, size, "student")[0])[:count])
    teacher_view = np.asarray(ds.inputs("train", sizes_of(ds, size, "teacher")[0])[:count])
    logits = data.teacher_logits(teacher_view, teacher, batch_size=config.batch_size)
    return images, np.argmax(logits, axis=-1)


def criterion_data(
    config: RunConfig,
    ds: data.Dataset,
    teacher: keras.Model,
    size: Any,
    labelled: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """For `prune_criterion="taylor"`: batches (x (B, h, w, C), y (B,)) of `labelled` (default
    `teacher_labelled`); None for the other criteria."""
    if config.prune_criterion != "taylor":
        return None
    images, labels = labelled or teacher_labelled(config, ds, teacher, size)
    step = config.batch_size
    return [(images[i : i + step], labels[i : i + step]) for i in range(0, len(images), step)]


def distil_pruned(
    config: RunConfig,
    ds: data.Dataset,
    student: keras.Model,
    teacher: keras.Model,
    elements: tuple,
    steps: tuple[int, int],
    fitting: Fitting = Fitting(),
    size: Any = None,
) -> dict:
    """Fine-tunes a pruned `student` in place with the Distiller's loss from `teacher` for
    `steps` = (epochs, steps per epoch) on `elements`, with the run's structured-sparsity
    penalty (`sparsity_of`); Adam at the students' rate on `config.lr_schedule`. The
    history."""
    epochs, per_epoch = steps
    distiller = Distiller(student, teacher)
    sparsity_of(config).apply(student)
    distiller.compile(
        optimizer=adam(config.student_learning_rate, per_epoch * epochs, config.lr_schedule),
        metrics=["accuracy"],
        alpha=config.alpha,
        temperature=config.temperature,
        distillation_loss_fn=distillation_loss_of(config),
        jit_compile=use_xla(config, distiller),
    )
    stream = stream_of(config, ds, elements, sizes_of(ds, size, "both"))
    return fit(distiller, stream, epochs, per_epoch, fitting)


def prune_channels(
    config: RunConfig,
    ds: data.Dataset,
    distilled: keras.Model,
    teacher: keras.Model,
    elements: tuple,
    fitting: Fitting = Fitting(),
    size: Any = None,
) -> Trained:
    """The distilled student with the `config.prune_channels` share of its channels removed
    (`compress.prune_channels` by `config.prune_criterion`), then fine-tuned by
    `distil_pruned` for `config.compress_epochs` on `elements` (see `distillation_elements`)
    (at the TFMOT stages' rate 1e-3 the student pruned to half its channels stayed at chance
    for six epochs on the embedded digits; at the students' 1e-2 it reached 63%)."""
    data_ = criterion_data(config, ds, teacher, size)
    student = compress.prune_channels(
        distilled, config.prune_channels, config.prune_criterion, data_
    )
    steps = (config.compress_epochs, steps_of(config, ds, 1))
    history = distil_pruned(config, ds, student, teacher, elements, steps, fitting, size)
    return Trained(student, history)
