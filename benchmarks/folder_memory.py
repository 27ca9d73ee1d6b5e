"""`tfdistill run --dataset=folder:PATH` at two folder sizes: peak memory of the whole run, and
whether the streamed input pipeline keeps up with the student's training.

    python benchmarks/folder_memory.py             # 450 and 4,800 photos, ~10 min on 2 cores
    python benchmarks/folder_memory.py --quick     # 60 and 90 photos, 1 round: a smoke run

1. Memory: a 3-class folder of N generated JPEG photos (sides 128-192 px, about 160; stripes,
   rings or a blend by class, plus noise) for each N in `--sizes`; the whole CLI (`python -m
   tfdistill.cli run --image_size=64 --teacher_epochs=1 --student_epochs=1 --quantize=none`)
   runs in a child process with a fresh --out and --cache_dir, and `os.wait4` gives that
   child's own peak RSS. Reported: each peak, the growth from the smallest N to the largest
   (target < 150 MB) and the size of each image store on disk.
2. Throughput, on the largest folder's store: (a) pulling `--batches` batches from the
   training stream alone (`run.feed.stream_of`), (b) the default student training that many
   steps on the stream (`model.fit`), (c) the same student training on one in-memory batch
   repeated. Interleaved (a, b, c rotated each round, one warm-up each, `bench.interleave`);
   reported as images/s and the ratios (a)/(b) (above 1: the pipeline outruns training) and
   (b)/(c) (about 1: the stream costs training nothing). Read the ratios, not the rates.

Writes `results/folder_memory.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfdistill.artifacts import write_atomic  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "folder_memory.json"
CLASSES = ("stripes", "rings", "blend")
TARGET_GROWTH_MB = 150.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="450,4800", help="photo counts, comma-separated")
    parser.add_argument("--image_size", type=int, default=64, help="the student's input size")
    parser.add_argument("--batch_size", type=int, default=128, help="throughput batches")
    parser.add_argument("--batches", type=int, default=30, help="batches per timed chunk")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT}")
    parser.add_argument(
        "--quick", action="store_true", help="60 and 90 photos, 1 round; results to /tmp"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.rounds, args.batch_size = "60,90", 3, 1, 16
        args.out = args.out or Path(tempfile.gettempdir()) / "folder_memory_quick.json"
    args.out = args.out or DEFAULT_OUT
    args.sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    if not args.sizes or min(args.sizes) < 6 or args.batches < 1 or args.rounds < 1:
        parser.error("--sizes need >= 6 photos each; --batches and --rounds must be >= 1")
    return args


def photo(rng: np.random.Generator, label: int) -> np.ndarray:
    """uint8 (H, W, 3), H and W in 128..192: class-dependent waves plus noise."""
    h, w = (int(s) for s in rng.integers(128, 193, size=2))
    yy, xx = np.mgrid[0:h, 0:w] / 160.0
    freq, phase = rng.uniform(3.0, 7.0), rng.uniform(0.0, 2 * np.pi)
    cy, cx = rng.uniform(0.3, 0.7, size=2) * (h / 160.0, w / 160.0)
    stripes = np.sin(2 * np.pi * freq * (yy + 0.3 * xx) + phase)
    rings = np.sin(2 * np.pi * freq * np.hypot(yy - cy, xx - cx) + phase)
    pattern = (stripes, rings, 0.5 * (stripes + rings))[label]
    color = rng.uniform(0.3, 1.0, size=3)
    pixels = 127.5 + 90.0 * pattern[..., None] * color + rng.normal(0.0, 25.0, (h, w, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_folder(root: Path, count: int, seed: int) -> Path:
    """`count` JPEG photos under root/<class>/, classes in turn; the folder."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        label = i % len(CLASSES)
        path = root / CLASSES[label] / f"{i:05d}.jpg"
        Image.fromarray(photo(rng, label)).save(path, quality=90)
    return root


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def rss_mb(pid: int) -> float | None:
    """The resident set of process `pid` now (VmRSS), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def current_stage(log: Path) -> str:
    """The last stage header (`── stage i/n name: ...`) the run has logged, or "start"."""
    lines = log.read_text(errors="replace").splitlines()
    headers = [line.split(":")[0].lstrip("─ ") for line in lines if line.startswith("── stage")]
    return headers[-1] if headers else "start"


def watch(pid: int, log: Path, every: float = 0.1) -> tuple[int, os.struct_rusage, dict]:
    """Waits for child `pid`: (wait status, its own rusage from `os.wait4`, the largest RSS
    sampled every `every` s in each stage of its log). Samples can miss a short peak; the
    rusage's ru_maxrss cannot."""
    stages: dict[str, float] = {}
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, stages
        rss = rss_mb(pid)
        if rss is not None:
            stage = current_stage(log)
            stages[stage] = max(stages.get(stage, 0.0), rss)
        time.sleep(every)


