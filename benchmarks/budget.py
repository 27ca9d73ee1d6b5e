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
          student, distilled. Its float32 file is timed interleaved against an (untrained)
          ×0.5 one; that paired median ratio r is the budget of the rest, as a share.
  pruned  alpha 0.5 distilled, then `--latency_budget=<r>x`: the NetAdapt search with the
          run's defaults (`--search_step`, `--search_steps`, `--prune_criterion`), which times
          every proposal against the distilled ×0.5 file, interleaved.
  slim    as pruned, with `--sparsity_l1` (network slimming, 1e-4) while it distils and
          fine-tunes, and `--prune_criterion=bn_gamma` (the slimming paper's criterion).

Every latency is a ratio timed interleaved, never an absolute time carried across minutes of
changing load. At the end the seed's float32 files (and the distilled ×0.5 one, to check r) are
timed interleaved once more (`bench.interleaved_tflite`, paired median ratio to narrow's).
`--narrow_from DIR` takes the narrow runs of another process's `--work` (waiting for each), so
two processes can run the variants side by side against one narrow student. Written: `--out`
(default benchmarks/results/budget_<dataset>.json) with every run's accuracies (Keras, test
split), MACs, params, the search's rounds and the interleaved ratios, and a Markdown table.
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

from tfdistill import bench, models
from tfdistill import run as run_lib
from tfdistill.export import inference_function, to_tflite
from tfdistill.export.interpreter import litert_interpreter

RESULTS = Path(__file__).resolve().parent / "results"
DISTILLED = "student_distilled_fp32.tflite"
VARIANTS = ("pruned", "slim")
FP32 = {
    "narrow": DISTILLED,
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
    add("--narrow_from", default=None, help="a --work whose narrow_<seed> runs to use (waits)")
    add("--retime", action="store_true", help="re-time --out's kept runs (see retime)")
    add("--merge", default=None, help="with --retime: a JSON whose variants join --out's")
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


def entry(name: str, result: dict, seconds: float | None) -> dict:
    """A run's report (`run_lib.run`'s result, or its `report.json`): the student's entry."""
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
        "seconds": None if seconds is None else round(seconds, 1),
    }


def one_run(name: str, work: Path, settings: dict[str, Any]) -> dict:
    """A `tfdistill run` into `work / name`: its student's entry."""
    config = run_lib.RunConfig(out=str(work / name), student="mobilenet_v1", **settings)
    start = time.perf_counter()
    result = run_lib.run(config, log=lambda line: print(f"  [{name}] {line}", flush=True))
    return entry(name, result, time.perf_counter() - start)


def finished(folder: Path, hours: float = 6.0) -> dict:
    """The narrow run another process makes in `folder`, once its `report.json` is there."""
    report = folder / "report.json"
    deadline = time.monotonic() + hours * 3600
    while not report.is_file():
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{report} did not appear within {hours} h: start the narrow runs with "
                f"--work {folder.parent}, or drop --narrow_from"
            )
        time.sleep(30)
    return entry("narrow", json.loads(report.read_text()), None)


def budget_share(narrow_file: Path, work: Path, alpha: float) -> float:
    """The latency of `narrow_file` as a share of MobileNet v1 ×`alpha`'s at the same input and
    classes, both float32 files timed interleaved (200 rounds, paired median ratio). The wide
    model is untrained: a dense float model's latency depends on its shapes, not its weights."""
    interpreter = litert_interpreter(narrow_file)
    shape = tuple(int(d) for d in interpreter.get_input_details()[0]["shape"][1:])
    classes = int(interpreter.get_output_details()[0]["shape"][-1])
    wide = models.get("mobilenet_v1", num_classes=classes, input_shape=shape, alpha=alpha)
    wide_file = work / f"{narrow_file.parent.name}_wide_untrained.tflite"
    to_tflite(inference_function(models.with_preprocessing(wide, 1 / 255)), wide_file)
    timing = bench.interleaved_tflite({"narrow": narrow_file, "wide": wide_file}, rounds=200)
    return timing.paired_ratio("narrow", "wide")


