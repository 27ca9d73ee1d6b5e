"""Training throughput (images/s) of the tfdistill Distiller against the student alone and the
Keras built-in `keras.distillation.Distiller`, measured interleaved in one process.

    python benchmarks/distill_throughput.py            # full run, a few minutes on 2 cores
    python benchmarks/distill_throughput.py --quick    # smoke run, under a minute

Variants (same models, initial weights, optimizer, data and batch size; `--jit default` gives
each its own tool's XLA default, as a user gets it, `--jit on|off` the same setting to all):
  student           the student alone, sparse cross-entropy on logits
  distiller         tfdistill.Distiller(student, teacher), default KL soft-target loss
  distiller_cached  the same Distiller on `cache_teacher_outputs` batches (no teacher pass)
  keras_peer        keras.distillation.Distiller with LogitsDistillation(T=3, KL), weight 0.1
With `--jit default`, also, in the same rounds:
  distiller_noxla, distiller_cached_noxla   the two Distillers with jit_compile=False
  keras_peer_xla                            the peer with jit_compile=True
With `--mixed-precision float16|bfloat16`: distiller_<policy>, its student under that policy.

Each timed chunk calls the compiled `train_function` `--steps` times on a persistent iterator
over a repeated in-memory dataset, so every variant pays the same per-step overhead. Rounds run
the variants round-robin (order rotated each round); the reported rate is the median over rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdistill  # noqa: E402
from tfdistill import data as data_lib  # noqa: E402
from tfdistill import models, precision  # noqa: E402
from tfdistill.artifacts import write_atomic  # noqa: E402

RATIOS = (
    ("distiller", "keras_peer"),
    ("distiller_cached", "keras_peer"),
    ("distiller", "student"),
    ("student", "keras_peer"),
    ("distiller", "distiller_noxla"),
    ("distiller_cached", "distiller_cached_noxla"),
    ("distiller", "keras_peer_xla"),
    ("distiller_cached", "keras_peer_xla"),
    ("distiller_float16", "distiller"),
    ("distiller_bfloat16", "distiller"),
)
TARGETS = {"distiller/keras_peer": 1.0, "distiller_cached/keras_peer": 1.5}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "distill_throughput.json"
TEMPERATURE = 3.0
JIT = {"default": "auto", "on": True, "off": False}
ALPHA = 0.1


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"widths must be comma-separated ints: {text!r}"
        ) from error
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive: {text!r}")
    return widths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher-widths", type=_widths, default=(32, 64, 128))
    parser.add_argument("--teacher-depth", type=int, default=2)
    parser.add_argument("--student-widths", type=_widths, default=(8, 16, 32))
    parser.add_argument("--student-depth", type=int, default=1)
    parser.add_argument("--dataset", choices=("digits", "synthetic"), default="digits")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=25, help="train steps per variant per round")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mixed-precision",
        choices=precision.MIXED_PRECISION,
        default="none",
        help="also time the Distiller with a student built under this mixed policy",
    )
    parser.add_argument(
        "--jit",
        choices=tuple(JIT),
        default="default",
        help="XLA: each tool's own default (tfdistill on, Keras off on CPU), or on/off for all",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 steps: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup_steps = 2, 5, 2
    for name in ("batch_size", "rounds", "steps", "warmup_steps", "teacher_depth", "student_depth"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def load_arrays(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    if name == "digits":
        dataset = data_lib.load("digits")
        return dataset.x_train, dataset.y_train, dataset.num_classes
    rng = np.random.default_rng(seed)
    x = rng.random((2048, 32, 32, 1), dtype=np.float32)
    return x, rng.integers(0, 10, size=2048).astype(np.int64), 10


def batched(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    if len(x) < batch_size:
        raise ValueError(f"{len(x)} examples are fewer than one batch of {batch_size}.")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate)
    return keras.optimizers.Adam(learning_rate)


def student_copy(student: keras.Model, weights: list[np.ndarray]) -> keras.Model:
    clone = keras.models.clone_model(student)
    clone.set_weights(weights)
    return clone


@dataclass
class Variant:
    name: str
    model: keras.Model
    dataset: tf.data.Dataset
    iterator: Iterator | None = None

    def start(self) -> None:
        self.model.make_train_function()
        self.iterator = iter(self.dataset.repeat().prefetch(tf.data.AUTOTUNE))

    def run(self, steps: int) -> tuple[float, float]:
        """Runs `steps` train steps, outputs fetched; returns (wall, process CPU) seconds."""
        train_function: Callable[[Any], Any] = self.model.train_function
        cpu_start, start = time.process_time(), time.perf_counter()
        for _ in range(steps):
            logs = train_function(self.iterator)
        tf.nest.map_structure(np.asarray, logs)
        return time.perf_counter() - start, time.process_time() - cpu_start


def keras_peer(
    teacher: keras.Model, student: keras.Model, optimizer: Any, jit_compile: bool | str
) -> keras.Model:
    """Keras's own `keras.distillation.Distiller`, compiled with the same KD as ours (KL at
    `TEMPERATURE`, student loss weight `ALPHA`)."""
    made = keras.distillation.Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=TEMPERATURE, loss=keras.losses.KLDivergence()
        ),
        student_loss_weight=ALPHA,
    )
    made.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return made


def describe(
    args: argparse.Namespace,
    x: np.ndarray,
    num_classes: int,
    teacher: keras.Model,
    student: keras.Model,
) -> dict[str, Any]:
    """The data and the two networks of the benchmark, for its JSON."""
    return {
        "dataset": args.dataset,
        "train_examples": int(len(x)),
        "input_shape": list(x.shape[1:]),
        "num_classes": num_classes,
        "teacher": {
            "name": teacher.name,
            "widths": list(args.teacher_widths),
            "depth": args.teacher_depth,
            "params": int(teacher.count_params()),
        },
        "student": {
            "name": student.name,
            "widths": list(args.student_widths),
            "depth": args.student_depth,
            "params": int(student.count_params()),
        },
    }


def build_variants(
    args: argparse.Namespace,
) -> tuple[list[Variant], dict[str, Any]]:
    keras.utils.set_random_seed(args.seed)
    x, y, num_classes = load_arrays(args.dataset, args.seed)
    input_shape = x.shape[1:]
    teacher = models.get(
        "convnet",
        num_classes=num_classes,
        input_shape=input_shape,
        widths=args.teacher_widths,
        depth=args.teacher_depth,
    )

    def student_net() -> keras.Model:
        return models.get(
            "convnet",
            num_classes=num_classes,
            input_shape=input_shape,
            widths=args.student_widths,
            depth=args.student_depth,
        )

    student = student_net()
    weights = student.get_weights()
    base = batched(x, y, args.batch_size)

    def optimizer() -> keras.optimizers.Optimizer:
        return make_optimizer(args.optimizer, args.learning_rate)

    jit = JIT[args.jit]
    plain = student_copy(student, weights)
    plain.compile(
        optimizer=optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )

    def distiller(jit_compile: bool | str, network: keras.Model | None = None) -> keras.Model:
        made = tfdistill.Distiller(network or student_copy(student, weights), teacher)
        made.compile(
            optimizer=optimizer(), alpha=ALPHA, temperature=TEMPERATURE, jit_compile=jit_compile
        )
        return made

    start = time.perf_counter()
    cached = data_lib.cache_teacher_outputs(base, teacher)
    cache_seconds = time.perf_counter() - start

    def peer(jit_compile: bool | str) -> keras.Model:
        return keras_peer(teacher, student_copy(student, weights), optimizer(), jit_compile)

    variants = [
        Variant("student", plain, base),
        Variant("distiller", distiller(jit), base),
        Variant("distiller_cached", distiller(jit), cached),
        Variant("keras_peer", peer(jit), base),
    ]
    if args.jit == "default":
        variants += [
            Variant("distiller_noxla", distiller(False), base),
            Variant("distiller_cached_noxla", distiller(False), cached),
            Variant("keras_peer_xla", peer(True), base),
        ]
    if args.mixed_precision != "none":
        with precision.dtype_policy(precision.policy_name(args.mixed_precision)):
            mixed = student_net()
        mixed.set_weights(weights)
        variants.append(Variant(f"distiller_{args.mixed_precision}", distiller(jit, mixed), base))
    info = describe(args, x, num_classes, teacher, student)
    info["cache_build_seconds"] = cache_seconds
    info["jit_compile"] = {v.name: bool(v.model.jit_compile) for v in variants}
    return variants, info


def measure(
    variants: list[Variant], args: argparse.Namespace
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-round images per wall second and images per process-CPU second, per variant."""
    for variant in variants:
        variant.start()
        variant.run(args.warmup_steps)
    images = args.steps * args.batch_size
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu_rates: dict[str, list[float]] = {v.name: [] for v in variants}
    for round_index in range(args.rounds):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            wall, cpu = variant.run(args.steps)
            rates[variant.name].append(images / wall)
            cpu_rates[variant.name].append(images / max(cpu, 1e-9))
        summary = "  ".join(f"{name} {values[-1]:8.0f}" for name, values in rates.items())
        print(f"round {round_index + 1}/{args.rounds}: {summary}", flush=True)
    return rates, cpu_rates


