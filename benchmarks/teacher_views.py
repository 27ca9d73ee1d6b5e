"""Cached teacher views (`tfdistill run --teacher_views=K`) against the online teacher: speed
and accuracy, measured side by side in one process per section.

    python benchmarks/teacher_views.py                    # every section, ~20-25 min on 2 cores
    python benchmarks/teacher_views.py --quick            # smoke run, about a minute
    python benchmarks/teacher_views.py --sections speed   # one section; the others are kept

Sections (each replaces its own key in the JSON; the others are kept from earlier runs):
  speed   CIFAR-10, augmentation on, ResNet-20 teacher, the run's default student (convnet
          4-8-16). Three workloads, interleaved: (a) the student alone on the augmented stream,
          (b) the Distiller with the teacher online on the same stream (as `training.distil`
          builds it), (c) the Distiller on K stored views (`training.teacher_view_elements`).
          Labelling is timed once; stage time for E epochs = labelling + E epochs at the
          steady rate (b and c), so (b)/(c) is the distil stage's speed-up.
  digits  accuracy on the embedded digits, `tfdistill run`'s defaults with augmentation: a
          teacher per seed, then the distil stage online and with each K.
  cifar   accuracy on a class-balanced subset of the CIFAR-10 files, one ResNet-20 teacher
          (trained once) reused for every seed, then the distil stage online and with each K.
The accuracy sections call the stage functions `tfdistill run` calls (`training.train_teacher`,
`distillation_elements` / `teacher_view_elements`, `distil`, `accuracy`), seeded as the run
seeds its stages, without the scratch, export and bench stages.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdistill import data  # noqa: E402
from tfdistill.artifacts import write_atomic  # noqa: E402
from tfdistill.batches import INPUTS, TEACHER_LOGITS, VIEW_LOGITS, VIEW_PARAMS  # noqa: E402
from tfdistill.distiller import Distiller  # noqa: E402
from tfdistill.profile import profile  # noqa: E402
from tfdistill.run import feed, training  # noqa: E402
from tfdistill.run.config import RunConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-subset"
SECTIONS = ("speed", "digits", "cifar")
DISTIL_STAGE = 3  # the run seeds stage i with seed + i: data, teacher, scratch, distil
TEACHER_STAGE = 1
TARGETS = {"views_over_student": 0.8, "stage_speedup": 2.0}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; `--quick` shrinks every size to a smoke run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--data_dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=_ints, default=(0, 1, 2))
    parser.add_argument("--views", type=_ints, default=(2, 4, 8), help="K of the accuracy runs")
    parser.add_argument("--speed_views", type=int, default=4, help="K of the speed section")
    parser.add_argument("--stage_epochs", type=_ints, default=(10, 30), help="E, stage times")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=30, help="train steps per chunk")
    parser.add_argument("--speed_train", type=int, default=0, help="CIFAR images (0: all)")
    parser.add_argument("--cifar_train", type=int, default=5000, help="balanced subset size")
    parser.add_argument("--cifar_teacher_epochs", type=int, default=6)
    parser.add_argument("--cifar_student_epochs", type=int, default=10)
    parser.add_argument("--digits_teacher_epochs", type=int, default=10)
    parser.add_argument("--digits_student_epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    args.sections = tuple(s for s in args.sections.split(",") if s)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if args.quick:
        args.seeds, args.views, args.rounds, args.steps = (0, 1), (2,), 2, 3
        args.speed_train, args.cifar_train, args.stage_epochs = 512, 500, (2,)
        args.cifar_teacher_epochs, args.cifar_student_epochs = 1, 1
        args.digits_teacher_epochs, args.digits_student_epochs = 1, 2
    name = "teacher_views_quick.json" if args.quick else "teacher_views.json"
    args.out = args.out or RESULTS / name
    return args


def random_cifar(count: int, seed: int = 0) -> data.Dataset:
    """A CIFAR-shaped stand-in (uint8-valued float32 pixels, 10 classes) when the files are
    absent: good for timing, meaningless for accuracy."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.float32)
        return x, rng.integers(0, 10, n).astype(np.int64)

    (xa, ya), (xb, yb) = split(count), split(max(count // 5, 10))
    names = tuple(str(i) for i in range(10))
    return data.Dataset("random_cifar", xa, ya, xb, yb, 10, names, pixel_max=255.0)


def load_cifar(data_dir: Path, train: int) -> tuple[data.Dataset, str]:
    """The CIFAR-10 files in `data_dir` as raw pixels, cut to a class-balanced subset of
    `train` training images (0: all), and where they came from."""
    if (data_dir / "cifar-10-batches-py").is_dir():
        ds = data.load("cifar10", data_dir=str(data_dir)).raw_pixels()
        source = str(data_dir)
    else:
        print(f"!! {data_dir} is absent: random CIFAR-shaped data (accuracy meaningless)")
        ds, source = random_cifar(train or 10000), "random (CIFAR-10 files absent)"
    if train and train < len(ds.x_train):
        per_class = train // ds.num_classes
        rows = np.sort(
            np.concatenate([np.flatnonzero(ds.y_train == c)[:per_class] for c in range(10)])
        )
        ds = dataclasses.replace(ds, x_train=ds.x_train[rows], y_train=ds.y_train[rows])
    return ds, source


def cifar_config(args: argparse.Namespace, out: Path, **changes: Any) -> RunConfig:
    """The run's config for CIFAR-10 with a ResNet-20 teacher and the default student."""
    return RunConfig(
        out=str(out),
        dataset="cifar10",
        data_dir=str(args.data_dir),
        teacher="resnet",
        teacher_kwargs={"depth": 20},
        augment=True,
        **changes,
    )


def compiled_distiller(
    config: RunConfig, ds: data.Dataset, teacher: keras.Model, init: list
) -> Distiller:
    """The Distiller `training.distil` builds and compiles, not yet fitted."""
    student = training.classifier(config.student, config.student_kwargs, ds, "student_distilled")
    student.set_weights(init)
    distiller = Distiller(student, teacher, features=training.features_of(config))
    steps = training.steps_of(config, ds, config.student_epochs)
    distiller.compile(
        optimizer=training.adam(config.student_learning_rate, steps, config.lr_schedule),
        metrics=["accuracy"],
        alpha=config.alpha,
        temperature=config.temperature,
        jit_compile=training.use_xla(config, distiller),
    )
    return distiller


def chunk_of(model: keras.Model, stream: feed.Stream, steps: int) -> Callable[[], None]:
    """A workload: `steps` calls of `model`'s compiled train function on a persistent
    iterator over `stream`, outputs fetched."""
    model.make_train_function()
    iterator = iter(stream(0).prefetch(tf.data.AUTOTUNE))

    def run() -> None:
        for _ in range(steps):
            logs = model.train_function(iterator)
        tf.nest.map_structure(np.asarray, logs)

    return run


def check_views(stream: feed.Stream, teacher: keras.Model) -> float:
    """The largest |teacher(stored view) - stored logits| over one batch of the views stream:
    the student's rebuilt view must be the one the teacher labelled (float16 storage)."""
    x, _ = next(iter(stream(0)))
    again = teacher(x[INPUTS], training=False)
    return float(np.max(np.abs(np.asarray(again) - np.asarray(x[TEACHER_LOGITS]))))


def speed_workloads(
    args: argparse.Namespace, work: Path
) -> tuple[dict[str, Callable[[], None]], dict]:
    """The three workloads (a) student, (b) online, (c) views, and what describes them."""
    ds, source = load_cifar(args.data_dir, args.speed_train)
    config = cifar_config(args, work, teacher_views=args.speed_views)
    keras.utils.set_random_seed(0)
    teacher = training.classifier(config.teacher, config.teacher_kwargs, ds, "teacher")
    student = training.classifier(config.student, config.student_kwargs, ds, "student")
    init = student.get_weights()
    labeled = training.labeled_subset(config, ds)
    both = feed.sizes_of(ds, None, "both")
    training.compile_classifier(
        student, config, config.student_learning_rate, training.steps_of(config, ds, 10)
    )
    alone = feed.stream_of(config, ds, (ds.x_train, ds.y_train), [(32, 32)])
    online_elements = training.distillation_elements(config, ds, teacher, labeled)
    online = feed.stream_of(config, ds, online_elements, both)
    started = time.perf_counter()
    rows, labels, seconds = training.teacher_view_elements(config, ds, teacher, labeled, work)
    labelling = time.perf_counter() - started
    stored = feed.stream_of(config, ds, (rows, labels), both)
    work_fns = {
        "student": chunk_of(student, alone, args.steps),
        "online": chunk_of(compiled_distiller(config, ds, teacher, init), online, args.steps),
        "views": chunk_of(compiled_distiller(config, ds, teacher, init), stored, args.steps),
    }
    cost_t, cost_s = profile(teacher), profile(student)
    info = {
        "data": source,
        "train_images": len(ds.x_train),
        "batch_size": config.batch_size,
        "teacher": {"name": "resnet", "kwargs": {"depth": 20}, "params": cost_t.params},
        "student": {"name": config.student, "kwargs": config.student_kwargs},
        "teacher_macs": cost_t.macs,
        "student_params": cost_s.params,
        "student_macs": cost_s.macs,
        "param_ratio": cost_t.params / cost_s.params,
        "mac_ratio": cost_t.macs / cost_s.macs,
        "views": args.speed_views,
        "labelling_s": labelling,
        "labelling_s_reported_by_run": seconds,
        "views_bytes": int(rows[VIEW_PARAMS].nbytes + rows[VIEW_LOGITS].nbytes),
        "view_check_max_abs_logit_error": check_views(stored, teacher),
        "xla": training.use_xla(config, student),
    }
    return work_fns, info


def speed_section(args: argparse.Namespace) -> dict:
    """Part 1: images/s of (a), (b), (c) interleaved; ratios; stage times for E epochs."""
    from tfdistill.bench import interleave, with_cpu

    with tempfile.TemporaryDirectory(prefix="teacher_views_") as folder:
        work, info = speed_workloads(args, Path(folder))
        cpu: dict[str, list[float]] = {}
        timed = interleave(with_cpu(work, cpu), rounds=args.rounds, warmup=1)
    images = args.steps * info["batch_size"]
    rates = {name: images / timed.median(name) for name in work}
    per_cpu = {name: images / statistics.median(cpu[name][1:]) for name in work}
    pairs = {"views_over_student": ("student", "views"), "views_over_online": ("online", "views")}
    pairs["online_over_student"] = ("student", "online")
    ratios = {key: timed.ratio(*pair) for key, pair in pairs.items()}
    paired = {key: timed.paired_ratio(*pair) for key, pair in pairs.items()}
    cpu_ratios = {key: per_cpu[b] / per_cpu[a] for key, (a, b) in pairs.items()}
    stages = [stage_time(epochs, info, rates) for epochs in args.stage_epochs]
    targets = {
        "views_over_student": ratios["views_over_student"] >= TARGETS["views_over_student"],
        "stage_speedup": stages[0]["speedup_online_over_views"] >= TARGETS["stage_speedup"],
    }
    print_speed(rates, per_cpu, ratios, paired, stages, info)
    return {
        **info,
        "images_per_chunk": images,
        "images_per_s": rates,
        "images_per_cpu_s": per_cpu,
        "ratios": ratios,
        "paired_ratios": paired,
        "cpu_ratios": cpu_ratios,
        "stage": stages,
        "targets": {k: {"threshold": TARGETS[k], "held": v} for k, v in targets.items()},
        "seconds_per_chunk": timed.samples,
        "cpu_seconds_per_chunk": {name: values[1:] for name, values in cpu.items()},
        "orders": timed.orders,
    }


def stage_time(epochs: int, info: dict, rates: dict) -> dict:
    """Seconds of a distil stage of `epochs` over the training images at the steady rates:
    online, and labelling + training from views (the student alone for reference)."""
    images = epochs * info["train_images"]
    stage = {
        "epochs": epochs,
        "student_s": images / rates["student"],
        "online_s": images / rates["online"],
        "views_training_s": images / rates["views"],
    }
    stage["views_s"] = info["labelling_s"] + stage["views_training_s"]
    stage["speedup_online_over_views"] = stage["online_s"] / stage["views_s"]
    return stage


def print_speed(
    rates: dict, per_cpu: dict, ratios: dict, paired: dict, stages: list, info: dict
) -> None:
    """The speed section's table."""
    print(f"teacher/student: {info['param_ratio']:.0f}x params, {info['mac_ratio']:.0f}x MACs")
    for name, rate in rates.items():
        print(f"{name:>8}: {rate:8.0f} images/s  {per_cpu[name]:8.0f} images/CPU-s")
    for key, value in ratios.items():
        print(f"{key}: {value:.2f} (paired {paired[key]:.2f})")
    print(f"labelling K={info['views']}: {info['labelling_s']:.1f} s")
    for stage in stages:
        print(
            f"stage of {stage['epochs']} epochs: online {stage['online_s']:.0f} s, views "
            f"{stage['views_s']:.0f} s -> {stage['speedup_online_over_views']:.2f}x"
        )
    print(f"view check: max |logit error| {info['view_check_max_abs_logit_error']:.4f}")


def distil_once(
    config: RunConfig, ds: data.Dataset, teacher: keras.Model, init: list, work: Path
) -> dict:
    """The distil stage of `config` (online, or from `config.teacher_views` stored views):
    test accuracy, training and labelling seconds."""
    labeled = training.labeled_subset(config, ds)
    keras.utils.set_random_seed(config.seed + DISTIL_STAGE)
    started = time.perf_counter()
    labelling = None
    if config.teacher_views:
        folder = work / f"views_{config.seed}_{config.teacher_views}"
        rows, labels, labelling = training.teacher_view_elements(
            config, ds, teacher, labeled, folder
        )
        elements: tuple = (rows, labels)
    else:
        elements = training.distillation_elements(config, ds, teacher, labeled)
    trained = training.distil(config, ds, teacher, elements, init)
    seconds = time.perf_counter() - started
    acc = training.accuracy(trained.model, ds, config.batch_size)
    return {"accuracy": acc, "stage_s": seconds, "labelling_s": labelling}


def seed_runs(
    base: RunConfig, ds: data.Dataset, teacher: keras.Model, views: tuple, work: Path
) -> dict[str, dict]:
    """Online and each K of `views` for the seed of `base`, from the same teacher and initial
    student weights (drawn at the seed, as the run's teacher stage draws them)."""
    keras.utils.set_random_seed(base.seed)
    init = training.classifier(base.student, base.student_kwargs, ds, "student").get_weights()
    results = {}
    for count in (0, *views):
        config = dataclasses.replace(base, teacher_views=count)
        name = "online" if count == 0 else f"K={count}"
        results[name] = distil_once(config, ds, teacher, init, work)
        print(f"  seed {base.seed} {name}: {results[name]}", flush=True)
    return results


def summarize(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Mean ± sample std of accuracy per setting; per-seed differences against online; whether
    each K's mean lies within 2 std (online's, over seeds) of online's."""
    settings = list(next(iter(per_seed.values())))
    online = [runs["online"]["accuracy"] for runs in per_seed.values()]
    spread = statistics.stdev(online) if len(online) > 1 else 0.0
    table = {}
    for name in settings:
        accs = [runs[name]["accuracy"] for runs in per_seed.values()]
        diffs = [a - b for a, b in zip(accs, online, strict=True)]
        stages = [runs[name]["stage_s"] for runs in per_seed.values()]
        table[name] = {
            "mean": statistics.mean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "diff_vs_online_mean": statistics.mean(diffs),
            "diff_vs_online_std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
            "within_2std_of_online": abs(statistics.mean(accs) - statistics.mean(online))
            <= 2 * spread,
            "stage_s_mean": statistics.mean(stages),
        }
        row = table[name]
        print(f"{name:>7}: {100 * row['mean']:.2f} ± {100 * row['std']:.2f} %")
    return table


def digits_section(args: argparse.Namespace) -> dict:
    """Part 2 (i): the embedded digits with the run's defaults and augmentation; a teacher
    per seed (the run's teacher stage), then online and each K."""
    ds = data.load("digits").raw_pixels()
    per_seed, teachers = {}, {}
    with tempfile.TemporaryDirectory(prefix="teacher_views_") as folder:
        for seed in args.seeds:
            base = RunConfig(
                out=folder,
                augment=True,
                seed=seed,
                teacher_epochs=args.digits_teacher_epochs,
                student_epochs=args.digits_student_epochs,
            )
            keras.utils.set_random_seed(seed + TEACHER_STAGE)
            teacher = training.train_teacher(base, ds).model
            teachers[seed] = training.accuracy(teacher, ds, base.batch_size)
            print(f"digits seed {seed}: teacher {teachers[seed]:.4f}", flush=True)
            per_seed[seed] = seed_runs(base, ds, teacher, args.views, Path(folder))
    return {
        "config": {
            "dataset": "digits",
            "augment": True,
            "train_images": len(ds.x_train),
            "test_images": len(ds.x_test),
            "labels_per_class": base.labels_per_class,
            "teacher": {"name": base.teacher, "kwargs": base.teacher_kwargs},
            "student": {"name": base.student, "kwargs": base.student_kwargs},
            "teacher_epochs": base.teacher_epochs,
            "student_epochs": base.student_epochs,
            "teacher_per_seed": True,
        },
        "teacher_accuracy": teachers,
        "per_seed": per_seed,
        "summary": summarize(per_seed),
    }


def cifar_section(args: argparse.Namespace) -> dict:
    """Part 2 (ii): a class-balanced CIFAR-10 subset, one ResNet-20 teacher trained once (seed
    0) and reused for every seed (as `--teacher_weights` would), then online and each K."""
    ds, source = load_cifar(args.data_dir, args.cifar_train)
    per_seed = {}
    with tempfile.TemporaryDirectory(prefix="teacher_views_") as folder:
        first = cifar_config(
            args,
            Path(folder),
            seed=args.seeds[0],
            teacher_epochs=args.cifar_teacher_epochs,
            student_epochs=args.cifar_student_epochs,
        )
        keras.utils.set_random_seed(first.seed + TEACHER_STAGE)
        started = time.perf_counter()
        teacher = training.train_teacher(first, ds).model
        teacher_s = time.perf_counter() - started
        teacher_acc = training.accuracy(teacher, ds, first.batch_size)
        print(f"cifar teacher {teacher_acc:.4f} in {teacher_s:.0f} s", flush=True)
        for seed in args.seeds:
            base = dataclasses.replace(first, seed=seed)
            per_seed[seed] = seed_runs(base, ds, teacher, args.views, Path(folder))
    return {
        "config": {
            "data": source,
            "augment": True,
            "train_images": len(ds.x_train),
            "test_images": len(ds.x_test),
            "labels_per_class": first.labels_per_class,
            "teacher": {"name": "resnet", "kwargs": {"depth": 20}},
            "student": {"name": first.student, "kwargs": first.student_kwargs},
            "teacher_epochs": first.teacher_epochs,
            "student_epochs": first.student_epochs,
            "teacher_per_seed": False,
        },
        "teacher_accuracy": teacher_acc,
        "teacher_train_s": teacher_s,
        "per_seed": per_seed,
        "summary": summarize(per_seed),
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen sections and merges them into the results file."""
    from tfdistill.bench import machine

    args = parse_args(argv)
    payload: dict = {}
    if args.out.is_file():
        payload = json.loads(args.out.read_text())
    run = {"speed": speed_section, "digits": digits_section, "cifar": cifar_section}
    for name in args.sections:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        section = run[name](args)
        section["seconds"] = time.perf_counter() - started
        section["timestamp"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        section["command"] = " ".join(["python benchmarks/teacher_views.py", *sys.argv[1:]])
        payload.setdefault("sections", {})[name] = section
        payload.update(benchmark="teacher_views", machine=machine.describe())
        payload["tensorflow"], payload["keras"] = tf.__version__, keras.__version__
        text = json.dumps(payload, indent=2, default=str) + "\n"
        write_atomic(args.out, lambda f, t=text: f.write(t), mode="w")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