def one_seed(seed: int, args: argparse.Namespace, work: Path, teacher: Path | None) -> dict:
    """narrow (or the one `--narrow_from` holds), then each variant searched to narrow's share
    of ×0.5's latency, then their files timed interleaved."""
    settings = {**base_settings(args), "seed": seed}
    if teacher is not None:
        settings["teacher_weights"] = str(teacher)
    narrow_dir = Path(args.narrow_from or work) / f"narrow_{seed}"
    if args.narrow_from:
        runs = {"narrow": finished(narrow_dir)}
    else:
        narrow = {**settings, "student_kwargs": {"alpha": 0.25}}
        runs = {"narrow": one_run(narrow_dir.name, work, narrow)}
    settings.setdefault("teacher_weights", str(narrow_dir / "teacher.keras"))
    share = budget_share(narrow_dir / FP32["narrow"], work, 0.5)
    if not 0 < share < 1:
        raise SystemExit(f"narrow's latency is {share:.3f} of x0.5's, not a budget in (0, 1)")
    budget = f"{share:.4f}x"
    wide = {**settings, "student_kwargs": {"alpha": 0.5}, "latency_budget": budget}
    for variant in args.variants.split(","):
        extra = {"sparsity_l1": args.sparsity_l1, "prune_criterion": "bn_gamma"}
        runs[variant] = one_run(
            f"{variant}_{seed}", work, {**wide, **(extra if variant == "slim" else {})}
        )
    folders = {name: work / f"{name}_{seed}" for name in runs}
    checked = time_together(runs, {**folders, "narrow": narrow_dir}, rounds=100)
    return {"seed": seed, "budget": budget, "share_of_distilled_wide": checked, "runs": runs}


def time_together(runs: dict, folders: dict[str, Path], rounds: int) -> float:
    """Every run's float32 file (in `folders[name]`) and the distilled x0.5 one timed
    interleaved: `median_us` and `ratio_to_narrow` set in `runs`; narrow's share of the
    distilled x0.5's latency returned (the budget came from an untrained x0.5 file, which
    should time the same)."""
    files = {name: folders[name] / FP32[name] for name in runs}
    files["wide"] = next(folders[n] for n in runs if n != "narrow") / DISTILLED
    timing = bench.interleaved_tflite(files, rounds=rounds)
    for name in runs:
        runs[name]["median_us"] = timing.median(name) * 1e6
        runs[name]["ratio_to_narrow"] = timing.paired_ratio(name, "narrow")
    return timing.paired_ratio("narrow", "wide")


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
    if {"pruned", "slim"} <= set(names):
        gaps = [s["runs"]["slim"]["accuracy"] - s["runs"]["pruned"]["accuracy"] for s in seeds]
        table["slim"]["minus_pruned"] = mean_std(gaps)
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
    slim_gap = result["summary"].get("slim", {}).get("minus_pruned")
    if slim_gap:
        lines.append(
            f"\nslim minus pruned (paired by seed): {100 * slim_gap[0]:+.2f} ± "
            f"{100 * slim_gap[1]:.2f} points."
        )
    for seed in result.get("per_seed", []):
        checked = seed.get("share_of_distilled_wide")
        lines.append(
            f"\nSeed {seed['seed']}: budget {seed['budget']} (narrow's share of an untrained "
            "x0.5's latency)"
            + (f"; of the distilled x0.5's at the end: {checked:.4f}." if checked else ".")
        )
    return "\n".join(lines) + "\n"


def retime(args: argparse.Namespace, out: Path) -> dict:
    """`--out`'s result (with `--merge`'s variants joined by seed) with every seed's float32
    files timed interleaved again in this process (200 rounds), found as `<name>_<seed>` under
    the comma-separated `--work` folders and `--narrow_from`: a run's budget search and its
    final timing happened under other load, this timing compares them all at once."""
    result = json.loads(out.read_text())
    others = json.loads(Path(args.merge).read_text())["per_seed"] if args.merge else []
    folders = [Path(f) for f in (args.work or "").split(",") if f]
    folders += [Path(args.narrow_from)] if args.narrow_from else []
    for seed in result["per_seed"]:
        for other in (o for o in others if o["seed"] == seed["seed"]):
            variants = {k: v for k, v in other["runs"].items() if k != "narrow"}
            seed["runs"].update(variants)
        found = {}
        for name in seed["runs"]:
            run = f"{name}_{seed['seed']}"
            matches = [f / run for f in folders if (f / run).is_dir()]
            if not matches:
                raise SystemExit(f"no {run} under {[str(f) for f in folders]}; name it in --work")
            found[name] = matches[0]
        seed["share_of_distilled_wide"] = time_together(seed["runs"], found, rounds=200)
    result["retimed"] = {"machine": bench.machine.describe(), "merged": args.merge}
    result["summary"] = summary(result["per_seed"])
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    bad = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if bad:
        print(f"--variants {bad} not known; choose from {VARIANTS}.", file=sys.stderr)
        return 2
    out = Path(args.out or RESULTS / f"budget_{args.dataset}{'_quick' if args.quick else ''}.json")
    if args.retime:
        result = retime(args, out)
        out.write_text(json.dumps(result, indent=1, default=float))
        out.with_suffix(".md").write_text(markdown(result))
        print(markdown(result), flush=True)
        return 0
    done = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        teacher = Path(args.teacher) if args.teacher else None
        for seed in seeds:
            done.append(one_seed(seed, args, work, teacher))
            first = Path(args.narrow_from or work) / f"narrow_{seeds[0]}"
            teacher = teacher or first / "teacher.keras"
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
