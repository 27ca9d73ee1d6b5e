"""Ablation of distillation methods: test accuracy of one student trained several ways from one
teacher, over several seeds.

    python benchmarks/ablation.py                      # digits, 3 seeds, both settings
    python benchmarks/ablation.py --quick              # smoke run: 1 seed, 2 + 2 epochs
    python benchmarks/ablation.py --methods kd,dkd --settings full --seeds 0
    python benchmarks/ablation.py --preset cifar_subset                  # ~1 h on 2 CPU cores
    python benchmarks/ablation.py --preset cifar_wrn --data_dir ~/data   # paper's Table 1
    python benchmarks/ablation.py --help

Methods, all trained by `tfdistill.Distiller` on the same batches (same order, same
augmentation), with the same optimizer, number of steps and initial student weights per seed.
Every method but scratch is the distil stage of `tfdistill run --method=NAME` (at+kd is the
run's kd+at): its soft term, feature term and alpha come from the run's own functions
(`training.distillation_loss_of`, `training.features_of`, alpha 1 for the run's label-only
methods at, gat, fitnet and --alpha for the others), called on a RunConfig of that method:
  scratch    alpha 1: the labels alone (the soft term has weight 0)
  kd         alpha (--alpha 0.1) and temperature (--temperature 4): Hinton et al. 2015
  at         alpha 1 + AttentionTransfer(beta=--at_beta 1000): activation-based attention transfer
  at+kd      kd + AttentionTransfer(beta=--at_beta)
  gat        alpha 1 + GradientAttentionTransfer(beta=--gat_beta 0.1): matches input gradients
             ∂CE/∂x by double backprop (on digits about twice the time of at)
  dkd        alpha + DecoupledKD(alpha=1, beta=8, temperature=4): Zhao et al. 2022
  dist       alpha + DIST(beta=1, gamma=1, temperature=1): Huang et al. 2022
  kd+ls      alpha + SoftTargetLoss(--temperature, standardize=True): KD on z-scored logits,
             Sun et al. 2024
  fitnet     alpha 1 + FeatureHint(pairs="auto", beta=--hint_beta 100): FitNets hints (Romero
             et al. 2015) on the middle shared stage, trained jointly with the labels
  kd+fitnet  kd + FeatureHint(beta=--hint_beta)
`--method_kwargs '{"dist": {"beta": 2, "gamma": 2, "temperature": 4}}'` gives a method its own
settings as `tfdistill run --method_kwargs` does (dkd, dist, kd+ls, fitnet, kd+fitnet). The
Distiller's loss is alpha · CE + (1 − alpha) · term: at the run's alpha 0.1 the papers'
CE + DKD (or + DIST) becomes 0.1 · CE + 0.9 · term, the labels 9× lighter against the term than
in the papers (alpha 0.5 keeps their balance at half the step). The ablation keeps the run's
alpha, so that it measures what `tfdistill run --method=dkd` does.
scratch and the logit methods (kd, dkd, dist, kd+ls) train on `cache_teacher_outputs` batches
(no teacher pass) unless the training batches are augmented; at, at+kd, gat, fitnet and
kd+fitnet need the teacher's features or input gradients every step.

Settings (`--settings`, default few,full):
  full  every training label is visible.
  few   `--labels_per_class` (10) labels per class (`data.label_subset`), the other labels set to
        -1 (`data.mask_labels`); every image is still seen, the unlabeled ones only through the
        teacher's terms. As in `tfdistill run`, except that here scratch shares the batches of
        the other methods: it sees each labeled image once per epoch (about 4 labels in a batch
        of 64 on digits), where `tfdistill run`'s scratch student trains on the labeled images
        alone.

Default run: `digits` (1437 train / 360 test, 32×32×1, 10 classes), methods scratch, kd, at,
at+kd, gat; the `tfdistill run` models (teacher convnet widths (16, 32, 64) depth 2, student
convnet widths (4, 8, 16)); per seed one teacher trained on all labels by
`training.train_teacher` (Adam 3e-3 cosine-decayed, --teacher_epochs 10, augmented as the run
augments: CIFAR yes, digits no), reused by both settings and every method; students: Adam with
cosine decay from --learning_rate 1e-2 to 0 (`training.adam`), --epochs 30, --batch_size 64,
no augmentation. `keras.utils.set_random_seed(seed)` runs before the teacher, before the
student's initial weights and before each method's data. `--dataset cifar10|cifar100
--data_dir DIR` runs the same recipe on CIFAR. `--shared_teacher`: one teacher, trained with
the first seed, for every seed; `--teacher_file PATH` (with it) loads that teacher from PATH, or
trains it and saves it there, so that a later invocation reuses the very same teacher.

`--preset cifar_subset`: the CIFAR-10 subset of the shared data folder (10,000 training images,
1,000 per class, and 2,000 test images; default --data_dir ../shared/data/cifar10-subset beside
the repository) on 2 CPU cores in about an hour. Teacher ResNet-20 (`resnet` depth 20, 0.27 M
parameters, 41 M MACs), trained once (seed 0, 10 epochs, augmented with crops and flips as
`tfdistill run` does on CIFAR) and kept in benchmarks/results/ablation_cifar10_subset_teacher.keras
(git-ignored); student MobileNet v1 at alpha 0.25 with the CIFAR stem (0.22 M parameters but
about 12× fewer MACs than the teacher; its first three stage outputs, 32, 16, 8 px with 16, 32,
64 channels, match the teacher's three: AT pairs all three, the FitNets hint the middle one,
16 px); setting full; methods scratch, kd, at, dkd, dist, kd+ls, fitnet, kd+fitnet;
seeds 0, 1, 2; 5 student epochs over all 10,000 images (785 steps of 64), not augmented, so the
logit methods train on cached logits. Budget, from one timed epoch of each kind before the run
(this machine, 2 cores): teacher 45 s per augmented epoch; student 15 s per epoch on cached
logits, plus 16-21 s of labelling and ~20 s of tracing per run; 28 s per epoch with the teacher
online (at, fitnet). So 10 teacher epochs (~8 min) + 15 cached runs (~2 min each) + 9 online
runs (~2.7 min each) ≈ 58 min. Measured (2026-12-03, the cores shared with another engineer's
jobs, load average 4-10): 69 min in all, teacher 325 s, one student run 92-216 s. Half the
images (a class-balanced 5,000) at 10 epochs would cost the same steps; all 10,000 at 5 epochs
sees each image fewest times, which matters without augmentation. MobileNet v1 at alpha 0.125
(61 k parameters) was hardly faster (12 against 15 s per cached epoch); ShuffleNet v1 ×0.25
took 165 s per epoch. The students are still under-trained after 5 epochs (training accuracy
~55 % for scratch): the table measures what each method does in a short schedule.

    python benchmarks/ablation.py --preset cifar_subset --methods scratch,kd,at,dkd,dist,kd+ls
    python benchmarks/ablation.py --preset cifar_subset --methods fitnet,kd+fitnet --merge

(or the preset alone, every method in one invocation). Results in
benchmarks/results/ablation_cifar10_subset.json (and .md), committed. `--merge` keeps the runs
of the other methods already in --out (same config, seeds and teacher, checked) and tabulates
them all: a method can be added or rerun alone.

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
accuracy in % over seeds (and the error, 100 − accuracy, with cifar_wrn), the paired
difference to scratch (per seed: method − scratch, same initial weights and batches; mean ±
sample std), the mean training seconds of the method (fit plus building the teacher-output
cache, tracing included), and the teacher's accuracy. A difference smaller than its standard
deviation is noise. The JSON (`--out`, default benchmarks/results/ablation.json, git-ignored)
holds the config, every run (setting, method, seed, accuracy, seconds, the last value of each
logged training metric), the teachers (with a digest of their weights), the summary, the
invocations, TF/Keras versions, CPU count and a timestamp; the table is also written as
markdown beside it (.md). `--quick` with a preset writes *_quick files instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
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
from tfdistill import Distiller, report  # noqa: E402
from tfdistill import data as data_lib  # noqa: E402
from tfdistill import run as run_lib  # noqa: E402
from tfdistill.artifacts import write_atomic  # noqa: E402
from tfdistill.run import training  # noqa: E402
from tfdistill.run.config import LABELS_ONLY  # noqa: E402

METHODS = ("scratch", "kd", "at", "at+kd", "gat", "dkd", "dist", "kd+ls", "fitnet", "kd+fitnet")
CACHEABLE = frozenset({"scratch", "kd", "dkd", "dist", "kd+ls"})
RUN_METHOD = {"scratch": "kd", "at+kd": "kd+at"}  # the run's --method behind each name
SETTINGS = ("few", "full")
PRESETS = ("cifar_wrn", "cifar_subset")
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUT = RESULTS / "ablation.json"
CIFAR_SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-subset"
PAPER_ERRORS = {"scratch": 8.77, "at": 7.93, "teacher": 6.31}
PAPER = "Zagoruyko & Komodakis 2017, Table 1, WRN-16-1 student / WRN-16-2 teacher, CIFAR-10"
REFERENCE = (
    "CIFAR-100 top-1 % as published (CRD, DKD and logit-standardization papers), "
    "ResNet32×4 → ResNet8×4 / WRN-40-2 → WRN-16-2; context only: other data, models and "
    "schedules"
)
REFERENCE_ACCURACY = {
    "kd": "73.33 / 74.92",
    "at": "73.44 / 74.08",
    "fitnet": "73.50 / 73.58",
    "dkd": "76.32 / 76.23",
    "kd+ls": "76.62 / 76.11",
}
_RUN = run_lib.RunConfig(out="")
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "data_dir": None,
    "settings": "few,full",
    "methods": "scratch,kd,at,at+kd,gat",
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
    "shared_teacher": False,
    "teacher_file": None,
    "out": str(DEFAULT_OUT),
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
    },
    "cifar_subset": {
        "dataset": "cifar10",
        "data_dir": str(CIFAR_SUBSET),
        "settings": "full",
        "methods": "scratch,kd,at,dkd,dist,kd+ls,fitnet,kd+fitnet",
        "teacher": "resnet",
        "teacher_kwargs": {"depth": 20},
        "student": "mobilenet_v1",
        "student_kwargs": {"alpha": 0.25},
        "teacher_epochs": 10,
        "epochs": 5,
        "shared_teacher": True,
        "teacher_file": str(RESULTS / "ablation_cifar10_subset_teacher.keras"),
        "out": str(RESULTS / "ablation_cifar10_subset.json"),
    },
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
    "cifar_subset": Recipe(),
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
    add("--preset", choices=PRESETS, default=None, help="cifar_subset, or cifar_wrn (Table 1)")
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
    add("--epochs", type=int, default=None, help="student epochs (30; cifar_subset 5)")
    add("--batch_size", type=int, default=None, help="default 64; cifar_wrn 128")
    add("--learning_rate", type=float, default=None, help="student (default 1e-2; cifar_wrn 0.1)")
    add("--teacher_learning_rate", type=float, default=None, help="default 3e-3; cifar_wrn 0.1")
    add("--alpha", type=float, default=_RUN.alpha, help="hard-label weight of the KD methods")
    add("--temperature", type=float, default=4.0, help="of kd, at+kd, kd+ls, kd+fitnet")
    add("--at_beta", type=float, default=None, help="AttentionTransfer beta (1000; cifar_wrn 2000)")
    add("--gat_beta", type=float, default=0.1, help="GradientAttentionTransfer beta")
    add("--hint_beta", type=float, default=100.0, help="FeatureHint beta of fitnet, kd+fitnet")
    add("--method_kwargs", default="{}", help='JSON {"dkd": {"beta": 4}, ...}, as in the run')
    add("--seeds", default=None, help="comma-separated ints (default 0,1,2)")
    add("--shared_teacher", action="store_true", default=None, help="one teacher (first seed)")
    add("--teacher_file", type=Path, default=None, help="shared teacher: load, or train + save")
    add("--limit_train", type=int, default=None, help="random subset of N training images")
    add("--limit_test", type=int, default=None, help="random subset of N test images")
    add("--out", type=Path, default=None, help="JSON path (default results/ablation.json)")
    add("--merge", action="store_true", help="keep the other methods' runs already in --out")
    add("--quick", action="store_true", help="smoke run: 1 seed, 2 teacher and 2 student epochs")
    args = parser.parse_args(argv)

    preset = PRESET_DEFAULTS.get(args.preset, {})
    if args.preset and args.dataset not in (None, preset["dataset"]):
        parser.error(f"--preset {args.preset} is {preset['dataset']}, not {args.dataset}")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            value = preset.get(name, default)
            if args.quick and args.preset and name in ("out", "teacher_file") and value:
                value = _quick_path(Path(value))
            setattr(args, name, value)
    if args.quick:
        args.seeds, args.teacher_epochs, args.epochs = "0", 2, 2
    try:
        check_args(args)
    except ValueError as error:
        parser.error(str(error))
    args.recipe = RECIPES[args.preset]
    return args


def _quick_path(path: Path) -> Path:
    """results/x.json -> results/x_quick.json: a smoke run keeps off the real files."""
    return path.with_name(f"{path.stem}_quick{path.suffix}")


def check_args(args: argparse.Namespace) -> None:
    """Parses the list arguments in place; a ValueError for the first bad value."""
    args.methods = _csv(args.methods, METHODS, "method(s)")
    args.settings = _csv(args.settings, SETTINGS, "setting(s)")
    args.seeds = list(dict.fromkeys(int(s) for s in args.seeds.split(",")))
    args.teacher_kwargs = _kwargs(args.teacher_kwargs)
    args.student_kwargs = _kwargs(args.student_kwargs)
    args.method_kwargs = _kwargs(args.method_kwargs)
    args.out = Path(args.out)
    args.teacher_file = None if args.teacher_file is None else Path(args.teacher_file)
    if args.teacher_file is not None and not args.shared_teacher:
        raise ValueError("--teacher_file keeps the one shared teacher: give --shared_teacher")
    unknown = sorted(set(args.method_kwargs) - set(METHODS))
    if unknown or not all(isinstance(v, dict) for v in args.method_kwargs.values()):
        raise ValueError(f"--method_kwargs maps method names to JSON objects, got {unknown}")
    for method in dict.fromkeys([*args.methods, *args.method_kwargs]):
        terms_of(method, args)
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
    for name in ("limit_train", "limit_test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1")


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


def method_config(method: str, args: argparse.Namespace) -> run_lib.RunConfig:
    """The `tfdistill run` config whose distil stage trains as `method` does."""
    beta = {"at": args.at_beta, "at+kd": args.at_beta, "gat": args.gat_beta}.get(method)
    if method.endswith("fitnet"):
        beta = args.hint_beta
    return run_lib.RunConfig(
        out="",
        dataset=args.dataset,
        teacher=args.teacher,
        student=args.student,
        method=RUN_METHOD.get(method, method),
        method_kwargs=args.method_kwargs.get(method, {}),
        beta=beta,
        alpha=args.alpha,
        temperature=args.temperature,
    )


@dataclasses.dataclass(frozen=True)
class Terms:
    """What the Distiller is given for one method."""

    alpha: float
    loss: Any  # compile(distillation_loss_fn=...); None: KD at the temperature
    features: Any  # Distiller(features=...); None: logits only


def terms_of(method: str, args: argparse.Namespace) -> Terms:
    """`method`'s alpha, soft term and feature term, built as `training.distil` builds them."""
    if method == "scratch":
        return Terms(1.0, None, None)
    config = method_config(method, args)
    alpha = 1.0 if config.method in LABELS_ONLY else args.alpha
    return Terms(alpha, training.distillation_loss_of(config), training.features_of(config))