def run_cli(folder: Path, work: Path, image_size: int) -> dict:
    """The whole `tfdistill run` on `folder` in a child process: its peak RSS (os.wait4, this
    child alone), exit code, store size and log."""
    out, cache, log = work / "run", work / "cache", work / "run.log"
    command = [
        sys.executable,
        "-m",
        "tfdistill.cli",
        "run",
        f"--dataset=folder:{folder}",
        f"--image_size={image_size}",
        "--teacher_epochs=1",
        "--student_epochs=1",
        "--quantize=none",
        f"--out={out}",
        f"--cache_dir={cache}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TFDISTILL_CACHE_DIR", None)
    work.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        status, usage, stages = watch(child.pid, log)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"tfdistill run exited {child.returncode}; log {log}:\n{tail}")
    return {
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "sampled_peak_rss_mb_by_stage": stages,
        "exit_code": child.returncode,
        "cpu_s_informational": usage.ru_utime + usage.ru_stime,
        "store_bytes": folder_bytes(cache),
        "stores": sorted(str(p.parent.relative_to(cache)) for p in cache.rglob("info.json")),
        "command": " ".join(command[1:]),
        "cache_dir": str(cache),
    }


def memory_section(args: argparse.Namespace, work: Path) -> tuple[dict, dict[int, dict]]:
    """Part 1: one folder and one CLI run per size; (summary, {size: run})."""
    runs = {}
    for count in args.sizes:
        folder = make_folder(work / f"photos_{count}", count, args.seed)
        jpeg = folder_bytes(folder) / 2**20
        print(f"{count} photos ({jpeg:.1f} MiB of JPEG): tfdistill run", flush=True)
        runs[count] = run_cli(folder, work / f"run_{count}", args.image_size)
        runs[count]["folder"], runs[count]["jpeg_bytes"] = str(folder), folder_bytes(folder)
        print(
            f"  peak RSS {runs[count]['peak_rss_mb']:.0f} MB, store "
            f"{runs[count]['store_bytes'] / 2**20:.1f} MiB",
            flush=True,
        )
    small, large = runs[args.sizes[0]], runs[args.sizes[-1]]
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    stages = large["sampled_peak_rss_mb_by_stage"]
    by_stage = {
        stage: rss - small["sampled_peak_rss_mb_by_stage"][stage]
        for stage, rss in stages.items()
        if stage in small["sampled_peak_rss_mb_by_stage"]
    }
    summary = {
        "growth_mb": growth,
        "sampled_growth_by_stage_mb": by_stage,
        "from": args.sizes[0],
        "to": args.sizes[-1],
        "target_growth_mb": TARGET_GROWTH_MB,
        "target_met": growth < TARGET_GROWTH_MB,
    }
    print(f"growth {args.sizes[0]} -> {args.sizes[-1]} photos: {growth:+.0f} MB", flush=True)
    return summary, runs


