"""The run's report: a JSON file written atomically, and a table for the terminal."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfdistill.artifacts import write_atomic


def write_json(report: dict, path: str | os.PathLike) -> Path:
    return write_atomic(path, lambda f: json.dump(report, f, indent=2, sort_keys=False))


def student_label(key: str) -> str:
    """ "student (pruned channels)" for report key "pruned_channels"."""
    return f"student ({key.replace('_', ' ')})"


def model_rows(report: dict) -> list[tuple[str, dict]]:
    """(label, entry) of the teacher, an ensemble's teachers, then the students."""
    teacher = report["teacher"]
    members = teacher.get("members", [])
    rows = [("teacher (ensemble)" if members else "teacher", teacher)]
    rows += [(f"  teacher {i} ({m['file']})", m) for i, m in enumerate(members)]
    return rows + [(student_label(name), entry) for name, entry in report["students"].items()]


def format_table(report: dict) -> str:
    """One row per model: accuracy on the test split and parameter count."""
    rows = model_rows(report)
    width = max(22, *(len(name) for name, _ in rows))
    header = f"{'model':<{width}} {'accuracy':>9} {'params':>10}"
    lines = [f"dataset: {report['dataset']['name']}", header, "-" * len(header)]
    for name, entry in rows:
        lines.append(f"{name:<{width}} {entry['accuracy']:>9.2%} {entry['params']:>10,}")
    if report.get("tflite"):
        lines += ["", _tflite_table(report["tflite"])]
    return "\n".join(lines)


def _tflite_table(rows: list[dict]) -> str:
    """One row per `.tflite` file: size as stored and gzipped, accuracy, agreement with its
    Keras model, LiteRT latency."""
    phone = any("android_latency_us" in row for row in rows)
    width = max(34, *(len(row["file"]) for row in rows))
    header = (
        f"{'file':<{width}} {'size KB':>8} {'gzip KB':>8} {'accuracy':>9} {'agrees':>8} "
        f"{'latency us':>11}" + (f" {'phone us':>11}" if phone else "")
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['file']:<{width}} {row['size_bytes'] / 1024:>8.1f} "
            f"{row.get('gzip_bytes', 0) / 1024:>8.1f} {row['accuracy']:>9.2%} "
            f"{row['agreement']:>8.2%} {row['latency_us']:>11.1f}"
            + (f" {row['android_latency_us']:>11.1f}" if phone else "")
        )
    return "\n".join(lines)


def markdown(report: dict, plots: dict[str, str] | None = None) -> str:
    """The report as Markdown: the models table, the `.tflite` table, the plots (name -> file
    name beside the report) and the stage timings."""
    lines = [f"# tfdistill run on {report['dataset']['name']}", ""]
    lines += ["| model | accuracy | params | MACs |", "|---|---|---|---|"]
    for name, entry in model_rows(report):
        lines.append(
            f"| {name} | {entry['accuracy']:.2%} | {entry['params']:,} | {entry['macs']:,} |"
        )
    if report.get("tflite"):
        phone = any("android_latency_us" in row for row in report["tflite"])
        lines += [
            "",
            "| file | quantizer | size KB | gzip KB | accuracy | agrees with Keras | latency µs |"
            + (" phone µs |" if phone else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if phone else ""),
        ]
        for row in report["tflite"]:
            lines.append(
                f"| {row['file']} | {row.get('quantizer', 'converter')} | "
                f"{row['size_bytes'] / 1024:.1f} | "
                f"{row.get('gzip_bytes', 0) / 1024:.1f} | {row['accuracy']:.2%} | "
                f"{row['agreement']:.2%} | {row['latency_us']:.1f} |"
                + (f" {row['android_latency_us']:.1f} |" if phone else "")
            )
    if report.get("search"):
        lines += ["", *_search_lines(report["search"])]
    for entry in report.get("selective") or []:
        lines += ["", selective_line(entry)]
    for title, file in (plots or {}).items():
        lines += ["", f"![{title}]({file})"]
    if report.get("tensorboard"):
        lines += ["", f"Training curves: `tensorboard --logdir {report['tensorboard']}`."]
    timings = report.get("timings_s", {})
    if timings:
        lines += ["", "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items())]
    return "\n".join(lines) + "\n"


def selective_line(entry: dict) -> str:
    """One `--max_accuracy_drop` entry as a sentence: the ops kept in float, the accuracy, and
    the size and latency against the float32 and int8 files."""
    drop = (entry["float_accuracy"] - entry["accuracy"]) * 100
    head = (
        f"Selective quantization of {entry['model']} ({entry['recipe']}, at most "
        f"{entry['max_drop']:g} points below float32's {entry['float_accuracy']:.2%}): "
    )
    if not entry["float_ops"]:
        return head + f"not needed, every op quantized gives {entry['full_accuracy']:.2%}."
    met = "within" if entry["met"] else "NOT within"
    costs = ", ".join(
        f"{key} {c['size_bytes'] / 1024:.1f} KB"
        + (f" {c['latency_us']:.1f} µs" if c.get("latency_us") is not None else "")
        for key, c in (entry.get("cost") or {}).items()
        if c
    )
    ops = ", ".join(f"`{op}`" for op in entry["float_ops"])
    return head + (
        f"{len(entry['float_ops'])} op(s) kept in float ({ops}): {entry['accuracy']:.2%} "
        f"({drop:.2f} points, {met}; all ops quantized: {entry['full_accuracy']:.2%}). "
        f"Size and latency: {costs}."
    )


def _check_lines(check: dict | None) -> list[str]:
    """The interleaved timing of the budget student against the distilled one, if any."""
    if not check:
        return []
    verdict = "within" if check["within"] else "not within"
    return [
        "",
        f"Timed against the distilled student ({check['timed']}, {check['threads']} thread(s)): "
        f"{check['pruned_us']:.1f} µs against {check['distilled_us']:.1f} µs, a ratio of "
        f"{check['ratio']:.3f}; {check['of_budget']:.2f}× the budget, {verdict} 1.1×.",
    ]


def _search_lines(search: dict) -> list[str]:
    """The `--latency_budget` search as Markdown: the budget, then one row per round."""
    if search.get("check"):
        timed = search.get("timed", "single measurements")
        met = f"{timed}; the files are timed interleaved below"
    else:
        met = "met" if search["met"] else "not met"
    lines = [
        f"Latency budget {search['budget']}: {search['budget_us']:.1f} µs from "
        f"{search['start_us']:.1f} µs; after the search {search['searched_us']:.1f} µs, after "
        f"fine-tuning {search['final_us']:.1f} µs ({met}). Proposals ranked by "
        f"{search['selected_by']}.",
        *_check_lines(search.get("check")),
        "",
        "| round | group cut | channels removed / kept | latency µs | agreement | MACs |",
        "|---|---|---|---|---|---|",
    ]
    for i, chosen in enumerate((r["chosen"] for r in search["rounds"]), 1):
        lines.append(
            f"| {i} | {chosen['group']} | {chosen['removed']} / {chosen['channels']} | "
            f"{chosen['latency_us']:.1f} | {chosen['accuracy']:.2%} | {chosen['macs']:,} |"
        )
    return lines


def write_markdown(
    report: dict, path: str | os.PathLike, plots: dict[str, str] | None = None
) -> Path:
    return write_atomic(path, lambda f: f.write(markdown(report, plots)))
