"""The run's report: a JSON file written atomically, and a table for the terminal."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfdistill.artifacts import write_atomic


def write_json(report: dict, path: str | os.PathLike) -> Path:
    return write_atomic(path, lambda f: json.dump(report, f, indent=2, sort_keys=False))


def format_table(report: dict) -> str:
    """One row per model: accuracy on the test split and parameter count."""
    rows = [("teacher", report["teacher"])]
    rows += [(f"student ({name})", entry) for name, entry in report["students"].items()]
    header = f"{'model':<22} {'accuracy':>9} {'params':>10}"
    lines = [f"dataset: {report['dataset']['name']}", header, "-" * len(header)]
    for name, entry in rows:
        lines.append(f"{name:<22} {entry['accuracy']:>9.2%} {entry['params']:>10,}")
    if report.get("tflite"):
        lines += ["", _tflite_table(report["tflite"])]
    return "\n".join(lines)


def _tflite_table(rows: list[dict]) -> str:
    """One row per `.tflite` file: size as stored and gzipped, accuracy, agreement with its
    Keras model, LiteRT latency."""
    header = (
        f"{'file':<34} {'size KB':>8} {'gzip KB':>8} {'accuracy':>9} {'agrees':>8} "
        f"{'latency us':>11}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['file']:<34} {row['size_bytes'] / 1024:>8.1f} "
            f"{row.get('gzip_bytes', 0) / 1024:>8.1f} {row['accuracy']:>9.2%} "
            f"{row['agreement']:>8.2%} {row['latency_us']:>11.1f}"
        )
    return "\n".join(lines)
