"""`RunConfig`, the settings of `tfdistill run`, each defined once.

A field's metadata (`option`) holds its help, its choices, its bounds and how it enters the
run's fingerprint; the absl flags of the `tfdistill` command (`define_flags`), the type checks
of config files (`read_config`) and the fingerprint that ties a run folder to its config
(`fingerprinted`) are all generated from it. A flag's name is its field's name; `ALIASES` keeps
older spellings working.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfdistill import compress, data, distribute, models, precision
from tfdistill.bench import android
from tfdistill.distiller import check_alpha
from tfdistill.export import QUANTIZATIONS, RECIPES
from tfdistill.losses import check_temperature

METHODS = ("kd", "at", "kd+at", "gat", "fitnet", "kd+fitnet", "dkd", "dist", "kd+ls", "dkd+ls")
LABELS_ONLY = ("at", "gat", "fitnet")  # labels and the feature term alone: alpha 1
SCHEDULES = ("cosine", "step", "constant")
XLA = ("auto", "on", "off")
BENCHMARK_TOOLS = ("auto", "classic", "litert")
ALIASES = {"num_runs": "bench_runs"}
ALWAYS, NEVER, WHEN_SET = "always", "never", "when set"
_REQUIRED = object()


def option(
    default: Any = None,
    help: str = "",
    *,
    factory: Any = None,
    choices: Sequence[str] = (),
    minimum: int | None = None,
    note: str = "",
    fraction: bool = False,
    fingerprint: str = ALWAYS,
    stage: str | None = None,
) -> Any:
    """A `RunConfig` field. `choices`: the valid values (of each item, for a tuple);
    `minimum`: the least valid number (`note` explains it in the error); `fraction`: a
    number in (0, 1) when set; `fingerprint`:
    whether the value decides the trained models, `ALWAYS`, `NEVER`, or `WHEN_SET` (only when
    it differs from the default, so runs from before the option still resume); `stage`: the
    one stage that keeps this setting as its own (it re-runs alone when the setting
    changes)."""
    metadata = {
        "help": help,
        "choices": tuple(choices),
        "minimum": minimum,
        "note": note,
        "fraction": fraction,
        "fingerprint": NEVER if stage else fingerprint,
        "stage": stage,
    }
    if default is _REQUIRED:
        return dataclasses.field(metadata=metadata)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_BENCH = "bench"
_ANDROID = "--android: "


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything `tfdistill run` does; see `define_flags` for the flags and `read_config` for
    config files. Invalid values are ValueErrors naming the valid ones."""

    out: str = option(
        _REQUIRED,
        "run: output folder, default runs/<timestamp>. convert: the .tflite path, default "
        "MODEL_<quantization>.tflite beside the model.",
        fingerprint=NEVER,
    )
    dataset: str = option(
        "digits",
        "Dataset: digits, mnist, fashion_mnist, cifar10, cifar100, folder:PATH (one subfolder "
        "of images per class; train/ and test/ or val/ subfolders are the splits) or tfds:NAME.",
    )
    data_dir: str | None = option(None, "Folder holding the CIFAR files.")
    image_size: str | None = option(
        None,
        "run: the student's input size, H or H,W (e.g. 96 or 96,128). Photos are resized with "
        "their aspect ratio kept and centre-cropped for testing, random-resized crops for "
        "training. Default: the images' own size when all share one of at most 64 px (CIFAR-"
        "like), else 224.",
        fingerprint=WHEN_SET,
    )
    teacher_image_size: str | None = option(
        None,
        "run: the teacher's input size, H or H,W. Default: the teacher's own (a --teacher_weights "
        "file's input size, a keras.applications model's ImageNet size: 224 for most), else "
        "--image_size. Each crop is resized to each model's size (two views).",
        fingerprint=WHEN_SET,
    )
    cache_dir: str | None = option(
        None,
        "run: where decoded images of folder: and tfds: data are stored (uint8, once per files "
        "and size). Default $TFDISTILL_CACHE_DIR, else ~/.cache/tfdistill.",
        fingerprint=NEVER,
    )
    max_megapixels: float = option(
        data.DEFAULT_MAX_MEGAPIXELS,
        "run: folder: images larger than this many megapixels (a JPEG after draft decoding at "
        "1/2, 1/4 or 1/8 a side) are skipped and counted, never decoded in full.",
        fingerprint=WHEN_SET,
    )
    unsafe_load: bool = option(
        False,
        "run, convert: load .keras files (--teacher_weights, convert's MODEL) outside Keras "
        "safe mode, so a Lambda layer's Python code runs: only for files you trust.",
        fingerprint=NEVER,
    )
    teacher: str = option(
        "convnet",
        "Registered teacher model name, or keras.applications.NAME (MobileNetV2, ResNet50, "
        "EfficientNetV2B0, ...): that ImageNet classifier without its top, its own "
        "preprocessing folded in, a new head for the dataset's classes, fine-tuned: the head "
        "alone for the first third of --teacher_epochs, then every layer at a tenth of the "
        "rate (3-channel datasets; see docs/applications.md).",
    )
    teacher_kwargs: dict = option(
        help="Teacher builder arguments, JSON; for keras.applications.NAME the application's "
        'own (default weights "imagenet", downloaded once; {"weights": null}: random '
        "weights).",
        factory=lambda: {"widths": (16, 32, 64), "depth": 2},
    )
    student: str = option("convnet", "Registered student model name.")
    student_kwargs: dict = option(
        help="Student builder arguments, JSON (the default is the convnet's; other students "
        "get none).",
        factory=lambda: {"widths": (4, 8, 16)},
    )
    labels_per_class: int = option(
        10,
        "Labeled training images per class the students see (0: all); they distil on every image.",
        minimum=0,
        note=" (0: every label)",
    )
    teacher_epochs: int = option(10, "Teacher training epochs.", minimum=1)
    student_epochs: int = option(30, "Student epochs over all images.", minimum=1)
    batch_size: int = option(64, "Batch size.", minimum=1)
    teacher_learning_rate: float = option(3e-3, "run: the teacher's Adam rate.")
    student_learning_rate: float = option(1e-2, "run: the students' Adam rate.")
    alpha: float = option(
        0.1,
        "run: weight of the hard-label loss, in [0, 1]. (profile: the old spelling of "
        "--width_multiplier.)",
    )
    temperature: float = option(4.0, "Softmax temperature T > 0.")
    seed: int = option(0, "Random seed.")
    quantize: tuple[str, ...] = option(
        ("none", "float16", "dynamic", "int8"),
        "run: .tflite modes of the distilled student (and of --prune_channels'): the "
        "converter's, or LiteRT Quantizer recipes (e.g. static_wi8_ai16; needs the "
        "litert-quantizer extra). --latency_budget adds none (float32), which it times.",
        choices=QUANTIZATIONS + RECIPES,
        stage="export",
    )
    max_accuracy_drop: float | None = option(
        None,
        "run: points of test accuracy the int8 file may lose against the float32 one; beyond "
        "that, LiteRT Quantizer's static_wi8_ai8 keeps the ops that cost the most in float "
        "(<model>_selective.tflite; needs the litert-quantizer extra).",
        minimum=0,
        stage="export",
    )
    threads: int | None = option(
        None, "run, bench: interpreter threads (default 1).", minimum=1, stage=_BENCH
    )
    bench_runs: int = option(
        50, "run, bench: timed inferences (also spelled --num_runs).", minimum=1, stage=_BENCH
    )
    prune: float | None = option(
        None,
        "run: also prune the distilled student to this sparsity in (0, 1) with TFMOT, "
        "distilling while it fine-tunes (needs the compress extra).",
        note=" (the target sparsity)",
        fraction=True,
    )
    qat: bool = option(
        False,
        "run: also fine-tune the student quantization-aware and export it to int8 (the pruned "
        "student, keeping its zeros, with --prune; needs the compress extra).",
    )
    compress_epochs: int = option(
        6, "run: fine-tuning epochs of --prune, --prune_channels and --qat, each.", minimum=1
    )
    sparsity_l1: float = option(
        0.0,
        "run: network slimming: an L1 penalty λ·Σ|γ| on the scale γ of every BatchNorm of the "
        "student while it distils and in the --prune_channels, --prune and --qat fine-tuning, "
        "so unimportant channels approach zero before they are cut (0: off; Liu et al. used "
        "1e-4 to 1e-5). See docs/compression.md.",
        minimum=0,
        fingerprint=WHEN_SET,
    )
    sparsity_group_lasso: float = option(
        0.0,
        "run: group lasso: a penalty μ·Σ‖W_f‖₂ over the output filters of the student's "
        "convolutions and dense layers (the classifier's excepted), in the same stages as "
        "--sparsity_l1 (0: off).",
        minimum=0,
        fingerprint=WHEN_SET,
    )
    method: str = option(
        "kd",
        "run: kd (soft targets), at (labels + attention transfer), kd+at, gat (labels + "
        "gradient attention transfer), fitnet (labels + FitNets hints), kd+fitnet, dkd "
        "(decoupled KD), dist (DIST), kd+ls or dkd+ls (with logit standardization).",
        choices=METHODS,
    )
    method_kwargs: dict = option(
        help="run: the method's own settings, JSON: for dkd and dkd+ls DecoupledKD's alpha, "
        "beta, temperature, warmup_steps (default 1, 8, 4, 0); for dist DIST's beta, gamma, "
        "temperature (default 1, 1, 1); for kd+ls SoftTargetLoss's "
        "temperature (default --temperature); for fitnet and kd+fitnet FeatureHint's pairs "
        '("auto": the middle stage, or "all").',
        factory=dict,
        fingerprint=WHEN_SET,
    )
    beta: float | None = option(
        None,
        "run: weight β of the feature term (default: AT 1000, GAT 0.1, FitNets hints 100).",
        minimum=0,
    )
    teacher_weights: str | None = option(
        None,
        "run: a trained teacher .keras file (e.g. teacher.keras of an earlier run) used instead "
        "of training one; it takes raw pixels and the dataset's image shape and classes. "
        "Several, comma-separated (a.keras,b.keras): the students distil from their ensemble, "
        "the mean of the teachers' probabilities.",
        fingerprint=NEVER,
    )
    lr_schedule: str = option(
        "cosine",
        "run: learning-rate schedule: cosine decay to 0, step (x0.2 after 30, 60 and 80% of the "
        "steps) or constant.",
        choices=SCHEDULES,
    )
    augment: bool | None = option(
        None,
        "run: random crops (4-pixel padding) and mirroring of training images; default on for "
        "natural images (cifar10, cifar100, folder:, tfds:), off for digits and MNIST.",
    )
    teacher_views: int = option(
        0,
        "run: with augmentation, the teacher labels this many augmented views of every training "
        "image once (kept in the run folder), and each student epoch draws one per image, so "
        "the teacher does not run while the students train; 0: the teacher runs online on every "
        "augmented batch. Attention transfer (at, kd+at, gat) needs the teacher online.",
        minimum=0,
        fingerprint=WHEN_SET,
    )
    strategy: str = option(
        "default",
        "run: tf.distribute strategy of the teacher and student training (mirrored: every "
        "local GPU; multi_worker: every worker in TF_CONFIG, each running the same command "
        "with the same --out).",
        choices=distribute.STRATEGIES,
        fingerprint=NEVER,
    )
    deterministic: bool = option(
        False,
        "run: deterministic TensorFlow ops, so a resumed run ends with the same weights as an "
        "unbroken one (slower on GPUs).",
        fingerprint=NEVER,
    )
    mixed_precision: str = option(
        "none",
        "run: train the teacher and students under Keras's mixed_float16 or mixed_bfloat16 "
        "policy (the distillation losses stay float32; the .tflite files come from float32 "
        "copies). Faster on GPUs with tensor cores (float16) and TPUs (bfloat16), slower on "
        "CPUs.",
        choices=precision.MIXED_PRECISION,
        fingerprint=WHEN_SET,
    )
    xla: str = option(
        "auto",
        "run: compile the training steps with XLA. auto: on where a GPU is present (not under "
        "a tf.distribute strategy or with --deterministic), off on CPU-only machines, where "
        "the embedded data's short runs do not repay the compilation.",
        choices=XLA,
        fingerprint=WHEN_SET,
    )
    tensorboard: bool = option(
        False,
        "run: write TensorBoard event files of every training stage to "
        "<out>/tensorboard/<stage> (losses, the distillation terms, accuracy, learning rate); "
        "view them with: tensorboard --logdir <out>/tensorboard.",
        fingerprint=NEVER,
    )
    quiet: bool = option(
        False,
        "run: no stage banners, time estimates or progress bars; just the results.",
        fingerprint=NEVER,
    )
    android: bool = option(
        False,
        "bench, run: also time the .tflite files with benchmark_model on a phone.",
        stage=_BENCH,
    )
    benchmark_binary: str | None = option(
        None, f"{_ANDROID}the benchmark_model binary for the phone.", stage=_BENCH
    )
    adb: str = option("adb", f"{_ANDROID}the adb executable.", stage=_BENCH)
    serial: str | None = option(None, f"{_ANDROID}device serial (adb -s).", stage=_BENCH)
    use_gpu: bool = option(False, f"{_ANDROID}the GPU delegate.", stage=_BENCH)
    use_nnapi: bool = option(
        False, f"{_ANDROID}the NNAPI delegate (the classic tool only).", stage=_BENCH
    )
    enable_op_profiling: bool = option(
        False,
        f"{_ANDROID}per-op timings (the classic tool's op profiler, LiteRT's --use_profiler); "
        "run: report.md shows the distilled student's slowest ops on the phone "
        "(op_profile.png).",
        stage=_BENCH,
    )
    use_npu: bool = option(False, f"{_ANDROID}the NPU (LiteRT's tool only).", stage=_BENCH)
    benchmark_tool: str = option(
        "auto",
        f"{_ANDROID}which benchmark_model --benchmark_binary is: classic (TFLite's: XNNPACK, "
        "GPU, NNAPI), litert (LiteRT's CompiledModel tool: CPU, GPU, NPU) or auto (read from "
        "the first run's output; docs/phone_tools.md).",
        choices=BENCHMARK_TOOLS,
        stage=_BENCH,
    )
    taskset: str | None = option(None, f"{_ANDROID}CPU mask, e.g. f0.", stage=_BENCH)
    prune_channels: float | None = option(
        None,
        "run: also remove this share in (0, 1) of the distilled student's channels (smallest "
        "L1 norms first), fine-tune it with distillation for --compress_epochs and export it "
        "in the --quantize modes.",
        note=" (the share of channels removed)",
        fraction=True,
        fingerprint=WHEN_SET,
    )
    latency_budget: str | None = option(
        None,
        "run: shrink the distilled student to this float32 LiteRT latency (on the phone with "
        '--android; --threads threads): a share of its own ("0.6x") or microseconds ("350us"). '
        "A NetAdapt search over channel groups replaces --prune_channels' fixed share; the "
        "winner is fine-tuned for --compress_epochs and exported like it (docs/compression.md).",
        fingerprint=WHEN_SET,
    )
    search_step: float = option(
        0.1,
        "run: the share of the distilled student's latency each --latency_budget round "
        "aims to save (NetAdapt's step; larger: fewer rounds, coarser cuts).",
        fraction=True,
        fingerprint=WHEN_SET,
    )
    search_steps: int = option(
        30,
        "run: steps of distillation each --latency_budget proposal is fine-tuned for.",
        minimum=1,
        fingerprint=WHEN_SET,
    )
    prune_criterion: str = option(
        "l1",
        "run: which channels --prune_channels and --latency_budget remove first: l1 (smallest "
        "filter norms), bn_gamma (smallest BatchNorm scales), taylor (least first-order "
        "change of the loss, on the teacher's labels of 1,000 training images).",
        choices=compress.CRITERIA,
        fingerprint=WHEN_SET,
    )

    @property
    def teacher_files(self) -> list[str]:
        """The `.keras` files of `teacher_weights`: one teacher, or several (an ensemble)."""
        if not self.teacher_weights:
            return []
        return [path.strip() for path in self.teacher_weights.split(",") if path.strip()]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_field(field, getattr(self, field.name))
        if self.xla == "on" and self.deterministic:
            raise ValueError(
                "xla='on' and deterministic cannot go together: TensorFlow's deterministic ops "
                "have no XLA kernels. Use xla='auto' or 'off' with deterministic."
            )
        for path in self.teacher_files:
            if not Path(path).is_file():
                raise FileNotFoundError(f"teacher_weights {path!r} is not a file.")
        if len(self.teacher_files) > 1 and self.teacher_views:
            raise ValueError(
                "teacher_views stores one teacher's logits of each view, but teacher_weights "
                f"names {len(self.teacher_files)} teachers (an ensemble); drop teacher_views, or "
                "give one teacher."
            )
        if self.android and not self.benchmark_binary:
            raise ValueError("android needs benchmark_binary, the phone's benchmark_model.")
        if self.android:
            android.check_tool(self.benchmark_tool, use_nnapi=self.use_nnapi, use_npu=self.use_npu)
        if not self.max_megapixels > 0:
            raise ValueError(f"max_megapixels must be > 0, got {self.max_megapixels}.")
        check_alpha(self.alpha)
        check_temperature(self.temperature)
        if self.latency_budget is not None:
            compress.budget.parse_budget(self.latency_budget)
            if self.prune_channels is not None:
                raise ValueError(
                    "latency_budget and prune_channels both set how many channels to remove; "
                    "give one: a latency (latency_budget) or a share of channels (prune_channels)."
                )
        if self.prune is not None or self.qat:
            compress.require_tfmot()
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "tensorboard writes event files with the tensorboard package, which is not "
                "installed: pip install 'tfdistill[tensorboard]' (or pip install tensorboard)."
            )
        data.check_name(self.dataset)
        _check_method_kwargs(self.method, self.method_kwargs)
        data.views.parse_size(self.image_size, "image_size")
        data.views.parse_size(self.teacher_image_size, "teacher_image_size")
        for role in ("teacher", "student"):  # the convnet's default arguments fit no other
            key = f"{role}_kwargs"
            given = json.loads(json.dumps(getattr(self, key)))
            if getattr(self, role) != "convnet" and given == json.loads(
                json.dumps(default(fields()[key]))
            ):
                object.__setattr__(self, key, {})
        if models.applications.is_application(self.teacher):
            models.applications.check_kwargs(self.teacher, self.teacher_kwargs)
            if self.method in ("at", "kd+at", "fitnet", "kd+fitnet"):
                raise ValueError(
                    f"method={self.method!r} pairs the student's stages with the teacher's, "
                    f"which {self.teacher} does not expose; use method='kd' or 'gat' with it."
                )
        elif self.teacher not in models.names():
            raise ValueError(
                f"Unknown teacher model {self.teacher!r}; available: {models.names()}, or "
                f"keras.applications.NAME (e.g. keras.applications.MobileNetV2)."
            )
        if self.student not in models.names():
            raise ValueError(
                f"Unknown student model {self.student!r}; available: {models.names()}."
            )


