"""The latency-budget student against a narrower one of the same family, and network slimming +
pruning against pruning alone, at equal LiteRT latency, over several seeds.

    python benchmarks/budget.py                     # digits, seeds 0 1 2
    python benchmarks/budget.py --seeds 0 --variants pruned
    python benchmarks/budget.py --dataset cifar10 --data_dir ../shared/data/cifar10-subset
    python benchmarks/budget.py --quick             # smoke run: 1 seed, 1 + 1 epochs, 0.3 steps

Every model is a `tfdistill run` (in this process, `run_lib.run`), so the benchmark measures
what the command does. Per dataset one teacher: the first run trains it, every later run loads
its `teacher.keras` (`--teacher_weights`). Per seed, in this order:

  narrow  `--student=mobilenet_v1 --student_kwargs='{"alpha": 0.25}'`: the width-multiplier
          student, distilled; its float32 file's LiteRT median (µs) is the budget of the rest.
  pruned  alpha 0.5 distilled, then `--latency_budget=<narrow's µs>us`: the NetAdapt search
          with the run's defaults (`--search_step`, `--search_steps`, `--prune_criterion`).
  slim    as pruned, with `--sparsity_l1` (network slimming, 1e-4) while it distils and
          fine-tunes, and `--prune_criterion=bn_gamma` (the slimming paper's criterion).

Then the seed's float32 files are timed interleaved (`bench.interleaved_tflite`, paired median
ratio to narrow's), so "equal latency" is checked in one process rather than trusted across
runs. Written: `--out` (default benchmarks/results/budget_<dataset>.json) with every run's
accuracies (Keras, test split), MACs, params, the search's rounds and the interleaved ratios,
and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tfdistill import bench
from tfdistill import run as run_lib

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("pruned", "slim")
FP32 = {
    "narrow": "student_distilled_fp32.tflite",
    "pruned": "student_pruned_channels_fp32.tflite",
    "slim": "student_pruned_channels_fp32.tflite",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--dataset", default="digits", help="digits (default), cifar10, ...")
    add("--data_dir", default=None, help="the dataset's folder (CIFAR: the pickle layout)")
    add("--seeds", default="0,1,2", help="comma-separated seeds")
    add("--variants", default=",".join(VARIANTS), help="pruned, slim, or both")
    add("--student_epochs", type=int, default=None, help="default: the run's")
    add("--teacher_epochs", type=int, default=None, help="default: the run's")
    add("--compress_epochs", type=int, default=None, help="default: the run's")
    add("--search_step", type=float, default=None, help="default: the run's 0.1")
    add("--teacher_views", type=int, default=None, help="default: the run's 0 (online)")
    add("--teacher", default=None, help="a teacher.keras for every run (default: the first trains)")
    add("--work", default=None, help="keep the runs' folders here (default: a temporary folder)")
    add("--sparsity_l1", type=float, default=1e-4, help="slim's penalty (default 1e-4)")
    add("--quick", action="store_true", help="1 seed, 1 + 1 epochs, 2 search steps")
    add("--out", default=None, help="JSON path (default results/budget_<dataset>.json)")
    return parser.parse_args(argv)


def base_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig settings every run of the benchmark shares."""
    settings: dict[str, Any] = {"dataset": args.dataset, "quantize": ("none",)}
    if args.data_dir:
        settings["data_dir"] = args.data_dir
    names = ("student_epochs", "teacher_epochs", "compress_epochs", "search_step", "teacher_views")
    for name in names:
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if args.quick:
        settings.update(
            student_epochs=1, teacher_epochs=1, compress_epochs=1, search_steps=2, search_step=0.3
        )
    return settings


def one_run(name: str, work: Path, settings: dict[str, Any]) -> dict:
    """A `tfdistill run` into `work / name`: its students' entries, rows and search."""
    config = run_lib.RunConfig(out=str(work / name), student="mobilenet_v1", **settings)
    start = time.perf_counter()
    result = run_lib.run(config, log=lambda line: print(f"  [{name}] {line}", flush=True))
    key = "distilled" if name.startswith("narrow") else "pruned_channels"
    student = result["students"][key]
    return {
        "teacher_accuracy": result["teacher"]["accuracy"],
        "accuracy": student["accuracy"],
        "macs": student["macs"],
        "params": student["params"],
        "distilled_accuracy": result["students"]["distilled"]["accuracy"],
        "scratch_accuracy": result["students"]["scratch"]["accuracy"],
        "search": result.get("search"),
        "seconds": round(time.perf_counter() - start, 1),
    }


