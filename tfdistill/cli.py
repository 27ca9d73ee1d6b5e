"""`tfdistill run`: the main job, with absl flags (`tfdistill run --helpfull` lists them)."""

from __future__ import annotations

import datetime
import json
import sys

from absl import app, flags

COMMANDS = ("run", "profile")

_OUT = flags.DEFINE_string("out", None, "Output folder; default runs/<timestamp>.")
_DATASET = flags.DEFINE_string("dataset", "digits", "Dataset: digits, cifar10 or cifar100.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder holding the CIFAR files.")
_TEACHER = flags.DEFINE_string("teacher", "convnet", "Registered teacher model name.")
_TEACHER_KWARGS = flags.DEFINE_string(
    "teacher_kwargs", '{"widths": [16, 32, 64], "depth": 2}', "Teacher builder arguments, JSON."
)
_STUDENT = flags.DEFINE_string("student", "convnet", "Registered student model name.")
_STUDENT_KWARGS = flags.DEFINE_string(
    "student_kwargs", '{"widths": [4, 8, 16]}', "Student builder arguments, JSON."
)
_LABELS = flags.DEFINE_integer(
    "labels_per_class", 10, "Labeled training images per class the students see."
)
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 10, "Teacher training epochs.")
_STUDENT_EPOCHS = flags.DEFINE_integer("student_epochs", 30, "Student epochs over all images.")
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
    try:
        config = pipeline.RunConfig(
            out=out,
            dataset=_DATASET.value,
            data_dir=_DATA_DIR.value,
            teacher=_TEACHER.value,
            teacher_kwargs=_json_flag(_TEACHER_KWARGS),
            student=_STUDENT.value,
            student_kwargs=_json_flag(_STUDENT_KWARGS),
            labels_per_class=_LABELS.value,
            teacher_epochs=_TEACHER_EPOCHS.value,
            student_epochs=_STUDENT_EPOCHS.value,
            batch_size=_BATCH.value,
            alpha=_ALPHA.value,
            temperature=_TEMPERATURE.value,
            seed=_SEED.value,
        )
        result = pipeline.run(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"tfdistill run: {error}", file=sys.stderr)
        return 2
    print(report.format_table(result))
    print(f"report: {out}/report.json")
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


def _main(argv: list[str]) -> int:
    command = argv[1:]
    if command[:1] == ["run"] and len(command) == 1:
        return _run()
    if command[:1] == ["profile"] and len(command) == 2:
        return _profile(command[1])
    raise app.UsageError(
        "usage: tfdistill run [--flags] | tfdistill profile MODEL [--flags]; got "
        f"{' '.join(command) or 'nothing'}"
    )


def main() -> None:
    app.run(_main)


if __name__ == "__main__":
    main()