def describe(term: Any) -> str | None:
    """A term as its class and settings, for the JSON."""
    if term is None:
        return None
    if hasattr(term, "get_config"):
        skip = ("name", "reduction", "dtype")
        config = {k: v for k, v in term.get_config().items() if k not in skip}
        return f"{type(term).__name__}({json.dumps(config, default=str)})"
    return repr(term)


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
    terms = terms_of(method, args)
    steps_per_epoch = math.ceil(len(ds.x_train) / args.batch_size)

    start = time.perf_counter()
    train = training_stream(ds, args, seed, teacher if cached else None)
    cache_seconds = time.perf_counter() - start if cached else 0.0
    distiller = Distiller(student, teacher, features=terms.features)
    distiller.compile(
        optimizer=args.recipe.make_optimizer(args.learning_rate, steps_per_epoch * args.epochs),
        metrics=["accuracy"],
        alpha=terms.alpha,
        temperature=args.temperature,
        distillation_loss_fn=terms.loss,
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
        "alpha": terms.alpha,
        "temperature": args.temperature,
        "distillation_loss": describe(terms.loss),
        "features": describe(terms.features),
        "steps": steps_per_epoch * args.epochs,
        "final_train_logs": {k: float(v[-1]) for k, v in history.history.items()},
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict], teachers: list[dict], args: argparse.Namespace) -> dict:
    """Accuracy in % per (setting, method) over seeds, the paired difference to scratch, mean
    training seconds per method."""
    cells: dict[str, dict[str, dict]] = {}
    for setting in args.settings:
        by_method = {
            method: {
                r["seed"]: 100 * r["accuracy"]
                for r in runs
                if r["setting"] == setting and r["method"] == method
            }
            for method in args.methods
        }
        cells[setting] = {}
        for method, accs in by_method.items():
            mean, std = mean_std(list(accs.values()))
            cell = {"accuracy_mean": mean, "accuracy_std": std, "error_mean": 100 - mean}
            cell["seeds"] = len(accs)
            scratch = by_method.get("scratch", {})
            paired = [accs[seed] - scratch[seed] for seed in accs if seed in scratch]
            if method != "scratch" and paired:
                cell["vs_scratch_mean"], cell["vs_scratch_std"] = mean_std(paired)
            cells[setting][method] = cell
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
    show_error = args.preset == "cifar_wrn"
    paired = "scratch" in args.methods and len(args.methods) > 1
    header = ["method"]
    for setting in args.settings:
        header.append(f"{_setting_label(setting, args)} acc %")
        if show_error:
            header.append(f"{setting} err %")
        if paired:
            header.append(f"{setting} Δ scratch")
    if args.preset:
        header.append("paper err %" if show_error else "papers, CIFAR-100 %")
    header.append("train s")
    rows = [header]
    paper = PAPER_ERRORS if show_error else REFERENCE_ACCURACY

    def row(name: str, cells: list[dict], seconds: str) -> list[str]:
        out = [name]
        for cell in cells:
            out.append(f"{cell['accuracy_mean']:.2f} ± {cell['accuracy_std']:.2f}")
            if show_error:
                out.append(f"{cell['error_mean']:.2f}")
            if paired and "vs_scratch_mean" in cell:
                out.append(f"{cell['vs_scratch_mean']:+.2f} ± {cell['vs_scratch_std']:.2f}")
            elif paired:
                out.append("")
        if args.preset:
            out.append(str(paper.get(name, "")))
        return [*out, seconds]

    for method in args.methods:
        cells = [summary["accuracy"][setting][method] for setting in args.settings]
        rows.append(row(method, cells, f"{summary['train_seconds_mean'][method]:.1f}"))
    teacher = summary["teacher"]
    rows.append(row("teacher", [teacher] * len(args.settings), ""))
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
    teacher = "one teacher (first seed) for every seed" if args.shared_teacher else "per seed"
    text = (
        f"{what}{ds.name} ({len(ds.x_train)} train / {len(ds.x_test)} test), teacher "
        f"{args.teacher} {json.dumps(args.teacher_kwargs)} ({teacher}), student {args.student} "
        f"{json.dumps(args.student_kwargs)}, {args.teacher_epochs} teacher / {args.epochs} "
        f"student epochs, batch {args.batch_size}, seeds {','.join(map(str, args.seeds))}. "
        "Test accuracy in %, mean ± sample std over seeds; Δ scratch: per seed method − scratch "
        "(same initial weights and batches), mean ± sample std; the teacher row is the same "
        "teacher in every column; train s: mean wall seconds of a student's training."
    )
    if args.preset == "cifar_wrn":
        text += f" Paper: {PAPER}."
    elif args.preset:
        text += f" Papers: {REFERENCE}."
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


