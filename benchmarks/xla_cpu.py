"""Distiller training steps with XLA against without, per student family, interleaved in one
process: the measurement behind `tfdistill.distiller.resolve_jit_compile`'s CPU exception for
depthwise, separable and grouped convolutions.

    python benchmarks/xla_cpu.py                   # three families, ~5 min on 2 cores
    python benchmarks/xla_cpu.py --families resnet --rounds 9

For each family: two Distillers with the same student weights and the `tfdistill run` teacher
(convnet 16-32-64 ×2) on the digits at 32×32×1, one compiled with XLA, one without; the first
step (tracing and compilation) is timed once, then chunks of `--steps` steps alternate, the
order rotated each round. Prints and writes `results/xla_cpu.json`: seconds of the first step,
median ms per step, and the ratio XLA / no XLA (above 1: XLA is slower).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfdistill  # noqa: E402
from tfdistill import data, models  # noqa: E402
from tfdistill.artifacts import write_atomic  # noqa: E402
from tfdistill.bench import interleave, machine  # noqa: E402

FAMILIES = {
    "mobilenet_v1": {"alpha": 0.25},
    "shufflenet_v2": {"scale": 0.5},
    "resnet": {"depth": 20},
    "convnet": {"widths": (8, 16, 32)},
}
DEFAULT = ("mobilenet_v1", "shufflenet_v2", "resnet")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(DEFAULT), help=f"from {list(FAMILIES)}")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5, help="train steps per timed chunk")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown or not args.families:
        parser.error(f"--families: unknown {unknown}; choose from {list(FAMILIES)}")
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be >= 1")
    return args


def measure(family: str, teacher: keras.Model, ds: data.Dataset, args: argparse.Namespace) -> dict:
    batches = tf.data.Dataset.from_tensor_slices((ds.x_train, ds.y_train))
    batches = batches.batch(64, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)
    workloads, first = {}, {}
    for jit in (True, False):
        keras.utils.set_random_seed(0)
        student = models.get(
            family, num_classes=ds.num_classes, input_shape=ds.input_shape, **FAMILIES[family]
        )
        distiller = tfdistill.Distiller(student, teacher)
        distiller.compile(optimizer="adam", jit_compile=jit)
        iterator = iter(batches)
        distiller.make_train_function()
        start = time.perf_counter()
        distiller.train_function(iterator)
        first[jit] = time.perf_counter() - start

        def chunk(distiller=distiller, iterator=iterator) -> None:
            for _ in range(args.steps):
                logs = distiller.train_function(iterator)
            float(logs["loss"])

        workloads["xla" if jit else "no_xla"] = chunk
    timed = interleave(workloads, rounds=args.rounds, warmup=1)
    return {
        "first_step_s": {"xla": first[True], "no_xla": first[False]},
        "ms_per_step": {k: timed.median(k) * 1e3 / args.steps for k in workloads},
        "xla_over_no_xla": timed.ratio("xla", "no_xla"),
        "paired": timed.paired_ratio("xla", "no_xla"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ds = data.load("digits")
    teacher = models.get(
        "convnet",
        num_classes=ds.num_classes,
        input_shape=ds.input_shape,
        widths=(16, 32, 64),
        depth=2,
    )
    results = {}
    for family in args.families:
        results[family] = entry = measure(family, teacher, ds, args)
        print(
            f"{family}: first step {entry['first_step_s']['xla']:.1f} s with XLA, "
            f"{entry['first_step_s']['no_xla']:.1f} s without; {entry['ms_per_step']['xla']:.0f} "
            f"against {entry['ms_per_step']['no_xla']:.0f} ms a step: XLA / no XLA "
            f"{entry['xla_over_no_xla']:.2f} (paired {entry['paired']:.2f})",
            flush=True,
        )
    payload = {
        "benchmark": "xla_cpu",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/xla_cpu.py", *(argv or sys.argv[1:])]),
        "config": {"rounds": args.rounds, "steps": args.steps, "batch_size": 64},
        "machine": machine.describe(),
        "families": results,
    }
    path = args.out / "xla_cpu.json"
    write_atomic(path, lambda f: f.write(json.dumps(payload, indent=2) + "\n"), mode="w")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