def ratio_key(a: str, b: str) -> str:
    return f"{a}/{b}"


def _pairs(rates: dict) -> list[tuple[str, str]]:
    """The RATIOS whose two variants ran."""
    return [(a, b) for a, b in RATIOS if a in rates and b in rates]


def summarize(rates: dict[str, list[float]]) -> tuple[dict, dict, dict]:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratios = {ratio_key(a, b): medians[a] / medians[b] for a, b in _pairs(rates)}
    targets = {key: ratios[key] >= threshold for key, threshold in TARGETS.items()}
    return medians, ratios, targets


def paired_ratios(rates: dict[str, list[float]]) -> dict[str, float]:
    """Median over rounds of the within-round ratio: cancels load that lasts a whole round."""
    return {
        ratio_key(a, b): statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))
        for a, b in _pairs(rates)
    }


def print_report(
    rates: dict[str, list[float]],
    medians: dict,
    ratios: dict,
    targets: dict,
    cpu_medians: dict,
    cpu_ratios: dict,
    paired: dict,
    info: dict,
) -> None:
    print()
    print(f"{'variant':<18}{'median img/s':>14}{'min':>10}{'max':>10}{'img/CPU-s':>12}")
    for name in rates:
        values = rates[name]
        print(
            f"{name:<18}{medians[name]:>14.0f}{min(values):>10.0f}{max(values):>10.0f}"
            f"{cpu_medians[name]:>12.0f}"
        )
    print()
    print(f"{'ratio (of medians)':<30}{'wall':>7}{'CPU':>7}{'paired':>8}")
    for key, value in ratios.items():
        print(f"{key:<30}{value:>6.2f}x{cpu_ratios[key]:>6.2f}x{paired[key]:>7.2f}x")
    print()
    for key, held in targets.items():
        print(f"target {key} >= {TARGETS[key]:.1f}x: {'yes' if held else 'NO'}")
    print(f"teacher-output cache built in {info['cache_build_seconds']:.2f} s")


