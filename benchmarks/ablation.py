"""Ablation of distillation methods: test accuracy of one student trained five ways from one
teacher, over several seeds.

    python benchmarks/ablation.py                      # digits, 3 seeds, both settings
    python benchmarks/ablation.py --quick              # smoke run: 1 seed, 2 + 2 epochs
    python benchmarks/ablation.py --methods kd,at --settings full --seeds 0
    python benchmarks/ablation.py --preset cifar_wrn --data_dir ~/data   # paper's Table 1
    python benchmarks/ablation.py --help

Methods, all trained by `tfdistill.Distiller` on the same batches (same order, same
augmentation), with the same optimizer, number of steps and initial student weights per seed:
  scratch  alpha 1: the labels alone (the soft term has weight 0)
  kd       alpha (--alpha 0.1) and temperature (--temperature 4): Hinton et al. 2015
  at       alpha 1 + AttentionTransfer(beta=--at_beta 1000): activation-based attention transfer
  at+kd    kd + AttentionTransfer(beta=--at_beta)
  gat      alpha 1 + GradientAttentionTransfer(beta=--gat_beta 0.1): matches input gradients
           ∂CE/∂x by double backprop (on digits about twice the time of at)
scratch and kd train on `cache_teacher_outputs` batches (no teacher pass) unless the training
batches are augmented; the others need the teacher's features or input gradients every step.

Settings (`--settings`, default few,full):
  full  every training label is visible.
  few   `--labels_per_class` (10) labels per class (`data.label_subset`), the other labels set to
        -1 (`data.mask_labels`); every image is still seen, the unlabeled ones only through the
        teacher's terms. As in `tfdistill run`, except that here scratch shares the batches of
        the other methods: it sees each labeled image once per epoch (about 4 labels in a batch
        of 64 on digits), where `tfdistill run`'s scratch student trains on the labeled images
        alone.

Default run: `digits` (1437 train / 360 test, 32×32×1, 10 classes); the `tfdistill run` models
(teacher convnet widths (16, 32, 64) depth 2, student convnet widths (4, 8, 16)); per seed one
teacher trained on all labels by `training.train_teacher` (Adam 3e-3 cosine-decayed,
--teacher_epochs 10), reused by both settings and every method; students: Adam with cosine
decay from --learning_rate 1e-2 to 0 (`training.adam`), --epochs 30, --batch_size 64.
`keras.utils.set_random_seed(seed)` runs before the teacher, before the student's initial weights
and before each method's data. `--dataset cifar10|cifar100 --data_dir DIR` runs the same recipe
on CIFAR.

`--preset cifar_wrn`: Table 1 of Zagoruyko & Komodakis (2017), "Paying More Attention to
Attention", row WRN-16-1 student / WRN-16-2 teacher on CIFAR-10, with the recipe of the authors'
code: `wide_resnet` depth 16 width 2 (teacher) and width 1 (student), setting full, methods
scratch, at, kd, at+kd, batch 128, 200 epochs for teacher and students, SGD with momentum 0.9
from lr 0.1, × 0.2 at 30 %, 60 % and 80 % of training (epochs 60, 120, 160 of 200), coupled
weight decay 5e-4 on every weight (see `Recipe.regularize`), training batches augmented by
`data.random_crop_flip(pad=4, flip=True)`, and --at_beta 2000: the authors' code adds
beta · Σ_pairs with beta 1000 where tfdistill adds beta / 2 · Σ_pairs (the paper's equation).
Deviations: zero padding instead of reflection, and no per-channel input normalisation (the
loader gives [0, 1]). The paper's errors are printed beside the result: student 8.77 %, AT
7.93 %, teacher 6.31 %. `--limit_train N --limit_test N` take a fixed random subset for smoke
runs.

Output: one progress line per run, then a table with one row per method and one column per
setting, each cell the mean ± sample standard deviation (ddof 1; 0 with one seed) of the test
accuracy in % over seeds (and the error, 100 − accuracy, with the preset), the mean training
seconds of the method (fit plus building the teacher-output cache, tracing included), and the
teacher's accuracy. Compare a method with scratch in the same column; a difference smaller than
the standard deviations is noise. The JSON (`--out`, default benchmarks/results/ablation.json,
git-ignored) holds the config, every run (setting, method, seed, accuracy, seconds, the last
value of each logged training metric), the teachers, the summary, TF/Keras versions, CPU count
and a timestamp; the table is also written as markdown beside it (ablation.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdistill  # noqa: E402
from tfdistill import (  # noqa: E402
    AttentionTransfer,
    Distiller,
    GradientAttentionTransfer,
    report,
)
from tfdistill import data as data_lib  # noqa: E402
from tfdistill import run as run_lib  # noqa: E402
from tfdistill.artifacts import write_atomic  # noqa: E402
from tfdistill.run import training  # noqa: E402

METHODS = ("scratch", "kd", "at", "at+kd", "gat")
CACHEABLE = frozenset({"scratch", "kd"})
SETTINGS = ("few", "full")
PRESETS = ("cifar_wrn",)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ablation.json"
PAPER_ERRORS = {"scratch": 8.77, "at": 7.93, "teacher": 6.31}
PAPER = "Zagoruyko & Komodakis 2017, Table 1, WRN-16-1 student / WRN-16-2 teacher, CIFAR-10"
_RUN = run_lib.RunConfig(out="")
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "settings": "few,full",
    "methods": ",".join(METHODS),
    "teacher": _RUN.teacher,
    "teacher_kwargs": _RUN.teacher_kwargs,
    "student": _RUN.student,
    "student_kwargs": _RUN.student_kwargs,
    "teacher_epochs": _RUN.teacher_epochs,
    "epochs": _RUN.student_epochs,
    "batch_size": _RUN.batch_size,
    "learning_rate": _RUN.student_learning_rate,
    "teacher_learning_rate": _RUN.teacher_learning_rate,
    "seeds": "0,1,2",
    "at_beta": 1000.0,
}
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "cifar_wrn": {
        "dataset": "cifar10",
        "settings": "full",
        "methods": "scratch,at,kd,at+kd",
        "teacher": "wide_resnet",
        "teacher_kwargs": {"depth": 16, "width": 2},
        "student": "wide_resnet",
        "student_kwargs": {"depth": 16, "width": 1},
        "teacher_epochs": 200,
        "epochs": 200,
        "batch_size": 128,
        "learning_rate": 0.1,
        "teacher_learning_rate": 0.1,
        "at_beta": 2000.0,
    }
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How every network of a run is optimized and fed."""

    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float | None = None
    step_boundaries: tuple[float, ...] = ()
    step_factor: float = 1.0
    augment: bool = False
    pad: int = 4

    def make_optimizer(self, learning_rate: float, steps: int) -> keras.optimizers.Optimizer:
        if self.optimizer == "adam":
            return training.adam(learning_rate, steps)
        schedule: Any = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        if self.step_boundaries:
            schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
                [round(b * steps) for b in self.step_boundaries],
                [learning_rate * self.step_factor**i for i in range(len(self.step_boundaries) + 1)],
            )
        return keras.optimizers.SGD(schedule, momentum=self.momentum)

    def regularize(self, model: keras.Model) -> None:
        """Coupled weight decay, as in PyTorch's SGD: every trainable variable gets the L2 penalty
        (weight_decay / 2)·‖w‖², whose gradient weight_decay·w then passes through the
        momentum (Keras's own `weight_decay` is decoupled, about 1 / (1 − momentum) weaker)."""
        if self.weight_decay:
            for variable in model.trainable_variables:
                variable.regularizer = keras.regularizers.L2(self.weight_decay / 2)