def one_seed(seed: int, args: argparse.Namespace, work: Path, teacher: Path | None) -> dict:
    """narrow, then each variant at narrow's latency, then their files timed interleaved."""
    settings = {**base_settings(args), "seed": seed}
    if teacher is not None:
        settings["teacher_weights"] = str(teacher)
    runs = {
        "narrow": one_run(f"narrow_{seed}", work, {**settings, "student_kwargs": {"alpha": 0.25}})
    }
    settings.setdefault("teacher_weights", str(work / f"narrow_{seed}" / "teacher.keras"))
    latency = bench.benchmark_tflite(work / f"narrow_{seed}" / FP32["narrow"], num_runs=200)
    budget = f"{latency.p50_us:.1f}us"
    wide = {**settings, "student_kwargs": {"alpha": 0.5}, "latency_budget": budget}
    for variant in args.variants.split(","):
        extra = {"sparsity_l1": args.sparsity_l1, "prune_criterion": "bn_gamma"}
        runs[variant] = one_run(
            f"{variant}_{seed}", work, {**wide, **(extra if variant == "slim" else {})}
        )
    files = {name: work / f"{name}_{seed}" / FP32[name] for name in runs}
    timing = bench.interleaved_tflite(files, rounds=100)
    for name in runs:
        runs[name]["median_us"] = timing.median(name) * 1e6
        runs[name]["ratio_to_narrow"] = timing.paired_ratio(name, "narrow")
    return {"seed": seed, "budget": budget, "runs": runs}


def mean_std(values: list[float]) -> list[float]:
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summary(seeds: list[dict]) -> dict:
    """Per model: mean ± std over seeds of accuracy and of the latency ratio to narrow; per
    variant, its accuracy minus narrow's, paired by seed."""
    names = list(seeds[0]["runs"])
    table = {}
    for name in names:
        runs = [s["runs"][name] for s in seeds]
        table[name] = {
            "accuracy": mean_std([r["accuracy"] for r in runs]),
            "ratio_to_narrow": mean_std([r["ratio_to_narrow"] for r in runs]),
            "macs": mean_std([r["macs"] for r in runs]),
            "params": mean_std([r["params"] for r in runs]),
        }
        if name != "narrow":
            gaps = [s["runs"][name]["accuracy"] - s["runs"]["narrow"]["accuracy"] for s in seeds]
            table[name]["minus_narrow"] = mean_std(gaps)
    return table


def markdown(result: dict) -> str:
    lines = [
        f"# Latency budget against width multiplier: {result['dataset']}, seeds {result['seeds']}",
        "",
        "| student | test acc % | Δ narrow (paired) | latency / narrow's | MACs | params |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["summary"].items():
        gap = row.get("minus_narrow")
        delta = f"{100 * gap[0]:+.2f} ± {100 * gap[1]:.2f}" if gap else ""
        lines.append(
            f"| {name} | {100 * row['accuracy'][0]:.2f} ± {100 * row['accuracy'][1]:.2f} | "
            f"{delta} | {row['ratio_to_narrow'][0]:.3f} ± {row['ratio_to_narrow'][1]:.3f} | "
            f"{row['macs'][0]:,.0f} | {row['params'][0]:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    bad = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if bad:
        print(f"--variants {bad} not known; choose from {VARIANTS}.", file=sys.stderr)
        return 2
    out = Path(args.out or RESULTS / f"budget_{args.dataset}{'_quick' if args.quick else ''}.json")
    done = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        teacher = Path(args.teacher) if args.teacher else None
        for seed in seeds:
            done.append(one_seed(seed, args, work, teacher))
            teacher = teacher or work / f"narrow_{seeds[0]}" / "teacher.keras"
            result = {
                "dataset": args.dataset,
                "seeds": [s["seed"] for s in done],
                "settings": {**base_settings(args), "sparsity_l1": args.sparsity_l1},
                "machine": bench.machine.describe(),
                "minutes": round((time.perf_counter() - start) / 60, 1),
                "summary": summary(done),
                "per_seed": done,
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1, default=float))
            out.with_suffix(".md").write_text(markdown(result))
            print(markdown(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