def workloads(folder: Path, cache: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """Part 2's three workloads on the cached store of `folder`, and what they ran on."""
    import keras
    import tensorflow as tf

    from tfdistill import data
    from tfdistill.run import feed, training
    from tfdistill.run.config import RunConfig

    ds = data.load(f"folder:{folder}", image_size=args.image_size, cache_dir=cache).raw_pixels()
    config = RunConfig(
        out=str(cache.parent / "unused"),
        dataset=f"folder:{folder}",
        image_size=str(args.image_size),
        cache_dir=str(cache),
        batch_size=args.batch_size,
    )
    size = (args.image_size, args.image_size)
    stream = feed.stream_of(config, ds, (ds.x_train, ds.y_train), [size])
    x, y = next(iter(stream(0)))
    in_memory = tf.data.Dataset.from_tensors((x, y)).repeat()
    keras.utils.set_random_seed(config.seed)
    model = training.classifier(config.student, config.student_kwargs, ds, "student")
    steps = args.batches * (args.rounds + 1) * 2
    training.compile_classifier(model, config, config.student_learning_rate, steps)
    k = args.batches

    def pipeline() -> None:
        batches = iter(stream(0))
        for _ in range(k):
            next(batches)

    def streamed() -> None:
        model.fit(stream(0), steps_per_epoch=k, epochs=1, verbose=0)

    def memory() -> None:
        model.fit(in_memory, steps_per_epoch=k, epochs=1, verbose=0)

    info = {
        "train_images": len(ds.x_train),
        "stored_shape": list(ds.x_train.image_shape),
        "batch": list(x.shape),
        "student_params": int(model.count_params()),
        "jit_compile": bool(model.jit_compile),
        "augment": feed.augments(config),
    }
    return {"pipeline": pipeline, "streamed": streamed, "memory": memory}, info


def throughput_section(folder: Path, cache: Path, args: argparse.Namespace) -> dict:
    """Part 2: images/s of the three workloads, interleaved, and their ratios."""
    from tfdistill.bench import interleave, with_cpu

    work, info = workloads(folder, cache, args)
    cpu: dict[str, list[float]] = {}
    timed = interleave(with_cpu(work, cpu), rounds=args.rounds, warmup=1)
    images = args.batches * args.batch_size
    rates = {name: images / timed.median(name) for name in work}
    per_cpu = {name: images / statistics.median(cpu[name][1:]) for name in work}
    pairs = {
        "pipeline_over_streamed_training": ("streamed", "pipeline"),
        "streamed_over_memory_training": ("memory", "streamed"),
    }
    ratios = {key: timed.ratio(*pair) for key, pair in pairs.items()}
    paired = {key: timed.paired_ratio(*pair) for key, pair in pairs.items()}
    cpu_ratios = {key: per_cpu[b] / per_cpu[a] for key, (a, b) in pairs.items()}
    for name, rate in rates.items():
        print(f"{name}: {rate:.0f} images/s, {per_cpu[name]:.0f} images/CPU-s", flush=True)
    for key, value in ratios.items():
        print(f"{key}: {value:.2f} (paired {paired[key]:.2f}, CPU {cpu_ratios[key]:.2f})")
    return {
        **info,
        "images_per_chunk": images,
        "images_per_s": rates,
        "images_per_cpu_s": per_cpu,
        "ratios": ratios,
        "paired_ratios": paired,
        "cpu_ratios": cpu_ratios,
        "seconds_per_chunk": timed.samples,
        "cpu_seconds_per_chunk": {name: values[1:] for name, values in cpu.items()},
        "orders": timed.orders,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="folder_memory_") as temporary:
        work = args.workdir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        summary, runs = memory_section(args, work)
        largest = runs[args.sizes[-1]]
        speed = throughput_section(Path(largest["folder"]), Path(largest["cache_dir"]), args)
    from tfdistill.bench import machine

    payload = {
        "benchmark": "folder_memory",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/folder_memory.py", *(argv or sys.argv[1:])]),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine.describe(),
        "memory": {"summary": summary, "runs": {str(n): run for n, run in runs.items()}},
        "throughput": speed,
    }
    write_atomic(args.out, lambda f: f.write(json.dumps(payload, indent=2) + "\n"), mode="w")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