def write_json(path: Path, payload: dict) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(payload, indent=2) + "\n"), mode="w")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants, info = build_variants(args)
    print(
        f"teacher {info['teacher']['params']:,} params, student {info['student']['params']:,} "
        f"params, batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps, "
        f"jit_compile {info['jit_compile']}",
        flush=True,
    )
    rates, cpu_rates = measure(variants, args)
    medians, ratios, targets = summarize(rates)
    cpu_medians, cpu_ratios, cpu_targets = summarize(cpu_rates)
    paired = paired_ratios(rates)
    print_report(rates, medians, ratios, targets, cpu_medians, cpu_ratios, paired, info)
    payload = {
        "benchmark": "distill_throughput",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "config": {
            **info,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "warmup_steps": args.warmup_steps,
            "optimizer": args.optimizer,
            "learning_rate": args.learning_rate,
            "alpha": ALPHA,
            "temperature": TEMPERATURE,
            "seed": args.seed,
            "jit": args.jit,
            "quick": args.quick,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tfdistill": tfdistill.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "timing": "median over rounds of images / perf_counter seconds for `steps` calls "
            "of the compiled train_function; variants round-robin, order rotated each round",
        },
        "rates_per_round": rates,
        "median_images_per_second": medians,
        "ratios": ratios,
        "paired_ratios": paired,
        "targets": {
            key: {"threshold": TARGETS[key], "held": held} for key, held in targets.items()
        },
        "cpu": {
            "note": "images per process-CPU second (all threads); less sensitive to other load "
            "on the machine, blind to parallelism",
            "rates_per_round": cpu_rates,
            "median_images_per_cpu_second": cpu_medians,
            "ratios": cpu_ratios,
            "targets": cpu_targets,
        },
    }
    write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
