"""Inference speed in LiteRT, every figure a ratio measured within this one run.

    python benchmarks/inference.py            # every section; rewrites benchmarks/README.md's table
    python benchmarks/inference.py --quick    # smoke run: README untouched, results to a temp dir

Sections (`--sections`, comma-separated):
  peak     the machine's float32 peak: a (256 × 1024) · (1024 × 1024) FULLY_CONNECTED in LiteRT
  zoo      zoo models sized for the embedded digits (32×32×1): trained on them (`tfdistill run`'s
           teacher recipe, every label), exported fp32 and int8, timed on 1 and 2 threads
           together with the peak; GMAC/s and the share of the peak
  twins    MobileNet v1 / v2 of the zoo against keras.applications at the same alpha and
           resolution, untrained, fp32 and int8; target: latency ratio <= 1.05
  grouped  ShuffleNet v1 and ResNeXt-29 with native grouped Conv2D against the split + conv +
           concat lowering (`grouped_conv="split"`), same weights, fp32 and int8

Timing: for each thread count, every file of a section gets its own interpreter (XNNPACK on,
inputs set once) and the files run round-robin (`tfdistill.bench.interleave`), each a chunk
of invokes lasting about `--chunk-ms`, the order rotated each round; a file's latency is the
median over rounds of ms per invoke.
Writes `inference.json` and `machine.json` to `--out` (default benchmarks/results, both
committed) and, unless --quick or --no-readme, the block between the markers in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdistill  # noqa: E402
from tfdistill import data, models  # noqa: E402
from tfdistill import run as run_lib  # noqa: E402
from tfdistill.artifacts import write_atomic  # noqa: E402
from tfdistill.bench import interleave, machine, peak  # noqa: E402
from tfdistill.export import evaluate_tflite, file_size, inference_function, to_tflite  # noqa: E402
from tfdistill.export.interpreter import litert_interpreter  # noqa: E402
from tfdistill.profile import profile  # noqa: E402
from tfdistill.run import delivery, training  # noqa: E402

SECTIONS = ("peak", "zoo", "twins", "grouped")
HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN, END = "<!-- inference:begin -->", "<!-- inference:end -->"
TWIN_TARGET = 1.05
MODES = ("none", "int8")

# (label, family, builder kwargs): students and teachers at the digits' 32×32×1.
ZOO: tuple[tuple[str, str, dict], ...] = (
    ("convnet 4-8-16 (run's student)", "convnet", {"widths": (4, 8, 16)}),
    ("convnet 16-32-64 ×2 (run's teacher)", "convnet", {"widths": (16, 32, 64), "depth": 2}),
    ("MobileNet v1 0.25", "mobilenet_v1", {"alpha": 0.25}),
    ("MobileNetV2 0.35", "mobilenet_v2", {"alpha": 0.35}),
    ("ShuffleNet v1 g3 0.5×", "shufflenet_v1", {"groups": 3, "scale": 0.5}),
    ("ShuffleNet v2 0.5×", "shufflenet_v2", {"scale": 0.5}),
    ("ResNet-20", "resnet", {"depth": 20}),
)
# Slow to train on a few CPU cores (25M and 170M MACs an image): --zoo-extra.
ZOO_EXTRA: tuple[tuple[str, str, dict], ...] = (
    ("WRN-16-1", "wide_resnet", {"depth": 16, "width": 1}),
    ("ResNeXt-29 4×4d", "resnext", {"depth": 29, "cardinality": 4, "bottleneck_width": 4}),
)
QUICK_ZOO = ("convnet 4-8-16 (run's student)", "MobileNet v1 0.25")

# (family, keras.applications class, alpha, resolution)
TWINS: tuple[tuple[str, str, float, int], ...] = (
    ("mobilenet_v1", "MobileNet", 1.0, 224),
    ("mobilenet_v2", "MobileNetV2", 1.0, 224),
    ("mobilenet_v1", "MobileNet", 0.5, 160),
    ("mobilenet_v2", "MobileNetV2", 0.35, 128),
)

# (label, family, kwargs)
GROUPED: tuple[tuple[str, str, dict], ...] = (
    (
        "ShuffleNet v1 g3 0.5× 32×32×1 (zoo)",
        "shufflenet_v1",
        {"groups": 3, "scale": 0.5, "input_shape": (32, 32, 1)},
    ),
    (
        "ResNeXt-29 4×4d 32×32×1 (zoo)",
        "resnext",
        {"depth": 29, "cardinality": 4, "bottleneck_width": 4, "input_shape": (32, 32, 1)},
    ),
    ("ShuffleNet v1 g3 1× 224", "shufflenet_v1", {"groups": 3, "input_shape": (224, 224, 3)}),
    ("ShuffleNet v1 g8 1× 224", "shufflenet_v1", {"groups": 8, "input_shape": (224, 224, 3)}),
    (
        "ResNeXt-29 8×16d 32",
        "resnext",
        {"depth": 29, "cardinality": 8, "bottleneck_width": 16, "input_shape": (32, 32, 3)},
    ),
    (
        "ResNeXt-29 32×4d 32",
        "resnext",
        {"depth": 29, "cardinality": 32, "bottleneck_width": 4, "input_shape": (32, 32, 3)},
    ),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--chunk-ms", type=float, default=40.0, help="a timed chunk's length: invokes per chunk"
    )
    parser.add_argument("--epochs", type=int, default=5, help="zoo: training epochs on digits")
    parser.add_argument("--zoo-extra", action="store_true", help="zoo: add WRN-16-1, ResNeXt-29")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    parser.add_argument("--quick", action="store_true", help="a smoke run of every section")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        parser.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in sections]
    try:
        args.threads = sorted({int(t) for t in args.threads.split(",")})
    except ValueError:
        parser.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not args.threads or args.threads[0] < 1:
        parser.error("--threads must be >= 1")
    if args.chunk_ms <= 0:
        parser.error("--chunk-ms must be > 0")
    for name in ("rounds", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.quick:
        args.rounds, args.chunk_ms, args.epochs, args.no_readme = 3, 5.0, 1, True
        if args.out == HERE / "results":
            args.out = Path(tempfile.mkdtemp(prefix="tfdistill_inference_"))
    return args


def log(message: str) -> None:
    print(message, flush=True)


class Timer:
    """Files timed together: one interpreter per (file, thread count), interleaved."""

    def __init__(self, rounds: int, chunk_ms: float) -> None:
        self.rounds, self.chunk_ms = rounds, chunk_ms

    def latencies(self, files: dict[str, Path], threads: int) -> dict[str, dict]:
        """{name: {"ms": median ms per invoke, "ms_per_round": [...]}} at `threads` threads."""
        workloads: dict[str, Callable[[], object]] = {}
        for name, path in files.items():
            interpreter = litert_interpreter(path, num_threads=threads)
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(
                    detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"])
                )
            workloads[name] = interpreter.invoke
        calls = {name: self._calls(run) for name, run in workloads.items()}
        timed = interleave(workloads, rounds=self.rounds, calls=calls, warmup=2)
        return {
            name: {
                "ms": timed.median(name) * 1e3,
                "calls_per_round": calls[name],
                "ms_per_round": [s * 1e3 for s in timed.samples[name]],
            }
            for name in files
        }

    def _calls(self, run: Callable[[], object]) -> int:
        """Invokes per chunk so that a chunk lasts about `chunk_ms`: the best of three
        single invokes sets the count."""
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return max(1, round(self.chunk_ms / 1e3 / min(times)))


def export_pair(model: keras.Model, folder: Path, stem: str, calibration: np.ndarray) -> dict:
    """fp32 and int8 files of `model` -> {mode: path}."""
    function = inference_function(model)
    return {
        mode: to_tflite(
            function,
            folder / f"{stem}_{'fp32' if mode == 'none' else mode}.tflite",
            quantization=mode,
            representative_data=calibration,
            num_calibration_samples=len(calibration),
        )
        for mode in MODES
    }


def peak_file(folder: Path) -> Path:
    return peak.matmul_model(folder / "matmul_peak.tflite")


def run_peak(args: argparse.Namespace, timer: Timer, folder: Path) -> dict:
    path = peak_file(folder)
    macs = peak.matmul_macs()
    result = {"macs": macs, "shape": [peak.ROWS, peak.DEPTH, peak.UNITS], "threads": {}}
    for threads in args.threads:
        ms = timer.latencies({"peak": path}, threads)["peak"]["ms"]
        result["threads"][str(threads)] = {"ms": ms, "gmacs": peak.gmacs(macs, ms / 1e3)}
        log(f"peak, {threads} thread(s): {ms:.2f} ms, {peak.gmacs(macs, ms / 1e3):.1f} GMAC/s")
    return result


def train_zoo_model(family: str, kwargs: dict, ds: data.Dataset, epochs: int, seed: int, out: Path):
    config = run_lib.RunConfig(
        out=str(out), teacher=family, teacher_kwargs=kwargs, teacher_epochs=epochs, seed=seed
    )
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    trained = training.train_teacher(config, ds).model
    return trained, time.perf_counter() - start


def keras_accuracy(model: keras.Model, ds: data.Dataset) -> float:
    logits = model.predict(ds.x_test, batch_size=128, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == ds.y_test))


def run_zoo(args: argparse.Namespace, timer: Timer, folder: Path) -> dict:
    ds = data.load("digits")
    rng = np.random.default_rng(args.seed)
    calibration = ds.x_train[rng.permutation(len(ds.x_train))[: delivery.CALIBRATION_SAMPLES]]
    rows: dict[str, dict] = {}
    files: dict[str, Path] = {"peak": peak_file(folder)}
    chosen = [z for z in ZOO + ZOO_EXTRA * args.zoo_extra if not args.quick or z[0] in QUICK_ZOO]
    for index, (label, family, kwargs) in enumerate(chosen):
        trained, seconds = train_zoo_model(family, kwargs, ds, args.epochs, args.seed, folder)
        cost = profile(trained)
        paths = export_pair(trained, folder, f"zoo{index}", calibration)
        row = {
            "family": family,
            "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
            "params": cost.params,
            "macs": cost.macs,
            "train_seconds": seconds,
            "accuracy": keras_accuracy(trained, ds),
        }
        for mode, path in paths.items():
            checked = evaluate_tflite(path, ds.x_test, ds.y_test, reference=trained)
            row[mode] = {
                "size_bytes": file_size(path).raw_bytes,
                "accuracy": checked.accuracy,
                "agreement": checked.agreement,
            }
            files[f"{label}|{mode}"] = path
        rows[label] = row
        log(
            f"zoo {label}: {cost.params:,} params, {cost.macs / 1e6:.1f}M MACs, accuracy "
            f"{row['accuracy']:.2%} (int8 {row['int8']['accuracy']:.2%}), "
            f"trained in {seconds:.0f} s"
        )
    peaks = {}
    for threads in args.threads:
        timed = timer.latencies(files, threads)
        peaks[str(threads)] = peak.gmacs(peak.matmul_macs(), timed["peak"]["ms"] / 1e3)
        for label, row in rows.items():
            for mode in MODES:
                ms = timed[f"{label}|{mode}"]["ms"]
                row[mode].setdefault("threads", {})[str(threads)] = {
                    "ms": ms,
                    "gmacs": peak.gmacs(row["macs"], ms / 1e3),
                    "of_peak": peak.gmacs(row["macs"], ms / 1e3) / peaks[str(threads)],
                }
        log(f"zoo timed on {threads} thread(s); peak {peaks[str(threads)]:.1f} GMAC/s")
    return {"epochs": args.epochs, "peak_gmacs": peaks, "models": rows}


def _ratios(timed: dict[str, dict], pairs: dict[str, tuple[str, str]]) -> dict[str, dict]:
    """{key: {"ms_a", "ms_b", "ratio", "paired_ratio"}} for a = pairs[key][0], b = [1]."""
    result = {}
    for key, (a, b) in pairs.items():
        rounds = zip(timed[a]["ms_per_round"], timed[b]["ms_per_round"], strict=True)
        per_round = [x / y for x, y in rounds]
        result[key] = {
            "ms_a": timed[a]["ms"],
            "ms_b": timed[b]["ms"],
            "ratio": timed[a]["ms"] / timed[b]["ms"],
            "paired_ratio": float(np.median(per_round)),
        }
    return result


def _compare(
    args: argparse.Namespace,
    timer: Timer,
    builds: dict[str, tuple[Callable[[], keras.Model], Callable[[], keras.Model]]],
    folder: Path,
    prefix: str,
) -> dict:
    """For each case: build (a, b), give b a's weights (latency can depend on the values:
    denormals, int8 ranges), export both fp32 and int8 (same calibration images), time the four
    files together per thread count; ratio = a / b."""
    results: dict[str, dict] = {}
    rng = np.random.default_rng(args.seed)
    for index, (case, (build_a, build_b)) in enumerate(builds.items()):
        model_a, model_b = build_a(), build_b()
        model_b.set_weights(
            [
                w.reshape(t.shape)
                for w, t in zip(model_a.get_weights(), model_b.weights, strict=True)
            ]
        )
        shape = tuple(model_a.inputs[0].shape[1:])
        calibration = rng.random((8, *shape), dtype=np.float32)
        paths_a = export_pair(model_a, folder, f"{prefix}{index}a", calibration)
        paths_b = export_pair(model_b, folder, f"{prefix}{index}b", calibration)
        files = {f"{m}|a": paths_a[m] for m in MODES} | {f"{m}|b": paths_b[m] for m in MODES}
        entry: dict[str, Any] = {
            "params": [model_a.count_params(), model_b.count_params()],
            "macs": profile(model_a).macs,
            "size_bytes": {
                m: [file_size(paths_a[m]).raw_bytes, file_size(paths_b[m]).raw_bytes] for m in MODES
            },
            "threads": {},
        }
        for threads in args.threads:
            timed = timer.latencies(files, threads)
            entry["threads"][str(threads)] = _ratios(
                timed, {m: (f"{m}|a", f"{m}|b") for m in MODES}
            )
            summary = ", ".join(
                f"{m} {v['ms_a']:.2f}/{v['ms_b']:.2f} ms = {v['ratio']:.3f}"
                for m, v in entry["threads"][str(threads)].items()
            )
            log(f"{case}, {threads} thread(s): {summary}")
        results[case] = entry
    return results


def _seeded(build: Callable[[], keras.Model], seed: int) -> Callable[[], keras.Model]:
    def built() -> keras.Model:
        keras.utils.set_random_seed(seed)
        return build()

    return built


def run_twins(args: argparse.Namespace, timer: Timer, folder: Path) -> dict:
    cases = TWINS[:1] if args.quick else TWINS
    if args.quick:
        cases = (("mobilenet_v1", "MobileNet", 0.25, 128),)
    builds = {}
    for family, application, alpha, resolution in cases:
        shape = (resolution, resolution, 3)
        ours = _seeded(
            lambda f=family, a=alpha, s=shape: models.get(f, alpha=a, input_shape=s), args.seed
        )
        twin = _seeded(
            lambda c=application, a=alpha, s=shape: getattr(keras.applications, c)(
                weights=None, alpha=a, input_shape=s, classifier_activation=None
            ),
            args.seed,
        )
        builds[f"{family} {alpha:g} {resolution}"] = (ours, twin)
    results = _compare(args, timer, builds, folder, "twin")
    worst = max(
        v["ratio"]
        for case in results.values()
        for t in case["threads"].values()
        for v in t.values()
    )
    return {
        "cases": results,
        "target": TWIN_TARGET,
        "worst_ratio": worst,
        "held": worst <= TWIN_TARGET,
    }


def run_grouped(args: argparse.Namespace, timer: Timer, folder: Path) -> dict:
    cases = GROUPED[2:3] if args.quick else GROUPED
    builds = {}
    for label, family, kwargs in cases:
        if args.quick:
            kwargs = {**kwargs, "input_shape": (64, 64, 3)}
        split = _seeded(
            lambda f=family, k=kwargs: models.get(f, grouped_conv="split", **k), args.seed
        )
        native = _seeded(lambda f=family, k=kwargs: models.get(f, **k), args.seed)
        builds[label] = (split, native)
    results = _compare(args, timer, builds, folder, "grouped")
    ratios = [
        v["ratio"] for c in results.values() for t in c["threads"].values() for v in t.values()
    ]
    return {
        "cases": results,
        "ratio": "split / native latency",
        "default": "native",
        "native_faster_everywhere": all(r > 1.0 for r in ratios),
        "split_over_native_range": [min(ratios), max(ratios)],
    }


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _kb(size: int) -> str:
    return f"{size / 1024:,.1f}"


def _zoo_lines(zoo: dict) -> list[str]:
    """The zoo section's table: size, latency, throughput and accuracy of each model."""
    lines: list[str] = []
    threads = list(zoo["peak_gmacs"])
    head = ["model", "params", "MMACs", "fp32 KB", "int8 KB"]
    head += [f"fp32 ms ({t}t)" for t in threads] + [f"int8 ms ({t}t)" for t in threads]
    head += [f"GMAC/s fp32 ({t}t)" for t in threads]
    head += [f"% of peak ({t}t)" for t in threads] + ["acc %", "int8 acc %"]
    lines += [
        "",
        f"**Zoo on the embedded digits** (32×32×1, trained {zoo['epochs']} epochs with "
        "`tfdistill run`'s teacher recipe on every label; accuracy on the 360 test images; "
        "GMAC/s = MACs / fp32 latency; peak in the same run: "
        + ", ".join(f"{v:.1f} GMAC/s ({t}t)" for t, v in zoo["peak_gmacs"].items())
        + ")",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for label, row in zoo["models"].items():
        cells = [
            label,
            f"{row['params']:,}",
            f"{row['macs'] / 1e6:.1f}",
            _kb(row["none"]["size_bytes"]),
            _kb(row["int8"]["size_bytes"]),
        ]
        cells += [_ms(row["none"]["threads"][t]["ms"]) for t in threads]
        cells += [_ms(row["int8"]["threads"][t]["ms"]) for t in threads]
        cells += [f"{row['none']['threads'][t]['gmacs']:.1f}" for t in threads]
        cells += [f"{100 * row['none']['threads'][t]['of_peak']:.0f}" for t in threads]
        cells += [f"{100 * row['accuracy']:.1f}", f"{100 * row['int8']['accuracy']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pair_lines(sections: dict) -> list[str]:
    """The twins and grouped sections: two latencies of each case and their ratios."""
    lines: list[str] = []
    for key, title, a, b in (
        (
            "twins",
            "**Zoo MobileNets against keras.applications** (untrained, same alpha, "
            "resolution and weights; ratio = zoo / keras.applications latency, target <= "
            f"{TWIN_TARGET})",
            "zoo ms",
            "keras ms",
        ),
        (
            "grouped",
            "**Grouped convolutions: split + conv + concat against native grouped "
            "Conv2D** (same weights; ratio = split / native latency; above 1, native is faster)",
            "split ms",
            "native ms",
        ),
    ):
        if key not in sections:
            continue
        cases = sections[key]["cases"]
        lines += [
            "",
            title,
            "",
            f"| model | mode | threads | {a} | {b} | ratio | paired |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for case, entry in cases.items():
            for t, modes in entry["threads"].items():
                for mode, v in modes.items():
                    lines.append(
                        f"| {case} | {'fp32' if mode == 'none' else mode} | {t} | "
                        f"{_ms(v['ms_a'])} | {_ms(v['ms_b'])} | {v['ratio']:.3f} | "
                        f"{v['paired_ratio']:.3f} |"
                    )
    return lines


def render(payload: dict) -> str:
    """The markdown between the README markers."""
    lines = [BEGIN, ""]
    m = payload["machine"]
    lines.append(
        f"Generated {payload['timestamp']} by `{payload['command']}` on {m['cpu']} "
        f"({m['cores_usable']} usable of {m['cores_logical']} logical cores; features "
        f"{', '.join(m['cpu_features']) or 'unknown'}), LiteRT {m['packages']['ai-edge-litert']}"
        f" with XNNPACK, TF {m['packages']['tensorflow']}. Full description: "
        "`results/machine.json`; every number: `results/inference.json`."
    )
    sections = payload["sections"]
    earlier = {
        name: stamp
        for name, stamp in payload.get("measured", {}).items()
        if stamp != payload["timestamp"]
    }
    if earlier:
        lines.append(
            "Kept from earlier runs: " + ", ".join(f"{n} ({t})" for n, t in earlier.items()) + "."
        )
    if "peak" in sections:
        parts = [
            f"{t} thread{'s' * (t != '1')}: {v['gmacs']:.1f} GMAC/s ({v['ms']:.2f} ms)"
            for t, v in sections["peak"]["threads"].items()
        ]
        lines += [
            "",
            f"**Peak** (float32 256×1024 · 1024×1024 FULLY_CONNECTED): {'; '.join(parts)}.",
        ]
    if "zoo" in sections:
        lines += _zoo_lines(sections["zoo"])
    lines += _pair_lines(sections)
    lines += ["", END]
    return "\n".join(lines)


def update_readme(path: Path, block: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(
            f"{path} lacks the markers {BEGIN} and {END}; add them where the table goes."
        )
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    write_atomic(path, lambda f: f.write(head + block + tail), mode="w")


def merge_earlier(path: Path, payload: dict) -> None:
    """Keeps the sections this run skipped from the results already at `path`, each with the
    timestamp of the run that measured it, so a partial run never loses a committed section."""
    stamp = payload["timestamp"]
    payload["measured"] = dict.fromkeys(payload["sections"], stamp)
    if not path.is_file():
        return
    earlier = json.loads(path.read_text())
    for name, section in earlier.get("sections", {}).items():
        if name not in payload["sections"]:
            payload["sections"][name] = section
            payload["measured"][name] = earlier.get("measured", {}).get(name, earlier["timestamp"])
    payload["sections"] = {
        name: payload["sections"][name] for name in SECTIONS if name in payload["sections"]
    }


def write_json(path: Path, payload: dict) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(payload, indent=2) + "\n"), mode="w")


RUNNERS = {"peak": run_peak, "zoo": run_zoo, "twins": run_twins, "grouped": run_grouped}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    timer = Timer(args.rounds, args.chunk_ms)
    described = machine.describe()
    started = time.perf_counter()
    payload: dict[str, Any] = {
        "benchmark": "inference",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/inference.py", *(argv or sys.argv[1:])]),
        "machine": described,
        "config": {
            "rounds": args.rounds,
            "chunk_ms": args.chunk_ms,
            "threads": args.threads,
            "epochs": args.epochs,
            "seed": args.seed,
            "quick": args.quick,
            "timing": "median over rounds of ms per invoke; files of a section round-robin in "
            "chunks of about chunk_ms, order rotated each round; XNNPACK on; inputs zero",
            "tfdistill": tfdistill.__version__,
        },
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="tfdistill_inference_") as temp:
        for section in args.sections:
            log(f"== {section}")
            payload["sections"][section] = RUNNERS[section](args, timer, Path(temp))
    payload["seconds"] = time.perf_counter() - started
    if "twins" in payload["sections"]:
        twins = payload["sections"]["twins"]
        log(
            f"target zoo / keras.applications latency <= {TWIN_TARGET}: worst "
            f"{twins['worst_ratio']:.3f}, {'yes' if twins['held'] else 'NO'}"
        )
    if "grouped" in payload["sections"]:
        grouped = payload["sections"]["grouped"]
        low, high = grouped["split_over_native_range"]
        log(
            f"split / native: {low:.2f}-{high:.2f}; the default (native) is the faster "
            f"everywhere: {'yes' if grouped['native_faster_everywhere'] else 'NO'}"
        )
    merge_earlier(args.out / "inference.json", payload)
    write_json(args.out / "inference.json", payload)
    write_json(args.out / "machine.json", described)
    log(f"wrote {args.out / 'inference.json'} and {args.out / 'machine.json'}")
    if not args.no_readme:
        update_readme(README, render(payload))
        log(f"updated {README}")
    else:
        print(render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