METHOD_KWARGS = {
    "dkd": ("alpha", "beta", "temperature", "warmup_steps"),
    "dkd+ls": ("alpha", "beta", "temperature", "warmup_steps"),
    "dist": ("beta", "gamma", "temperature"),
    "kd+ls": ("temperature",),
    "fitnet": ("pairs",),
    "kd+fitnet": ("pairs",),
}


def _check_method_kwargs(method: str, kwargs: dict) -> None:
    """A ValueError naming the settings `method` takes when `kwargs` holds others."""
    allowed = METHOD_KWARGS.get(method, ())
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        takes = f"takes {list(allowed)}" if allowed else "takes none"
        raise ValueError(f"method_kwargs {unknown} do not apply: method={method!r} {takes}.")


def _check_field(field: dataclasses.Field, value: Any) -> None:
    """A ValueError when `value` breaks `field`'s choices or bounds."""
    name, meta = field.name, field.metadata
    if meta["choices"]:
        if isinstance(value, tuple | list):
            unknown = [item for item in value if item not in meta["choices"]]
            if unknown:
                raise ValueError(
                    f"Unknown quantization {unknown}; choose from {list(meta['choices'])}."
                )
        elif value not in meta["choices"]:
            raise ValueError(f"Unknown {name} {value!r}; choose from {list(meta['choices'])}.")
    if value is None:
        return
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ValueError(f"{name} must be >= {meta['minimum']}{meta['note']}, got {value}.")
    if meta["fraction"] and not 0.0 < value < 1.0:
        raise ValueError(f"{name}{meta['note']} must be in (0, 1), got {value}.")


