"""`tfdistill run`: the main job, with absl flags (`tfdistill run --helpfull` lists them)."""

from __future__ import annotations

import datetime
import json
import sys

from absl import app, flags

COMMANDS = ("run",)

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
_ALPHA = flags.DEFINE_float("alpha", 0.1, "Weight of the hard-label loss, in [0, 1].")
_TEMPERATURE = flags.DEFINE_float("temperature", 4.0, "Softmax temperature T > 0.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")


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


def _main(argv: list[str]) -> int:
    command = argv[1:]
    if len(command) != 1 or command[0] not in COMMANDS:
        raise app.UsageError(
            f"usage: tfdistill COMMAND [--flags]; COMMAND is one of {', '.join(COMMANDS)}, "
            f"got {' '.join(command) or 'nothing'}"
        )
    return _run()


def main() -> None:
    app.run(_main)


if __name__ == "__main__":
    main()
