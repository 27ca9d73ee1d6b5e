"""Pruning sparsity sweep, and quantization-aware against post-training int8, on the
`tfdistill run` student, over several seeds.

    python benchmarks/compress.py          # digits, seeds 0-2, sparsities 0, .25, .5, .75
    python benchmarks/compress.py --seeds 0 --sparsities 0.5 --compress_epochs 2

Per seed, the stages of `tfdistill run` (teacher, distilled student on 10 labels per class) and
then, for each sparsity s: s = 0 is the distilled student itself; s > 0 is `compress.prune` to s,
distilling from the cached teacher logits for --compress_epochs (as `run --prune=s`). Each model
is exported as post-training int8 (calibrated on 1000 training images) and fine-tuned by
`compress.quantize_aware` for --compress_epochs (keeping the zeros when s > 0, as `run --qat`)
and exported as int8 without calibration. Every file is evaluated on the 360 test images in
LiteRT. Printed and written (--out, default benchmarks/results/compress.json, git-ignored):
per sparsity, mean ± std over seeds of the Keras accuracy, the PTQ and QAT int8 accuracies,
and the int8 files' gzipped sizes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfdistill import compress, data
from tfdistill import run as run_lib
from tfdistill.export import evaluate_tflite, file_size, to_tflite
from tfdistill.run import delivery, training


def one_seed(seed: int, sparsities: list[float], epochs: int, work: Path) -> list[dict]:
    config = run_lib.RunConfig(out=str(work), seed=seed, compress_epochs=epochs)
    keras.utils.set_random_seed(seed)
    ds = data.load(config.dataset).raw_pixels()
    labeled = data.label_subset(ds.y_train, config.labels_per_class, seed=seed)
    teacher = training.train_teacher(config, ds).model
    init = training.classifier(config.student, config.student_kwargs, ds, "student").get_weights()
    elements = training.distillation_elements(config, ds, teacher, labeled)
    train = training.epoch_batches(config, elements)
    distilled = training.distil(config, ds, teacher, elements, init).model
    rows = []
    for sparsity in sparsities:
        began = time.perf_counter()
        if sparsity:
            config = run_lib.RunConfig(
                out=str(work), seed=seed, compress_epochs=epochs, prune=sparsity
            )
            model = training.prune(config, ds, distilled, train)
        else:
            config = run_lib.RunConfig(out=str(work), seed=seed, compress_epochs=epochs)
            model = distilled
        qat = training.quantize_aware(config, model, train)
        ptq_path = to_tflite(
            model,
            work / f"ptq_{seed}_{sparsity}.tflite",
            quantization="int8",
            representative_data=ds.x_train,
            num_calibration_samples=delivery.CALIBRATION_SAMPLES,
        )
        qat_path = to_tflite(qat, work / f"qat_{seed}_{sparsity}.tflite", quantization="int8")
        row = {
            "seed": seed,
            "sparsity": sparsity,
            "measured_sparsity": compress.overall_sparsity(model),
            "keras_accuracy": training.accuracy(model, ds, 256),
            "ptq_int8_accuracy": evaluate_tflite(ptq_path, ds.x_test, ds.y_test).accuracy,
            "qat_int8_accuracy": evaluate_tflite(qat_path, ds.x_test, ds.y_test).accuracy,
            "ptq_int8_gzip_bytes": file_size(ptq_path).gzip_bytes,
            "qat_int8_gzip_bytes": file_size(qat_path).gzip_bytes,
            "seconds": round(time.perf_counter() - began, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    keys = ("keras_accuracy", "ptq_int8_accuracy", "qat_int8_accuracy")
    sizes = ("ptq_int8_gzip_bytes", "qat_int8_gzip_bytes")
    summary = []
    for sparsity in sorted({r["sparsity"] for r in rows}):
        group = [r for r in rows if r["sparsity"] == sparsity]
        entry = {"sparsity": sparsity, "seeds": len(group)}
        for key in keys + sizes:
            values = [r[key] for r in group]
            entry[key] = statistics.mean(values)
            entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def table(summary: list[dict]) -> str:
    lines = [
        "| sparsity | Keras | PTQ int8 | QAT int8 | PTQ gzip KB | QAT gzip KB |",
        "|---|---|---|---|---|---|",
    ]
    for e in summary:
        cells = [
            f"{100 * e[k]:.1f} ± {100 * e[k + '_std']:.1f}"
            for k in ("keras_accuracy", "ptq_int8_accuracy", "qat_int8_accuracy")
        ]
        sizes = [f"{e[k] / 1024:.2f}" for k in ("ptq_int8_gzip_bytes", "qat_int8_gzip_bytes")]
        lines.append(f"| {e['sparsity']:.2f} | " + " | ".join(cells + sizes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sparsities", default="0,0.25,0.5,0.75")
    parser.add_argument("--compress_epochs", type=int, default=6)
    parser.add_argument("--out", default="benchmarks/results/compress.json")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    sparsities = [float(s) for s in args.sparsities.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in seeds:
            rows += one_seed(seed, sparsities, args.compress_epochs, Path(work))
    summary = summarize(rows)
    print(table(summary))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "config": vars(args),
        "rows": rows,
        "summary": summary,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(table(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