def fields() -> dict[str, dataclasses.Field]:
    """`RunConfig`'s fields by name, in order."""
    return {field.name: field for field in dataclasses.fields(RunConfig)}


def kind(field: dataclasses.Field) -> str:
    """The type of `field`'s values without None: "str", "int", "float", "bool", "dict" or
    "tuple"."""
    return str(field.type).split("[")[0].split(" |")[0]


def default(field: dataclasses.Field) -> Any:
    """`field`'s default value (a fresh one for mappings); `dataclasses.MISSING` for `out`."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def stage_settings(stage: str) -> tuple[str, ...]:
    """The fields that stage `stage` keeps as its own settings."""
    return tuple(name for name, field in fields().items() if field.metadata["stage"] == stage)


def settings(config: RunConfig, names: Sequence[str] | None = None) -> dict:
    """`config`'s values of `names` (default: every field), as JSON would give them back."""
    names = list(fields()) if names is None else names
    return json.loads(json.dumps({name: getattr(config, name) for name in names}))


def fingerprinted(config: RunConfig) -> dict:
    """The settings that decide a run's trained models: the fields whose `fingerprint` is
    `ALWAYS`, those that are `WHEN_SET` and differ from their defaults (XLA changes the order
    of floating-point operations, so a stage trained with it is not resumed without it), plus
    the digest of the `teacher_weights` files' contents. The export and bench stages keep
    their own settings and run again when those change."""
    values = settings(config)
    kept = {}
    for name, field in fields().items():
        rule = field.metadata["fingerprint"]
        if rule == ALWAYS or (rule == WHEN_SET and values[name] != default(field)):
            kept[name] = values[name]
    digests = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in config.teacher_files]
    if digests:
        joined = ",".join(digests).encode()
        kept["teacher_weights_sha256"] = (
            digests[0] if len(digests) == 1 else hashlib.sha256(joined).hexdigest()
        )
    return kept


