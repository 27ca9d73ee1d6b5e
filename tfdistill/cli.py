"""The `tfdistill` command (absl flags; `tfdistill run --helpfull` lists them):

tfdistill run [--flags]                          the main job
tfdistill profile MODEL [--flags]                parameters and MACs of a zoo model
tfdistill convert MODEL.keras --quantization=…   a .tflite file (--quantizer=litert --recipe=…:
                                                 a LiteRT Quantizer recipe)
tfdistill bench MODEL.tflite [--threads=N]       latency in LiteRT, or on a phone (--android)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from tfdistill.run import config as config_lib

COMMANDS = ("run", "profile", "convert", "bench")


def _define_run_flags() -> dict[str, flags.FlagHolder]:
    """One absl flag per `RunConfig` field, named as the field, with its help, default and
    choices; `config.ALIASES` keep older spellings."""
    holders = {}
    for name, field in config_lib.fields().items():
        meta, kind = field.metadata, config_lib.kind(field)
        default = config_lib.default(field)
        default = None if default is dataclasses.MISSING else default
        if meta["choices"] and kind == "str":
            holders[name] = flags.DEFINE_enum(name, default, meta["choices"], meta["help"])
        elif kind == "tuple":
            holders[name] = flags.DEFINE_list(name, ",".join(default), meta["help"])
        elif kind == "dict":
            holders[name] = flags.DEFINE_string(name, json.dumps(default), meta["help"])
        else:
            define = {
                "str": flags.DEFINE_string,
                "int": flags.DEFINE_integer,
                "float": flags.DEFINE_float,
                "bool": flags.DEFINE_boolean,
            }[kind]
            holders[name] = define(name, default, meta["help"])
    for alias, name in config_lib.ALIASES.items():
        flags.DEFINE_alias(alias, name)
    return holders


RUN_FLAGS = _define_run_flags()
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "run: epochs of the teacher and of the students, unless given one by one."
)
_CONFIG = flags.DEFINE_string(
    "config",
    None,
    "run: a JSON or YAML file of run settings, keyed by these flag names; flags given on the "
    "command line override it, --epochs included.",
)
_WIDTH = flags.DEFINE_float(
    "width_multiplier",
    None,
    "profile: the width multiplier (MobileNet's alpha); --alpha is its older spelling.",
)
_INPUT_SHAPE = flags.DEFINE_list(
    "input_shape", None, "profile: input size H,W,C; default the family's own (224,224,3)."
)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "profile: classes; default the family's.")
_MODEL_KWARGS = flags.DEFINE_string(
    "model_kwargs", "{}", "profile: more builder arguments, JSON, e.g. '{\"groups\": 3}'."
)
_PER_LAYER = flags.DEFINE_boolean("per_layer", False, "profile: print every layer.")
_QUANTIZATION = flags.DEFINE_string(
    "quantization", "none", "convert: none, float16, dynamic, int8 or int16x8."
)
_QUANTIZER = flags.DEFINE_enum(
    "quantizer",
    "converter",
    ["converter", "litert"],
    "convert: the TFLite converter (--quantization) or the LiteRT Quantizer (--recipe; needs "
    "the litert-quantizer extra).",
)
_RECIPE = flags.DEFINE_string(
    "recipe",
    None,
    "convert --quantizer=litert: dynamic_wi8_afp32, dynamic_wi4_afp32, weight_only_wi8_afp32, "
    "weight_only_wi4_afp32, static_wi8_ai8 or static_wi8_ai16 (static ones calibrate).",
)
_CALIBRATION = flags.DEFINE_integer(
    "calibration_samples",
    200,
    "convert: training images of --dataset that calibrate int8, int16x8 and static recipes.",
)
_WARMUP = flags.DEFINE_integer("warmup_runs", 1, "bench: untimed inferences first.")
_XNNPACK = flags.DEFINE_boolean("use_xnnpack", True, "bench: the XNNPACK CPU delegate.")


def _flag(name: str) -> Any:
    """The value of run flag `name` (also read by profile, convert and bench)."""
    return RUN_FLAGS[name].value


def _json_flag(flag: flags.FlagHolder) -> dict:
    try:
        value = json.loads(flag.value)
    except json.JSONDecodeError as error:
        raise app.UsageError(f"--{flag.name} must be a JSON object: {error}") from None
    if not isinstance(value, dict):
        raise app.UsageError(f"--{flag.name} must be a JSON object, got {flag.value!r}")
    return value


def _run_values() -> dict[str, Any]:
    """The `RunConfig` values of the run flags; JSON flags parsed."""
    values = {}
    for name, field in config_lib.fields().items():
        kind = config_lib.kind(field)
        if kind == "dict":
            values[name] = _json_flag(RUN_FLAGS[name])
        elif kind == "tuple":
            values[name] = tuple(_flag(name))
        else:
            values[name] = _flag(name)
    return values


def _one_line(error: Exception) -> str:
    """An error for the terminal: an OSError as the problem, the path and the way out."""
    from tfdistill import errors

    return errors.os_error(error) if isinstance(error, OSError) else str(error)


def _run() -> int:
    from tfdistill import report
    from tfdistill import run as run_lib

    out = _flag("out") or f"runs/{datetime.datetime.now():%Y%m%d-%H%M%S}"
    values: dict[str, Any] = {"out": out}
    try:
        values = {**_run_values(), "out": out}
        given = {name for name in flags.FLAGS if flags.FLAGS[name].present}
        if _CONFIG.value:
            for key, value in run_lib.read_config(_CONFIG.value).items():
                if key not in given:
                    values[key] = value
        if _EPOCHS.value is not None:
            for key in ("teacher_epochs", "student_epochs"):
                if key not in given:
                    values[key] = _EPOCHS.value
        config = run_lib.RunConfig(**values)
        if config.strategy == "multi_worker" and not _flag("out"):
            raise ValueError(
                "--strategy=multi_worker needs --out: every worker must name the same folder."
            )
        result = run_lib.run(config)
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        print(f"tfdistill run: {_one_line(error)}", file=sys.stderr)
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
    if _WIDTH.present:
        kwargs["alpha"] = _WIDTH.value
    elif RUN_FLAGS["alpha"].present:
        kwargs["alpha"] = _flag("alpha")
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
    """A `.keras` classifier, in Keras safe mode unless --unsafe_load; a saved Distiller gives
    its student. A mixed-precision model comes back as a float32 copy, as TFLite export needs."""
    import tfdistill
    from tfdistill import artifacts, precision

    if path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"{str(path)!r} is not a .keras file.")
    model = artifacts.load_model(path, unsafe=_flag("unsafe_load"))
    model = model.student if isinstance(model, tfdistill.Distiller) else model
    return precision.float32_copy(model)


def _convert(model_path: str) -> int:
    from tfdistill import export

    path = Path(model_path)
    quantization, quantizer, recipe = _QUANTIZATION.value, _QUANTIZER.value, _RECIPE.value
    mode = recipe if quantizer == "litert" else quantization
    out = Path(_flag("out") or path.with_name(f"{path.stem}_{mode}.tflite"))
    try:
        if quantization not in export.QUANTIZATIONS:
            raise ValueError(
                f"--quantization={quantization!r} is not one of {list(export.QUANTIZATIONS)}."
            )
        if quantizer == "litert" and recipe not in export.RECIPES:
            raise ValueError(f"--recipe={recipe!r} is not one of {list(export.RECIPES)}.")
        if quantizer == "converter" and recipe is not None:
            raise ValueError("--recipe needs --quantizer=litert.")
        model = _load_classifier(path)
        calibrated = quantization in ("int8", "int16x8") or recipe in export.STATIC_RECIPES
        export.to_tflite(
            model,
            out,
            quantization=quantization,
            representative_data=_calibration_images(model) if calibrated else None,
            num_calibration_samples=_CALIBRATION.value,
            quantizer=quantizer,
            recipe=recipe,
        )
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        print(f"tfdistill convert: {_one_line(error)}", file=sys.stderr)
        return 2
    print(f"{out} ({out.stat().st_size:,} bytes, {mode}, {quantizer})")
    return 0


def _calibration_images(model: Any) -> Any:
    """Batches of --calibration_samples training images of --dataset, checked to fit `model`."""
    from tfdistill import data

    expected = tuple(model.inputs[0].shape[1:])
    ds = data.load(_flag("dataset"), data_dir=_flag("data_dir"), image_size=expected[:2])
    ds = ds.raw_pixels()
    if tuple(ds.input_shape) != expected:
        raise ValueError(
            f"--dataset={_flag('dataset')} gives {tuple(ds.input_shape)} images but the "
            f"model takes {expected}; calibrate with the data it was trained on."
        )
    images = ds.inputs("train")
    count = min(len(images), _CALIBRATION.value)
    return (images[i : min(i + 64, count)] for i in range(0, count, 64))


def _bench(model_path: str) -> int:
    from tfdistill import bench

    try:
        if _flag("android"):
            if not _flag("benchmark_binary"):
                raise ValueError("--android needs --benchmark_binary, the phone's benchmark_model.")
            result = bench.android.benchmark(
                model_path,
                benchmark_binary=_flag("benchmark_binary"),
                adb=_flag("adb"),
                serial=_flag("serial"),
                num_threads=_flag("threads") or 1,
                use_xnnpack=_XNNPACK.value,
                use_gpu=_flag("use_gpu"),
                use_nnapi=_flag("use_nnapi"),
                use_npu=_flag("use_npu"),
                num_runs=_flag("bench_runs"),
                warmup_runs=_WARMUP.value,
                enable_op_profiling=_flag("enable_op_profiling"),
                taskset=_flag("taskset"),
                tool=_flag("benchmark_tool"),
            )
        else:
            result = bench.benchmark_tflite(
                model_path,
                num_threads=_flag("threads"),
                warmup_runs=_WARMUP.value,
                num_runs=_flag("bench_runs"),
                use_xnnpack=_XNNPACK.value,
            )
    except (ValueError, OSError, bench.android.AndroidBenchmarkError) as error:
        print(f"tfdistill bench: {_one_line(error)}", file=sys.stderr)
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
