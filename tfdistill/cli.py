"""The `tfdistill` command (absl flags; `tfdistill run --helpfull` lists them):

tfdistill run [--flags]                          the main job
tfdistill profile MODEL [--flags]                parameters and MACs of a zoo model
tfdistill convert MODEL.keras --quantization=…   a .tflite file
tfdistill bench MODEL.tflite [--threads=N]       latency in LiteRT, or on a phone (--android)
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

from absl import app, flags, logging

COMMANDS = ("run", "profile", "convert", "bench")

_OUT = flags.DEFINE_string(
    "out",
    None,
    "run: output folder, default runs/<timestamp>. convert: the .tflite path, default "
    "MODEL_<quantization>.tflite beside the model.",
)
_DATASET = flags.DEFINE_string(
    "dataset",
    "digits",
    "Dataset: digits, mnist, fashion_mnist, cifar10, cifar100, folder:PATH (one subfolder of "
    "images per class; train/ and test/ or val/ subfolders are the splits) or tfds:NAME.",
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder holding the CIFAR files.")
_TEACHER = flags.DEFINE_string("teacher", "convnet", "Registered teacher model name.")
_TEACHER_KWARGS = flags.DEFINE_string(
    "teacher_kwargs", '{"widths": [16, 32, 64], "depth": 2}', "Teacher builder arguments, JSON."
)
_STUDENT = flags.DEFINE_string("student", "convnet", "Registered student model name.")
_STUDENT_KWARGS = flags.DEFINE_string(
    "student_kwargs", '{"widths": [4, 8, 16]}', "Student builder arguments, JSON."
)
_TEACHER_WEIGHTS = flags.DEFINE_string(
    "teacher_weights",
    None,
    "run: a trained teacher .keras file (e.g. teacher.keras of an earlier run) used instead of "
    "training one; it takes raw pixels and the dataset's image shape and classes.",
)
_LABELS = flags.DEFINE_integer(
    "labels_per_class",
    10,
    "Labeled training images per class the students see (0: all); they distil on every image.",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "run: epochs of the teacher and of the students, unless given one by one."
)
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 10, "Teacher training epochs.")
_STUDENT_EPOCHS = flags.DEFINE_integer("student_epochs", 30, "Student epochs over all images.")
_TEACHER_LR = flags.DEFINE_float("teacher_learning_rate", 3e-3, "run: the teacher's Adam rate.")
_STUDENT_LR = flags.DEFINE_float("student_learning_rate", 1e-2, "run: the students' Adam rate.")
_SCHEDULE = flags.DEFINE_enum(
    "lr_schedule",
    "cosine",
    ["cosine", "step", "constant"],
    "run: learning-rate schedule: cosine decay to 0, step (x0.2 after 30, 60 and 80% of the "
    "steps) or constant.",
)
_AUGMENT = flags.DEFINE_boolean(
    "augment",
    None,
    "run: random crops (4-pixel padding) and mirroring of training images; default on for "
    "natural images (cifar10, cifar100, folder:, tfds:), off for digits and MNIST.",
)
_STRATEGY = flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker", "one_device"],
    "run: tf.distribute strategy of the teacher and student training (mirrored: every local "
    "GPU; multi_worker: every worker in TF_CONFIG, each running the same command with the "
    "same --out).",
)
_DETERMINISTIC = flags.DEFINE_boolean(
    "deterministic",
    False,
    "run: deterministic TensorFlow ops, so a resumed run ends with the same weights as an "
    "unbroken one (slower on GPUs).",
)
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision",
    "none",
    ["none", "float16", "bfloat16"],
    "run: train the teacher and students under Keras's mixed_float16 or mixed_bfloat16 policy "
    "(the distillation losses stay float32; the .tflite files come from float32 copies). "
    "Faster on GPUs with tensor cores (float16) and TPUs (bfloat16), slower on CPUs.",
)
_XLA = flags.DEFINE_enum(
    "xla",
    "auto",
    ["auto", "on", "off"],
    "run: compile the training steps with XLA. auto: on where a GPU is present (not under a "
    "tf.distribute strategy or with --deterministic), off on CPU-only machines, where the "
    "embedded data's short runs do not repay the compilation.",
)
_QUIET = flags.DEFINE_boolean(
    "quiet", False, "run: no stage banners, time estimates or progress bars; just the results."
)
_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_ALPHA = flags.DEFINE_float(
    "alpha",
    0.1,
    "run: weight of the hard-label loss, in [0, 1]. profile: the MobileNet width multiplier.",
)
_TEMPERATURE = flags.DEFINE_float("temperature", 4.0, "Softmax temperature T > 0.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_INPUT_SHAPE = flags.DEFINE_list(
    "input_shape", None, "profile: input size H,W,C; default the family's own (224,224,3)."
)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "profile: classes; default the family's.")
_MODEL_KWARGS = flags.DEFINE_string(
    "model_kwargs", "{}", "profile: more builder arguments, JSON, e.g. '{\"groups\": 3}'."
)
_PER_LAYER = flags.DEFINE_boolean("per_layer", False, "profile: print every layer.")
_QUANTIZE = flags.DEFINE_list(
    "quantize", "none,float16,dynamic,int8", "run: .tflite modes of the distilled student."
)
_METHOD = flags.DEFINE_enum(
    "method",
    "kd",
    ["kd", "at", "kd+at", "gat"],
    "run: kd (soft targets), at (labels + attention transfer), kd+at, or gat (labels + "
    "gradient attention transfer).",
)
_BETA = flags.DEFINE_float(
    "beta", None, "run: weight β of the attention term (default: AT 1000, GAT 0.1)."
)
_CONFIG = flags.DEFINE_string(
    "config",
    None,
    "run: a JSON or YAML file of run settings, keyed by these flag names (num_runs is "
    "bench_runs); flags given on the command line override it, --epochs included.",
)
_PRUNE = flags.DEFINE_float(
    "prune",
    None,
    "run: also prune the distilled student to this sparsity in (0, 1) with TFMOT, distilling "
    "while it fine-tunes (needs the compress extra).",
)
_QAT = flags.DEFINE_boolean(
    "qat",
    False,
    "run: also fine-tune the student quantization-aware and export it to int8 (the pruned "
    "student, keeping its zeros, with --prune; needs the compress extra).",
)
_COMPRESS_EPOCHS = flags.DEFINE_integer(
    "compress_epochs", 6, "run: fine-tuning epochs of --prune and of --qat, each."
)
_QUANTIZATION = flags.DEFINE_string(
    "quantization", "none", "convert: none, float16, dynamic, int8 or int16x8."
)
_CALIBRATION = flags.DEFINE_integer(
    "calibration_samples",
    200,
    "convert: training images of --dataset that calibrate int8 and int16x8.",
)
_THREADS = flags.DEFINE_integer("threads", None, "run, bench: interpreter threads (default 1).")
_NUM_RUNS = flags.DEFINE_integer("num_runs", 50, "bench, run: timed inferences.")
_WARMUP = flags.DEFINE_integer("warmup_runs", 1, "bench: untimed inferences first.")
_XNNPACK = flags.DEFINE_boolean("use_xnnpack", True, "bench: the XNNPACK CPU delegate.")
_ANDROID = flags.DEFINE_boolean(
    "android", False, "bench, run: also time the .tflite files with benchmark_model on a phone."
)
_BINARY = flags.DEFINE_string(
    "benchmark_binary", None, "--android: the benchmark_model binary for the phone."
)
_SERIAL = flags.DEFINE_string("serial", None, "--android: device serial (adb -s).")
_ADB = flags.DEFINE_string("adb", "adb", "--android: the adb executable.")
_USE_GPU = flags.DEFINE_boolean("use_gpu", False, "--android: the GPU delegate.")
_USE_NNAPI = flags.DEFINE_boolean("use_nnapi", False, "--android: the NNAPI delegate.")
_OP_PROFILING = flags.DEFINE_boolean(
    "enable_op_profiling", False, "bench --android: per-op timings."
)
_TASKSET = flags.DEFINE_string("taskset", None, "--android: CPU mask, e.g. f0.")


def _json_flag(flag: flags.FlagHolder) -> dict:
    try:
        value = json.loads(flag.value)
    except json.JSONDecodeError as error:
        raise app.UsageError(f"--{flag.name} must be a JSON object: {error}") from None
    if not isinstance(value, dict):
        raise app.UsageError(f"--{flag.name} must be a JSON object, got {flag.value!r}")
    return value


def _run() -> int:
    from tfdistill import pipeline, report

    out = _OUT.value or f"runs/{datetime.datetime.now():%Y%m%d-%H%M%S}"
    values: dict[str, Any] = {"out": out}
    try:
        values = {
            "out": out,
            "dataset": _DATASET.value,
            "data_dir": _DATA_DIR.value,
            "teacher": _TEACHER.value,
            "teacher_kwargs": _json_flag(_TEACHER_KWARGS),
            "student": _STUDENT.value,
            "student_kwargs": _json_flag(_STUDENT_KWARGS),
            "labels_per_class": _LABELS.value,
            "teacher_epochs": _TEACHER_EPOCHS.value,
            "student_epochs": _STUDENT_EPOCHS.value,
            "batch_size": _BATCH.value,
            "alpha": _ALPHA.value,
            "temperature": _TEMPERATURE.value,
            "seed": _SEED.value,
            "quantize": tuple(_QUANTIZE.value),
            "threads": _THREADS.value,
            "bench_runs": _NUM_RUNS.value,
            "prune": _PRUNE.value,
            "qat": _QAT.value,
            "compress_epochs": _COMPRESS_EPOCHS.value,
            "method": _METHOD.value,
            "beta": _BETA.value,
            "teacher_weights": _TEACHER_WEIGHTS.value,
            "teacher_learning_rate": _TEACHER_LR.value,
            "student_learning_rate": _STUDENT_LR.value,
            "lr_schedule": _SCHEDULE.value,
            "augment": _AUGMENT.value,
            "strategy": _STRATEGY.value,
            "deterministic": _DETERMINISTIC.value,
            "mixed_precision": _MIXED_PRECISION.value,
            "xla": _XLA.value,
            "quiet": _QUIET.value,
            "android": _ANDROID.value,
            "benchmark_binary": _BINARY.value,
            "adb": _ADB.value,
            "serial": _SERIAL.value,
            "use_gpu": _USE_GPU.value,
            "use_nnapi": _USE_NNAPI.value,
            "taskset": _TASKSET.value,
        }
        given = {name for name in flags.FLAGS if flags.FLAGS[name].present}
        if _CONFIG.value:
            flag_of = {"bench_runs": "num_runs"}
            for key, value in pipeline.read_config(_CONFIG.value).items():
                if flag_of.get(key, key) not in given:
                    values[key] = value
        if _EPOCHS.value is not None:
            for key in ("teacher_epochs", "student_epochs"):
                if key not in given:
                    values[key] = _EPOCHS.value
        config = pipeline.RunConfig(**values)
        if config.strategy == "multi_worker" and not _OUT.value:
            raise ValueError(
                "--strategy=multi_worker needs --out: every worker must name the same folder."
            )
        result = pipeline.run(config)
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        print(f"tfdistill run: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"tfdistill run: interrupted; to resume, run it again with --out={values['out']}",
            file=sys.stderr,
        )
        return 130
    if "worker" in result:
        print(f"{result['worker']}: done; the chief writes the report to {config.out}")
        return 0
    print(report.format_table(result))
    print(f"report: {config.out}/report.json")
    return 0


def _profile(name: str) -> int:
    from tfdistill import models
    from tfdistill.profile import profile

    kwargs = _json_flag(_MODEL_KWARGS)
    if flags.FLAGS["alpha"].present:
        kwargs["alpha"] = _ALPHA.value
    if _INPUT_SHAPE.value:
        try:
            kwargs["input_shape"] = tuple(int(v) for v in _INPUT_SHAPE.value)
        except ValueError:
            raise app.UsageError(
                f"--input_shape must be integers H,W,C, got {','.join(_INPUT_SHAPE.value)}"
            ) from None
    if _NUM_CLASSES.value is not None:
        kwargs["num_classes"] = _NUM_CLASSES.value
    try:
        model = models.get(name, **kwargs)
    except ValueError as error:
        print(f"tfdistill profile: {error}", file=sys.stderr)
        return 2
    print(profile(model).table(per_layer=_PER_LAYER.value))
    return 0


def _load_classifier(path: Path) -> Any:
    """A `.keras` classifier; a saved Distiller gives its student. A mixed-precision model
    comes back as a float32 copy, as TFLite export needs."""
    import keras

    import tfdistill
    from tfdistill import precision

    if path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"{str(path)!r} is not a .keras file.")
    model = keras.models.load_model(path)
    model = model.student if isinstance(model, tfdistill.Distiller) else model
    return precision.float32_copy(model)


def _convert(model_path: str) -> int:
    from tfdistill import data, export

    path = Path(model_path)
    quantization = _QUANTIZATION.value
    out = Path(_OUT.value or path.with_name(f"{path.stem}_{quantization}.tflite"))
    try:
        if quantization not in export.QUANTIZATIONS:
            raise ValueError(
                f"--quantization={quantization!r} is not one of {list(export.QUANTIZATIONS)}."
            )
        model = _load_classifier(path)
        calibration = None
        if quantization in ("int8", "int16x8"):
            ds = data.load(_DATASET.value, data_dir=_DATA_DIR.value)
            expected = tuple(model.inputs[0].shape[1:])
            if tuple(ds.input_shape) != expected:
                raise ValueError(
                    f"--dataset={_DATASET.value} gives {tuple(ds.input_shape)} images but the "
                    f"model takes {expected}; calibrate with the data it was trained on."
                )
            calibration = ds.x_train
        export.to_tflite(
            model,
            out,
            quantization=quantization,
            representative_data=calibration,
            num_calibration_samples=_CALIBRATION.value,
        )
    except (ValueError, OSError, RuntimeError) as error:
        print(f"tfdistill convert: {error}", file=sys.stderr)
        return 2
    print(f"{out} ({out.stat().st_size:,} bytes, {quantization})")
    return 0


def _bench(model_path: str) -> int:
    from tfdistill import bench

    try:
        if _ANDROID.value:
            if not _BINARY.value:
                raise ValueError("--android needs --benchmark_binary, the phone's benchmark_model.")
            result = bench.android.benchmark(
                model_path,
                benchmark_binary=_BINARY.value,
                adb=_ADB.value,
                serial=_SERIAL.value,
                num_threads=_THREADS.value or 1,
                use_xnnpack=_XNNPACK.value,
                use_gpu=_USE_GPU.value,
                use_nnapi=_USE_NNAPI.value,
                num_runs=_NUM_RUNS.value,
                warmup_runs=_WARMUP.value,
                enable_op_profiling=_OP_PROFILING.value,
                taskset=_TASKSET.value,
            )
        else:
            result = bench.benchmark_tflite(
                model_path,
                num_threads=_THREADS.value,
                warmup_runs=_WARMUP.value,
                num_runs=_NUM_RUNS.value,
                use_xnnpack=_XNNPACK.value,
            )
    except (ValueError, OSError, bench.android.AndroidBenchmarkError) as error:
        print(f"tfdistill bench: {error}", file=sys.stderr)
        return 2
    print(result.table())
    return 0


def _main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    command = argv[1:]
    if command[:1] == ["run"] and len(command) == 1:
        return _run()
    one_argument = {"profile": _profile, "convert": _convert, "bench": _bench}
    if len(command) == 2 and command[0] in one_argument:
        return one_argument[command[0]](command[1])
    raise app.UsageError(
        "usage: tfdistill run [--flags] | tfdistill profile MODEL | tfdistill convert "
        "MODEL.keras [--quantization=...] | tfdistill bench MODEL.tflite [--threads=N]; got "
        f"{' '.join(command) or 'nothing'}"
    )


_HELP_HINT = "`tfdistill run --helpfull` lists the flags"


def _usage_exit(message: str) -> SystemExit:
    """Prints `message` as one line on stderr; the exit (status 2) for the caller to raise."""
    print(f"tfdistill: {' '.join(message.split())}", file=sys.stderr)
    return SystemExit(2)


def _flag_error(error: flags.Error) -> str:
    if isinstance(error, flags.UnrecognizedFlagError):
        _, _, tip = str(error).partition("Did you mean:")
        names = [f"--{name.strip()}" for name in tip.rstrip(" ?").split(",") if name.strip()]
        guess = f" (did you mean {' or '.join(names)}?)" if names else ""
        return f"unknown flag --{error.flagname}{guess}; {_HELP_HINT}"
    message = str(error)
    head = message.partition(": ")[0]
    name = head.removeprefix("flag --").partition("=")[0]
    if not head.startswith("flag --") or name not in flags.FLAGS:
        return message
    if "Non-boolean argument" in message:
        return f"{head}: --{name} takes true or false (or --{name}, --no{name})"
    expected = flags.FLAGS[name].parser.syntactic_help
    if expected and expected not in message:
        return f"{message}; --{name} takes {expected}"
    return message


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        raise _usage_exit(_flag_error(error)) from None
    except SystemExit:
        # absl's --help, --helpshort, --helpfull and --helpxml exit with status 1 once printed.
        raise SystemExit(0) from None


def _main_one_line_errors(argv: list[str]) -> int:
    commands = ", ".join(COMMANDS)
    if len(argv) < 2:
        raise _usage_exit(f"no command given; the commands are {commands} ({_HELP_HINT})")
    if argv[1] not in COMMANDS:
        raise _usage_exit(f"unknown command {argv[1]!r}; the commands are {commands}")
    try:
        return _main(argv)
    except app.UsageError as error:
        raise _usage_exit(str(error)) from None


def _list_flags_in_short_help() -> None:
    """absl's --help lists the key flags of the module named by sys.argv[0]: this one under
    `python -m tfdistill.cli`, but under the `tfdistill` console script, its launcher."""
    if __name__ != "__main__":
        for flag in flags.FLAGS.get_flags_for_module(__name__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def main() -> None:
    _list_flags_in_short_help()
    app.run(_main_one_line_errors, flags_parser=_parse_flags)


if __name__ == "__main__":
    main()