def read_config(path: str | Path) -> dict:
    """The RunConfig fields in a JSON (.json) or YAML (.yaml, .yml) file: a mapping from field
    names (the `tfdistill run` flag names; `num_runs` for `bench_runs` too) to values; `epochs`
    sets `teacher_epochs` and `student_epochs` where the file does not. Unknown keys and values
    of the wrong type are ValueErrors that name them and the valid keys."""
    values = _parsed(Path(path))
    for alias, name in ALIASES.items():
        if alias in values:
            values.setdefault(name, values.pop(alias))
    known = fields()
    if "epochs" in values:
        epochs = typed("epochs", values.pop("epochs"), known["teacher_epochs"])
        for key in ("teacher_epochs", "student_epochs"):
            values.setdefault(key, epochs)
    unknown = sorted(set(values) - set(known))
    if unknown:
        valid = sorted([*known, "epochs"])
        raise ValueError(f"config file keys {unknown} are unknown; valid keys: {valid}.")
    return {key: typed(key, value, known[key]) for key, value in values.items()}


def _parsed(path: Path) -> dict:
    """The mapping in JSON or YAML file `path`."""
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
    return values


_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "tuple": "a list",
    "dict": "a mapping",
}


def typed(key: str, value: Any, field: dataclasses.Field) -> Any:
    """`value` as a value of `field` (see `kind`; None where the field allows it); a
    ValueError when it is not one."""
    kind_name = kind(field)
    if value is None and "None" in str(field.type):
        return value
    if kind_name == "bool":
        ok = isinstance(value, bool)
    elif kind_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind_name == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind_name == "tuple":
        ok = isinstance(value, list | tuple)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, {"str": str, "dict": dict}[kind_name])
    if not ok:
        raise ValueError(f"config key {key!r} must be {_KINDS[kind_name]}, got {value!r}.")
    return value