RECIPES = {
    None: Recipe(),
    "cifar_wrn": Recipe(
        "sgd",
        momentum=0.9,
        weight_decay=5e-4,
        step_boundaries=(60 / 200, 120 / 200, 160 / 200),
        step_factor=0.2,
        augment=True,
    ),
}


def _csv(text: str, valid: tuple[str, ...], what: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in valid]
    if unknown or not chosen:
        raise ValueError(f"unknown {what} {unknown or text!r}; valid: {', '.join(valid)}")
    return list(dict.fromkeys(chosen))


def _kwargs(text: str | dict) -> dict:
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, dict):
        raise ValueError(f"model kwargs must be a JSON object, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--preset", choices=PRESETS, default=None, help="cifar_wrn: the paper's Table 1 setting")
    add("--dataset", choices=data_lib.available(), default=None, help="default digits")
    add("--data_dir", default=None, help="folder holding the CIFAR release")
    add("--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)}")
    add("--settings", default=None, help="comma-separated subset of few,full (default both)")
    add("--labels_per_class", type=int, default=_RUN.labels_per_class, help="few setting")
    add("--teacher", default=None, help=f"model family (default {DEFAULTS['teacher']})")
    add("--teacher_kwargs", default=None, help="JSON object of builder arguments")
    add("--student", default=None, help=f"model family (default {DEFAULTS['student']})")
    add("--student_kwargs", default=None, help="JSON object of builder arguments")
    add("--teacher_epochs", type=int, default=None, help="default 10; cifar_wrn 200")
    add("--epochs", type=int, default=None, help="student epochs (default 30; cifar_wrn 200)")
    add("--batch_size", type=int, default=None, help="default 64; cifar_wrn 128")
    add("--learning_rate", type=float, default=None, help="student (default 1e-2; cifar_wrn 0.1)")
    add("--teacher_learning_rate", type=float, default=None, help="default 3e-3; cifar_wrn 0.1")
    add("--alpha", type=float, default=_RUN.alpha, help="hard-label weight of kd and at+kd")
    add("--temperature", type=float, default=4.0, help="of kd and at+kd")
    add("--at_beta", type=float, default=None, help="AttentionTransfer beta (1000; cifar_wrn 2000)")
    add("--gat_beta", type=float, default=0.1, help="GradientAttentionTransfer beta")
    add("--seeds", default=None, help="comma-separated ints (default 0,1,2)")
    add("--limit_train", type=int, default=None, help="random subset of N training images")
    add("--limit_test", type=int, default=None, help="random subset of N test images")
    add("--out", type=Path, default=DEFAULT_OUT, help="JSON path; the .md goes beside it")
    add("--quick", action="store_true", help="smoke run: 1 seed, 2 teacher and 2 student epochs")
    args = parser.parse_args(argv)

    preset = PRESET_DEFAULTS.get(args.preset, {})
    if args.preset and args.dataset not in (None, preset["dataset"]):
        parser.error(f"--preset {args.preset} is {preset['dataset']}, not {args.dataset}")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, preset.get(name, default))
    if args.quick:
        args.seeds, args.teacher_epochs, args.epochs = "0", 2, 2
    try:
        args.methods = _csv(args.methods, METHODS, "method(s)")
        args.settings = _csv(args.settings, SETTINGS, "setting(s)")
        args.seeds = list(dict.fromkeys(int(s) for s in args.seeds.split(",")))
        args.teacher_kwargs = _kwargs(args.teacher_kwargs)
        args.student_kwargs = _kwargs(args.student_kwargs)
        AttentionTransfer(beta=args.at_beta)
        GradientAttentionTransfer(beta=args.gat_beta)
        run_lib.RunConfig(
            out="",
            dataset=args.dataset,
            teacher=args.teacher,
            student=args.student,
            labels_per_class=args.labels_per_class,
            teacher_epochs=args.teacher_epochs,
            student_epochs=args.epochs,
            batch_size=args.batch_size,
            alpha=args.alpha,
            temperature=args.temperature,
        )
    except ValueError as error:
        parser.error(str(error))
    for name in ("limit_train", "limit_test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    args.recipe = RECIPES[args.preset]
    return args


def load_dataset(args: argparse.Namespace) -> data_lib.Dataset:
    """The dataset, each split cut to a fixed random subset when a limit is given."""
    ds = data_lib.load(args.dataset, data_dir=args.data_dir).raw_pixels()
    rng = np.random.default_rng(0)
    cut = {}
    for split, limit in (("train", args.limit_train), ("test", args.limit_test)):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if limit is not None and limit < len(x):
            keep = np.sort(rng.choice(len(x), limit, replace=False))
            cut.update({f"x_{split}": x[keep], f"y_{split}": y[keep]})
    return dataclasses.replace(ds, **cut)


def run_config(args: argparse.Namespace, seed: int) -> run_lib.RunConfig:
    return run_lib.RunConfig(
        out=str(args.out.parent),
        dataset=args.dataset,
        data_dir=args.data_dir,
        teacher=args.teacher,
        teacher_kwargs=args.teacher_kwargs,
        student=args.student,
        student_kwargs=args.student_kwargs,
        labels_per_class=args.labels_per_class,
        teacher_epochs=args.teacher_epochs,
        student_epochs=args.epochs,
        batch_size=args.batch_size,
        teacher_learning_rate=args.teacher_learning_rate,
        student_learning_rate=args.learning_rate,
        alpha=args.alpha,
        temperature=args.temperature,
        seed=seed,
    )


def training_stream(
    ds: data_lib.Dataset,
    args: argparse.Namespace,
    seed: int,
    teacher: keras.Model | None = None,
) -> tf.data.Dataset:
    """Endless batches, reshuffled every epoch; with `teacher`, its cached logits ride along.

    One iterator serves the whole fit (steps_per_epoch), so the seeded augmentation draws new
    crops every epoch; the same seed gives the same batches to every method.
    """
    if teacher is None:
        batches = ds.as_tf_dataset("train", args.batch_size, shuffle=True, seed=seed)
    else:
        batches = data_lib.cache_teacher_outputs(
            ds.as_tf_dataset("train", args.batch_size), teacher, shuffle=True, seed=seed
        )
    batches = batches.repeat()
    if args.recipe.augment:
        pad = args.recipe.pad

        def augment(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return data_lib.random_crop_flip(x, pad=pad, flip=True, seed=seed), y

        batches = batches.map(augment)
    return batches


def train_teacher(args: argparse.Namespace, ds: data_lib.Dataset, seed: int) -> keras.Model:
    """`training.train_teacher`, or for the preset the same loop on the preset's recipe."""
    config = run_config(args, seed)
    if args.recipe == Recipe():
        return training.train_teacher(config, ds).model
    teacher = training.classifier(config.teacher, config.teacher_kwargs, ds, "teacher")
    args.recipe.regularize(teacher)
    steps_per_epoch = math.ceil(len(ds.x_train) / args.batch_size)
    teacher.compile(
        optimizer=args.recipe.make_optimizer(
            args.teacher_learning_rate, steps_per_epoch * args.teacher_epochs
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    teacher.fit(
        training_stream(ds, args, seed),
        epochs=args.teacher_epochs,
        steps_per_epoch=steps_per_epoch,
        verbose=0,
        shuffle=False,
    )
    return teacher


def attention_of(method: str, args: argparse.Namespace) -> Any:
    if method in ("at", "at+kd"):
        return AttentionTransfer(beta=args.at_beta)
    if method == "gat":
        return GradientAttentionTransfer(beta=args.gat_beta)
    return None


def train_method(
    method: str,
    ds: data_lib.Dataset,
    teacher: keras.Model,
    init: list[np.ndarray],
    args: argparse.Namespace,
    seed: int,
) -> dict:
    """Trains a fresh student from `init` by `method` on `ds` (labels possibly masked)."""
    keras.utils.set_random_seed(seed)
    student = training.classifier(args.student, args.student_kwargs, ds, "student")
    student.set_weights(init)
    args.recipe.regularize(student)
    cached = method in CACHEABLE and not args.recipe.augment
    alpha = args.alpha if method in ("kd", "at+kd") else 1.0
    steps_per_epoch = math.ceil(len(ds.x_train) / args.batch_size)

    start = time.perf_counter()
    train = training_stream(ds, args, seed, teacher if cached else None)
    cache_seconds = time.perf_counter() - start if cached else 0.0
    distiller = Distiller(student, teacher, attention=attention_of(method, args))
    distiller.compile(
        optimizer=args.recipe.make_optimizer(args.learning_rate, steps_per_epoch * args.epochs),
        metrics=["accuracy"],
        alpha=alpha,
        temperature=args.temperature,
    )
    history = distiller.fit(
        train, epochs=args.epochs, steps_per_epoch=steps_per_epoch, verbose=0, shuffle=False
    )
    seconds = time.perf_counter() - start
    accuracy = training.accuracy(student, ds, args.batch_size)
    return {
        "method": method,
        "seed": seed,
        "accuracy": accuracy,
        "error": 1.0 - accuracy,
        "train_seconds": round(seconds, 2),
        "cache_seconds": round(cache_seconds, 2),
        "cached_teacher_outputs": cached,
        "alpha": alpha,
        "temperature": args.temperature,
        "attention": repr(distiller.attention) if distiller.attention is not None else None,
        "steps": steps_per_epoch * args.epochs,
        "final_train_logs": {k: float(v[-1]) for k, v in history.history.items()},
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict], teachers: list[dict], args: argparse.Namespace) -> dict:
    """Accuracy in % per (setting, method) over seeds, mean training seconds per method."""
    cells: dict[str, dict[str, dict]] = {}
    for setting in args.settings:
        cells[setting] = {}
        for method in args.methods:
            accs = [
                100 * r["accuracy"]
                for r in runs
                if r["setting"] == setting and r["method"] == method
            ]
            mean, std = mean_std(accs)
            cells[setting][method] = {
                "accuracy_mean": mean,
                "accuracy_std": std,
                "error_mean": 100 - mean,
                "seeds": len(accs),
            }
    seconds = {
        method: statistics.fmean(r["train_seconds"] for r in runs if r["method"] == method)
        for method in args.methods
    }
    t_mean, t_std = mean_std([100 * t["accuracy"] for t in teachers])
    return {
        "unit": "% test accuracy, mean ± sample std (ddof 1) over seeds",
        "accuracy": cells,
        "train_seconds_mean": seconds,
        "teacher": {"accuracy_mean": t_mean, "accuracy_std": t_std, "error_mean": 100 - t_mean},
    }


def _setting_label(setting: str, args: argparse.Namespace) -> str:
    if setting == "few":
        return f"few ({args.labels_per_class}/class)"
    return setting


def table_rows(summary: dict, args: argparse.Namespace) -> list[list[str]]:
    """Header and rows of the result table as strings."""
    show_error = args.preset is not None
    header = ["method"]
    for setting in args.settings:
        header.append(f"{_setting_label(setting, args)} acc %")
        if show_error:
            header.append(f"{setting} err %")
    if show_error:
        header.append("paper err %")
    header.append("train s")
    rows = [header]

    def row(name: str, cells: list[dict], seconds: str, paper: float | None) -> list[str]:
        out = [name]
        for cell in cells:
            out.append(f"{cell['accuracy_mean']:.2f} ± {cell['accuracy_std']:.2f}")
            if show_error:
                out.append(f"{cell['error_mean']:.2f}")
        if show_error:
            out.append("" if paper is None else f"{paper:.2f}")
        return [*out, seconds]

    for method in args.methods:
        cells = [summary["accuracy"][setting][method] for setting in args.settings]
        seconds = f"{summary['train_seconds_mean'][method]:.1f}"
        rows.append(row(method, cells, seconds, PAPER_ERRORS.get(method)))
    teacher = summary["teacher"]
    rows.append(row("teacher", [teacher] * len(args.settings), "", PAPER_ERRORS["teacher"]))
    return rows


def format_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def format_markdown(rows: list[list[str]], caption: str) -> str:
    lines = [caption, "", "| " + " | ".join(rows[0]) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines) + "\n"


def caption(args: argparse.Namespace, ds: data_lib.Dataset) -> str:
    what = f"preset {args.preset}, " if args.preset else ""
    text = (
        f"{what}{ds.name} ({len(ds.x_train)} train / {len(ds.x_test)} test), teacher "
        f"{args.teacher} {json.dumps(args.teacher_kwargs)}, student {args.student} "
        f"{json.dumps(args.student_kwargs)}, {args.teacher_epochs} teacher / {args.epochs} "
        f"student epochs, batch {args.batch_size}, seeds {','.join(map(str, args.seeds))}. "
        "Test accuracy in %, mean ± sample std over seeds; the teacher row is the same teacher "
        "in every column; train s: mean wall seconds of a student's training."
    )
    if args.preset:
        text += f" Paper: {PAPER}."
    return text


def describe_models(args: argparse.Namespace, ds: data_lib.Dataset) -> dict:
    built = {
        role: training.classifier(
            getattr(args, role), getattr(args, f"{role}_kwargs"), ds, role
        ).count_params()
        for role in ("teacher", "student")
    }
    return {
        role: {
            "model": getattr(args, role),
            "kwargs": getattr(args, f"{role}_kwargs"),
            "params": int(count),
        }
        for role, count in built.items()
    }


def config_json(args: argparse.Namespace, ds: data_lib.Dataset) -> dict:
    config = {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in vars(args).items()
        if key != "recipe"
    }
    config["recipe"] = dataclasses.asdict(args.recipe)
    config["dataset_info"] = {
        "name": ds.name,
        "train": len(ds.x_train),
        "test": len(ds.x_test),
        "num_classes": ds.num_classes,
        "input_shape": list(ds.input_shape),
    }
    config["models"] = describe_models(args, ds)
    return json.loads(json.dumps(config))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ds = load_dataset(args)
    print(caption(args, ds), flush=True)
    show_error = args.preset is not None
    runs: list[dict] = []
    teachers: list[dict] = []
    started = time.perf_counter()
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        began = time.perf_counter()
        teacher = train_teacher(args, ds, seed)
        teacher_seconds = time.perf_counter() - began
        accuracy = training.accuracy(teacher, ds, args.batch_size)
        teachers.append(
            {"seed": seed, "accuracy": accuracy, "train_seconds": round(teacher_seconds, 2)}
        )
        error = f", err {100 * (1 - accuracy):.2f}%" if show_error else ""
        print(
            f"seed {seed}: teacher acc {accuracy:.2%}{error} ({teacher_seconds:.1f} s)", flush=True
        )
        keras.utils.set_random_seed(seed)
        init = training.classifier(args.student, args.student_kwargs, ds, "student").get_weights()
        for setting in args.settings:
            train_ds, labeled = ds, len(ds.y_train)
            if setting == "few":
                keep = data_lib.label_subset(ds.y_train, args.labels_per_class, seed=seed)
                train_ds = dataclasses.replace(ds, y_train=data_lib.mask_labels(ds.y_train, keep))
                labeled = len(keep)
            for method in args.methods:
                record = train_method(method, train_ds, teacher, init, args, seed)
                record = {"setting": setting, "labeled": labeled, **record}
                runs.append(record)
                error = f", err {100 * record['error']:.2f}%" if show_error else ""
                print(
                    f"[{setting}] {method:<7} seed {seed}: acc {record['accuracy']:.2%}{error} "
                    f"({record['train_seconds']:.1f} s)",
                    flush=True,
                )

    summary = summarize(runs, teachers, args)
    rows = table_rows(summary, args)
    print()
    print(format_text(rows))
    teacher = summary["teacher"]
    print(
        f"teacher: {teacher['accuracy_mean']:.2f} ± {teacher['accuracy_std']:.2f} % accuracy "
        f"over {len(teachers)} seed(s)"
        + (f" (error {teacher['error_mean']:.2f} %; paper 6.31 %)" if show_error else "")
    )
    total = time.perf_counter() - started
    print(f"total {total:.0f} s")

    payload = {
        "benchmark": "ablation",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "config": config_json(args, ds),
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tfdistill": tfdistill.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        },
        "paper": {"source": PAPER, "errors_percent": PAPER_ERRORS} if args.preset else None,
        "teachers": teachers,
        "runs": runs,
        "summary": summary,
        "total_seconds": round(total, 1),
    }
    out = report.write_json(payload, args.out)
    markdown = format_markdown(rows, caption(args, ds))
    md = write_atomic(out.with_suffix(".md"), lambda f: f.write(markdown))
    print(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
