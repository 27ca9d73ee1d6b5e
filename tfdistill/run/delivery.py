"""What `tfdistill run` delivers: `.tflite` files checked against their Keras models, their
latencies, and the report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from tfdistill import bench as bench_lib
from tfdistill import compress, data, plots, report
from tfdistill.attention import AttentionTransfer, stage_maps
from tfdistill.export import (
    RECIPES,
    evaluate_tflite,
    file_size,
    inference_function,
    selective_quantize,
    to_tflite,
)
from tfdistill.resolution import static_image_size
from tfdistill.run.config import RunConfig

CALIBRATION_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Export:
    """One model to export: files `<name>_<mode>.tflite`, one per quantization mode (the
    converter's, or a LiteRT Quantizer recipe); `selective`: also `<name>_selective.tflite` with
    `--max_accuracy_drop`."""

    name: str
    model: Any
    quantizations: tuple[str, ...]
    sparse: bool = False
    selective: bool = False


def export(config: RunConfig, ds: data.Dataset, plan: list[Export], out: Path) -> list[dict]:
    """Every planned model in each of its modes, calibrated on the training split and checked
    in LiteRT against its own Keras model on the test split, each at its own input size.
    Sparse float files store pruned kernels in TFLite's sparse format; int8 ones stay dense,
    since XNNPACK cannot run sparse int8 FULLY_CONNECTED (their zeros show in the gzipped
    size)."""
    rows = []
    samples = min(len(ds.x_train), CALIBRATION_SAMPLES)
    for item in plan:
        size = static_image_size(item.model)
        calibration, test = ds.inputs("train", size), ds.inputs("test", size)
        function = inference_function(item.model)
        for quantization in item.quantizations:
            suffix = "fp32" if quantization == "none" else quantization
            sparse = item.sparse and quantization in ("none", "float16")
            recipe = quantization if quantization in RECIPES else None
            path = to_tflite(
                function,
                out / f"{item.name}_{suffix}.tflite",
                quantization="none" if recipe else quantization,
                representative_data=_batches(calibration, samples),
                num_calibration_samples=samples,
                sparsity=sparse,
                quantizer="litert" if recipe else "converter",
                recipe=recipe,
            )
            rows.append(_row(path, item, quantization, sparse, test, ds.y_test))
    return rows


def _row(path: Path, item: Export, quantization: str, sparse: bool, x: Any, y: Any) -> dict:
    """The report row of one file: checked in LiteRT on `x` (N, H, W, C) and labels `y` (N,)
    against its Keras model."""
    checked = evaluate_tflite(path, x, y, reference=item.model)
    size = file_size(path)
    return {
        "file": path.name,
        "model": item.name,
        "quantization": quantization,
        "quantizer": "litert" if quantization in (*RECIPES, "selective") else "converter",
        "sparse_format": sparse,
        "size_bytes": size.raw_bytes,
        "gzip_bytes": size.gzip_bytes,
        "accuracy": checked.accuracy,
        "agreement": checked.agreement,
        "max_abs_error": checked.max_abs_error,
    }


def selective(
    config: RunConfig, ds: data.Dataset, plan: list[Export], out: Path
) -> tuple[list[dict], list[dict]]:
    """With `--max_accuracy_drop`, each `selective` model of the plan quantized by
    `selective_quantize` (static_wi8_ai8, calibrated on the training split, judged on the test
    split): the rows of the files it wrote, and one entry per model (`SelectiveResult` fields,
    `file` None when every op could stay quantized)."""
    if config.max_accuracy_drop is None:
        return [], []
    rows, entries = [], []
    samples = min(len(ds.x_train), CALIBRATION_SAMPLES)
    for item in (item for item in plan if item.selective):
        size = static_image_size(item.model)
        calibration, test = ds.inputs("train", size), ds.inputs("test", size)
        path = out / f"{item.name}_selective.tflite"
        found = selective_quantize(
            item.model,
            path,
            test,
            ds.y_test,
            config.max_accuracy_drop,
            representative_data=_batches(calibration, samples),
            num_calibration_samples=samples,
        )
        fields = {k: v for k, v in found.to_dict().items() if k != "path"}
        entry = {"model": item.name, **fields, "file": None}
        if found.float_ops:
            rows.append(_row(path, item, "selective", False, test, ds.y_test))
            entry["file"] = path.name
        else:
            path.unlink()
        entries.append(entry)
    return rows, entries


def selective_costs(entries: list[dict], rows: list[dict], timings: dict | None) -> list[dict]:
    """The `selective` entries with their file's size and LiteRT latency (µs) beside the float32
    file's and the best 8-bit file's of the same model (converter int8, else static_wi8_ai8)."""
    litert = (timings or {}).get("litert") or {}
    by_file = {row["file"]: row for row in rows}
    by_mode = {(row["model"], row["quantization"]): row["file"] for row in rows}

    def cost(file: str | None) -> dict | None:
        if file is None or file not in by_file:
            return None
        latency = litert.get(file, {}).get("avg_us")
        return {"file": file, "size_bytes": by_file[file]["size_bytes"], "latency_us": latency}

    costed = []
    for entry in entries:
        model = entry["model"]
        int8 = by_mode.get((model, "int8")) or by_mode.get((model, "static_wi8_ai8"))
        files = {"selective": entry["file"], "fp32": by_mode.get((model, "none")), "int8": int8}
        costed.append({**entry, "cost": {key: cost(file) for key, file in files.items()}})
    return costed


def _batches(images: Any, count: int, size: int = 64) -> Any:
    """The first `count` of `images` (an array, a store or `ModelInputs`) in batches (k, H, W,
    C), read as calibration goes."""
    for start in range(0, count, size):
        yield images[start : min(start + size, count)]


def on_phone(config: RunConfig, path: Path) -> Any:
    """`benchmark_model`'s `BenchmarkResult` of `path` on the phone of `config`."""
    return bench_lib.android.benchmark(
        path,
        benchmark_binary=config.benchmark_binary,
        adb=config.adb,
        serial=config.serial,
        num_threads=config.threads or 1,
        use_gpu=config.use_gpu,
        use_nnapi=config.use_nnapi,
        use_npu=config.use_npu,
        enable_op_profiling=config.enable_op_profiling,
        num_runs=config.bench_runs,
        taskset=config.taskset,
        tool=config.benchmark_tool,
    )


def bench(config: RunConfig, files: list[Path]) -> dict:
    """LiteRT timings of every `.tflite` file, and with `config.android` `benchmark_model`'s on
    the phone: {"litert": {file name: BenchmarkResult dict}, "android": {...} or None, ...}.
    Latencies in microseconds."""
    litert, android = {}, {}
    for path in files:
        timing = bench_lib.benchmark_tflite(
            path, num_threads=config.threads, num_runs=config.bench_runs
        )
        litert[path.name] = timing.to_dict()
        if config.android:
            android[path.name] = on_phone(config, path).to_dict()
    return {
        "threads": config.threads or 1,
        "num_runs": config.bench_runs,
        "litert": litert,
        "android": android or None,
        "budget_check": budget_check(config, files[0].parent) if files else None,
    }


DISTILLED_FP32 = "student_distilled_fp32.tflite"
BUDGET_FILES = (DISTILLED_FP32, "student_pruned_channels_fp32.tflite")
BUDGET_TOLERANCE = 1.1


def student_modes(config: RunConfig) -> tuple[str, ...]:
    """The modes the distilled and channel-pruned students are exported in: `config.quantize`,
    and float32 first where `budget_check` times it (`--latency_budget` without `--android`)."""
    if config.latency_budget is None or config.android or "none" in config.quantize:
        return tuple(config.quantize)
    return ("none", *config.quantize)


def budget_check(config: RunConfig, out: Path) -> dict | None:
    """The `--latency_budget` student's float32 file against the distilled student's, timed
    interleaved in LiteRT (`bench.interleaved_tflite`, `config.bench_runs` rounds of 10 invokes
    each, `config.threads`): their paired median ratio, and the pruned file's latency as a share
    of the budget (the ratio over a share budget; its median over a budget in µs). None without
    a budget, and with `--android`, whose budget is the phone's."""
    if config.latency_budget is None or config.android:
        return None
    distilled, pruned = (out / name for name in BUDGET_FILES)
    timing = bench_lib.interleaved_tflite(
        {"distilled": distilled, "pruned": pruned},
        num_threads=config.threads,
        rounds=config.bench_runs,
    )
    ratio = timing.paired_ratio("pruned", "distilled")
    pruned_us = timing.median("pruned") * 1e6
    kind, value = compress.budget.parse_budget(config.latency_budget)
    share = ratio / value if kind == "share" else pruned_us / value
    return {
        "timed": f"LiteRT, {config.bench_runs} interleaved rounds, paired median",
        "threads": config.threads or 1,
        "distilled_us": timing.median("distilled") * 1e6,
        "pruned_us": pruned_us,
        "ratio": ratio,
        "of_budget": share,
        "within": share <= BUDGET_TOLERANCE,
    }


def latency_us(config: RunConfig, model: Any, path: Path) -> float:
    """`model`'s float32 `.tflite` latency in µs, the median of `config.bench_runs` runs at
    `config.threads`: in LiteRT here, or with `config.android` on the phone (mean). The file
    at `path` is overwritten."""
    to_tflite(inference_function(model), path, quantization="none")
    if config.android:
        return on_phone(config, path).avg_us
    timing = bench_lib.benchmark_tflite(
        path, num_threads=config.threads, num_runs=config.bench_runs
    )
    return timing.p50_us


def with_latency(rows: list[dict], timings: dict) -> list[dict]:
    """The export `rows` with each file's latencies from `bench` (µs): LiteRT mean and median,
    and the phone's mean with --android."""
    merged = []
    for row in rows:
        litert = timings["litert"][row["file"]]
        row = {
            **row,
            "latency_us": litert["avg_us"],
            "latency_p50_us": litert["p50_us"],
            "threads": litert["num_threads"],
        }
        if timings.get("android"):
            row["android_latency_us"] = timings["android"][row["file"]]["avg_us"]
        merged.append(row)
    return merged


PLOTS = {
    "accuracy against latency": "accuracy_latency.png",
    "file sizes": "sizes.png",
    "training loss": "training_curves.png",
}
SEARCH_PLOT = ("latency-budget search", "search.png")
ATTENTION_PLOT = ("attention maps: teacher and students", "attention_maps.png")
OPS_PLOT = ("slowest ops on the phone", "op_profile.png")
PICTURED_IMAGES = 4


def write_reports(result: dict, out: Path, pictures: dict | None = None) -> None:
    """report.json, report.md and the plots it shows; `pictures`: `attention_pictures`."""
    plots.accuracy_latency(result["tflite"], out / PLOTS["accuracy against latency"])
    plots.sizes(result["tflite"], out / PLOTS["file sizes"])
    plots.training_curves(result["history"], out / PLOTS["training loss"])
    shown = dict(PLOTS)
    if result.get("search"):
        shown[SEARCH_PLOT[0]] = SEARCH_PLOT[1]
        plots.search_path(result["search"], out / SEARCH_PLOT[1])
    if pictures:
        shown[ATTENTION_PLOT[0]] = ATTENTION_PLOT[1]
        plots.attention_maps(pictures, out / ATTENTION_PLOT[1])
    if result.get("op_profile"):
        shown[OPS_PLOT[0]] = OPS_PLOT[1]
        plots.op_profile(result["op_profile"]["ops"], out / OPS_PLOT[1])
    report.write_markdown(result, out / "report.md", shown)
    report.write_json(result, out / "report.json")


def attention_pictures(
    ds: data.Dataset, teacher: Any, students: dict[str, Any], count: int = PICTURED_IMAGES
) -> dict | None:
    """The attention maps of the first `count` test images at the stages attention transfer
    pairs (`AttentionTransfer().resolve` of the first student and the teacher), each model
    fed at its own input size: {"images", "stages", "maps": {name: [(B, H_l, W_l)]}}; None
    where the models share no stage."""
    first = next(iter(students.values()))
    try:
        pairs = AttentionTransfer().resolve(first, teacher)
    except ValueError:
        return None

    def test_images(model: Any) -> np.ndarray:
        return np.asarray(ds.inputs("test", static_image_size(model))[:count], "float32")

    maps = {"teacher": stage_maps(teacher, [p.teacher for p in pairs], test_images(teacher))}
    for name, student in students.items():
        maps[name] = stage_maps(student, [p.student for p in pairs], test_images(student))
    shown = test_images(first)
    shown = (shown - shown.min()) / max(float(shown.max() - shown.min()), 1e-12)
    return {"images": shown, "stages": [p.student for p in pairs], "maps": maps}
