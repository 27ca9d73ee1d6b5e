"""The README's digits student in each converter mode and LiteRT Quantizer recipe: file size,
test accuracy, agreement with Keras and LiteRT latency (one thread, files timed interleaved),
plus selective quantization at --max_drop points. Prints the table in docs/mobile.md.

    python tools/litert_recipes.py [--out DIR] [--max_drop 0.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras

import tfdistill
from tfdistill import bench, export

MODES = {
    "fp32": {"quantization": "none"},
    "int8": {"quantization": "int8"},
    "int16x8": {"quantization": "int16x8"},
    **{recipe: {"quantizer": "litert", "recipe": recipe} for recipe in export.RECIPES},
}


def trained_student(digits: tfdistill.data.Dataset) -> keras.Model:
    """The README's teacher and distilled student (fewer epochs), seed 0."""
    keras.utils.set_random_seed(0)
    train = digits.as_tf_dataset("train", 64, shuffle=True, seed=0)
    teacher = tfdistill.models.get("convnet", widths=(16, 32, 64), depth=2)
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(train, epochs=10, verbose=0)
    student = tfdistill.models.get("convnet", widths=(4, 8, 16))
    distiller = tfdistill.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), alpha=0.1, temperature=4.0)
    distiller.fit(train, epochs=20, verbose=0)
    return distiller.student


def measure(out: Path, max_drop: float) -> dict:
    """{mode: size, accuracy, agreement, latency} for every mode, and the selective result."""
    digits = tfdistill.data.load("digits")
    student = trained_student(digits)
    x, y = digits.x_test, digits.y_test
    paths, rows = {}, {}
    for mode, settings in MODES.items():
        paths[mode] = export.to_tflite(
            student, out / f"student_{mode}.tflite", representative_data=digits.x_train, **settings
        )
    selective = export.selective_quantize(
        student, out / "student_selective.tflite", x, y, max_drop,
        representative_data=digits.x_train,
    )  # fmt: skip
    paths["selective"] = selective.path
    timed = bench.interleaved_tflite(paths, num_threads=1, rounds=40, calls=20)
    for mode, path in paths.items():
        checked = export.evaluate_tflite(path, x, y, reference=student)
        rows[mode] = {
            "size_bytes": path.stat().st_size,
            "accuracy": checked.accuracy,
            "agreement": checked.agreement,
            "latency_us": timed.median(mode) * 1e6,
            "vs_fp32": timed.paired_ratio(mode, "fp32"),
        }
    return {"rows": rows, "selective": selective.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("litert_recipes"))
    parser.add_argument("--max_drop", type=float, default=0.5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = measure(args.out, args.max_drop)
    print("| file | size KB | accuracy | agrees with Keras | latency µs | × fp32 |")
    print("|---|---|---|---|---|---|")
    for mode, row in result["rows"].items():
        print(
            f"| {mode} | {row['size_bytes'] / 1024:.1f} | {row['accuracy']:.2%} | "
            f"{row['agreement']:.2%} | {row['latency_us']:.1f} | {row['vs_fp32']:.2f} |"
        )
    print(json.dumps(result["selective"], indent=2))


if __name__ == "__main__":
    main()