def shown(path: Path | str) -> str:
    """`path` relative to the repository when inside it (as the JSON records it)."""
    root = Path(__file__).resolve().parents[1]
    path = Path(path).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def config_json(args: argparse.Namespace, ds: data_lib.Dataset) -> dict:
    config = {
        key: (shown(value) if isinstance(value, Path) else value)
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


def weights_digest(model: keras.Model) -> str:
    """sha256 of the model's weights, to recognise the same teacher in another invocation."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def get_teacher(
    args: argparse.Namespace, ds: data_lib.Dataset, seed: int
) -> tuple[keras.Model, dict]:
    """The teacher of `seed`, trained; or with --teacher_file loaded when the file exists (and
    saved there when it is trained)."""
    path = args.teacher_file
    began = time.perf_counter()
    loaded = path is not None and path.is_file()
    if loaded:
        teacher, _ = training.load_teacher(path, ds)
    else:
        keras.utils.set_random_seed(seed)
        teacher = train_teacher(args, ds, seed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            teacher.save(path)
    seconds = round(time.perf_counter() - began, 2)
    accuracy = training.accuracy(teacher, ds, args.batch_size)
    error = f", err {100 * (1 - accuracy):.2f}%" if args.preset == "cifar_wrn" else ""
    how = f"loaded from {path}" if loaded else f"trained in {seconds:.1f} s"
    print(f"seed {seed}: teacher acc {accuracy:.2%}{error} ({how})", flush=True)
    record = {
        "seed": seed,
        "accuracy": accuracy,
        "train_seconds": None if loaded else seconds,
        "file": None if path is None else shown(path),
        "loaded": loaded,
        "weights_sha256": weights_digest(teacher),
    }
    return teacher, record


def setting_data(
    ds: data_lib.Dataset, setting: str, args: argparse.Namespace, seed: int
) -> tuple[data_lib.Dataset, int]:
    """The training data of `setting` (few: labels masked but a few per class) and the number
    of visible labels."""
    if setting != "few":
        return ds, len(ds.y_train)
    keep = data_lib.label_subset(ds.y_train, args.labels_per_class, seed=seed)
    return dataclasses.replace(ds, y_train=data_lib.mask_labels(ds.y_train, keep)), len(keep)


def run_seeds(args: argparse.Namespace, ds: data_lib.Dataset) -> tuple[list[dict], list[dict]]:
    """Every (seed, setting, method) run, and the teacher records."""
    runs: list[dict] = []
    teachers: list[dict] = []
    teacher = None
    for seed in args.seeds:
        if teacher is None or not args.shared_teacher:
            teacher, record = get_teacher(args, ds, seed)
            teachers.append(record)
        keras.utils.set_random_seed(seed)
        init = training.classifier(args.student, args.student_kwargs, ds, "student").get_weights()
        for setting in args.settings:
            train_ds, labeled = setting_data(ds, setting, args, seed)
            for method in args.methods:
                record = train_method(method, train_ds, teacher, init, args, seed)
                record = {"setting": setting, "labeled": labeled, **record}
                runs.append(record)
                error = ""
                if args.preset == "cifar_wrn":
                    error = f", err {100 * record['error']:.2f}%"
                print(
                    f"[{setting}] {method:<9} seed {seed}: acc {record['accuracy']:.2%}{error} "
                    f"({record['train_seconds']:.1f} s)",
                    flush=True,
                )
    return runs, teachers


MERGE_KEYS = (
    "dataset", "data_dir", "settings", "labels_per_class", "teacher", "teacher_kwargs",
    "student", "student_kwargs", "teacher_epochs", "epochs", "batch_size", "learning_rate",
    "teacher_learning_rate", "alpha", "temperature", "seeds", "shared_teacher", "limit_train",
    "limit_test", "recipe", "dataset_info",
)  # fmt: skip


def previous_payload(args: argparse.Namespace, config: dict) -> dict | None:
    """With --merge, the JSON already in --out, once its config matches this one (but for the
    methods and their own settings); None without --merge or without the file."""
    if not (args.merge and args.out.is_file()):
        return None
    previous = json.loads(args.out.read_text())
    differ = [key for key in MERGE_KEYS if previous["config"].get(key) != config.get(key)]
    if differ:
        raise SystemExit(f"--merge: {args.out} was run with other {', '.join(differ)}")
    return previous


def merged(
    previous: dict | None, args: argparse.Namespace, runs: list[dict], teachers: list[dict]
) -> tuple[list[dict], list[dict], list[dict]]:
    """These runs with the earlier runs of the other methods, the teachers (the earlier
    records, which hold the training time, when the weights are the same) and the earlier
    invocations."""
    if previous is None:
        return runs, teachers, []
    digests = [[t["weights_sha256"] for t in ts] for ts in (previous["teachers"], teachers)]
    if digests[0] != digests[1]:
        raise SystemExit(
            f"--merge: the teachers of {args.out} are not these (give --teacher_file with "
            "--shared_teacher to reuse one)"
        )
    kept = [r for r in previous["runs"] if r["method"] not in args.methods]
    return kept + runs, previous["teachers"], previous.get("invocations", [])


def environment() -> dict:
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tfdistill": tfdistill.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def print_table(
    rows: list[list[str]], summary: dict, teachers: int, args: argparse.Namespace
) -> None:
    print()
    print(format_text(rows))
    teacher = summary["teacher"]
    paper = f" (error {teacher['error_mean']:.2f} %; paper 6.31 %)"
    print(
        f"teacher: {teacher['accuracy_mean']:.2f} ± {teacher['accuracy_std']:.2f} % accuracy "
        f"over {teachers} teacher(s)" + (paper if args.preset == "cifar_wrn" else "")
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ds = load_dataset(args)
    config = config_json(args, ds)
    previous = previous_payload(args, config)
    print(caption(args, ds), flush=True)
    started = time.perf_counter()
    runs, teachers = run_seeds(args, ds)
    total = time.perf_counter() - started
    invocation = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "methods": list(args.methods),
        "total_seconds": round(total, 1),
        "environment": environment(),
    }
    runs, teachers, invocations = merged(previous, args, runs, teachers)
    args.methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    config["methods"] = args.methods
    summary = summarize(runs, teachers, args)
    rows = table_rows(summary, args)
    print_table(rows, summary, len(teachers), args)
    print(f"total {total:.0f} s")

    paper = None
    if args.preset == "cifar_wrn":
        paper = {"source": PAPER, "errors_percent": PAPER_ERRORS}
    elif args.preset:
        paper = {"source": REFERENCE, "accuracy_percent": REFERENCE_ACCURACY}
    payload = {
        "benchmark": "ablation",
        **{k: invocation[k] for k in ("timestamp", "command")},
        "config": config,
        "environment": invocation["environment"],
        "paper": paper,
        "teachers": teachers,
        "runs": runs,
        "summary": summary,
        "total_seconds": round(sum(i["total_seconds"] for i in [*invocations, invocation]), 1),
        "invocations": [*invocations, invocation],
    }
    out = report.write_json(payload, args.out)
    markdown = format_markdown(rows, caption(args, ds))
    md = write_atomic(out.with_suffix(".md"), lambda f: f.write(markdown))
    print(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
