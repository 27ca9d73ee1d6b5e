"""Measuring speed: interleaved timing, the float32 peak, the machine's description, and the
inference benchmark's table and README block. No test here asserts a wall-clock time."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tfdistill.bench import interleave, machine, peak
from tfdistill.export.interpreter import litert_interpreter

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """A clock that each workload advances by its own cost per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def workload(self, costs: list[float], log: list[str], name: str):
        cycle = itertools.cycle(costs)

        def run() -> None:
            log.append(name)
            self.now += next(cycle)

        return run


def test_interleave_rotates_the_order_and_divides_by_calls():
    clock, log = FakeClock(), []
    workloads = {
        "a": clock.workload([0.010], log, "a"),
        "b": clock.workload([0.030], log, "b"),
        "c": clock.workload([0.020], log, "c"),
    }
    timed = interleave(workloads, rounds=4, calls={"a": 3, "b": 1, "c": 2}, warmup=2, clock=clock)
    assert timed.orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert log[:6] == ["a", "a", "b", "b", "c", "c"]
    assert log[6:12] == ["a", "a", "a", "b", "c", "c"]
    assert len(log) == 6 + 4 * (3 + 1 + 2)
    assert timed.samples["a"] == pytest.approx([0.010] * 4)
    assert timed.median("b") == pytest.approx(0.030)
    assert timed.ratio("b", "a") == pytest.approx(3.0)


def test_paired_ratio_cancels_a_slow_round_that_the_median_ratio_sees():
    clock, log = FakeClock(), []
    workloads = {
        "a": clock.workload([1.0, 1.0, 3.0, 3.0, 3.0], log, "a"),
        "b": clock.workload([2.0, 2.0, 6.0, 6.0, 6.0], log, "b"),
    }
    timed = interleave(workloads, rounds=5, warmup=0, clock=clock)
    assert timed.paired_ratio("a", "b") == pytest.approx(0.5)
    assert timed.samples["a"] == [1.0, 1.0, 3.0, 3.0, 3.0]


def test_a_median_call_ignores_a_preempted_call_that_the_mean_counts():
    """A slow file whose 10-call chunk always meets one 40-unit stall (the scheduler's slice)
    while the fast file's never does: per-call means make it 7× slower, medians 3×."""
    ratios = {}
    for per_call in ("mean", "median"):
        clock, log = FakeClock(), []
        workloads = {
            "fast": clock.workload([1.0], log, "fast"),
            "slow": clock.workload([3.0] * 9 + [43.0], log, "slow"),
        }
        timed = interleave(workloads, rounds=4, calls=10, warmup=0, clock=clock, per_call=per_call)
        ratios[per_call] = timed.paired_ratio("slow", "fast")
    assert ratios == pytest.approx({"mean": 7.0, "median": 3.0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 0}, "rounds must be an integer >= 1"),
        ({"rounds": 2, "calls": 0}, "calls['x'] must be an integer >= 1"),
        ({"rounds": 2, "calls": {"y": 1}}, "calls has no count for ['x']"),
        ({"rounds": 2, "warmup": -1}, "warmup must be an integer >= 0"),
        ({"rounds": 2, "per_call": "min"}, "per_call must be one of .'mean', 'median'., got 'min'"),
    ],
)
def test_interleave_rejects_bad_counts(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        interleave({"x": lambda: None}, **kwargs)
    with pytest.raises(ValueError, match="at least one workload"):
        interleave({}, rounds=1)


def test_peak_model_is_one_fully_connected_that_multiplies(tmp_path):
    path = peak.matmul_model(tmp_path / "peak.tflite", rows=8, depth=16, units=4)
    interpreter = litert_interpreter(path, use_xnnpack=False)
    assert [op["op_name"] for op in interpreter._get_ops_details()] == ["FULLY_CONNECTED"]
    (detail,) = interpreter.get_input_details()
    assert tuple(detail["shape"]) == (1, 8, 16)
    output = interpreter.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(detail["index"], x.astype(np.float32)[None])
        interpreter.invoke()
        return interpreter.get_tensor(output)[0]

    identity = np.eye(16)
    weights = np.concatenate([run(identity[:8]), run(identity[8:])])
    assert weights.shape == (16, 4) and weights.std() > 0.1
    a = np.random.default_rng(1).standard_normal((8, 16))
    np.testing.assert_allclose(run(a), a @ weights, rtol=1e-5, atol=1e-5)
    assert peak.matmul_macs(8, 16, 4) == 512
    assert peak.matmul_macs() == 256 * 1024 * 1024
    assert peak.measure_peak(path, runs=2) > 0


def test_gmacs_and_bad_sizes():
    assert peak.gmacs(2_000_000_000, 0.5) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="seconds must be > 0"):
        peak.gmacs(1, 0.0)
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        peak.matmul_model("unused.tflite", depth=0)


X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse4_2 avx avx2 fma bmi2
processor\t: 1
model name\t: ignored second core
flags\t\t: fpu avx512f
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes asimddp i8mm
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_reads_the_first_core():
    assert machine.parse_cpuinfo(X86_CPUINFO) == {
        "model": "AMD EPYC 7B13",
        "flags": ["sse4_2", "avx", "avx2", "fma"],
    }
    assert machine.parse_cpuinfo(ARM_CPUINFO) == {
        "model": None,
        "flags": ["asimd", "asimddp", "i8mm"],
    }


def test_describe_reads_a_proc_folder(tmp_path):
    (tmp_path / "cpuinfo").write_text(X86_CPUINFO)
    (tmp_path / "meminfo").write_text("MemTotal:       16384 kB\nMemFree: 1 kB\n")
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    described = machine.describe(tmp_path, cgroup=tmp_path)
    assert described["cpu"] == "AMD EPYC 7B13"
    assert described["cpu_quota"] == 1.5
    assert described["memory_bytes"] == 16384 * 1024
    assert 1 <= described["cores_usable"] <= described["cores_logical"]
    assert described["packages"]["tfdistill"] is not None
    asked = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    assert described["onednn"] is (asked == "1") if asked in ("0", "1") else True
    assert isinstance(described["onednn"], bool)
    json.dumps(described)
    empty = machine.describe(tmp_path / "missing", cgroup=tmp_path / "missing")
    assert empty["memory_bytes"] is None and empty["cpu_features"] == []
    assert empty["cpu_quota"] is None and empty["cpu"]


def load_benchmark(module: str, script: str):
    """benchmarks/`script`.py imported as `module`."""
    spec = importlib.util.spec_from_file_location(module, ROOT / f"benchmarks/{script}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture(scope="module")
def inference():
    return load_benchmark("inference", "inference")


def _payload() -> dict:
    latency = {"1": {"ms": 2.0, "gmacs": 5.0, "of_peak": 0.25}}
    return {
        "timestamp": "2026-12-02T00:00:00+00:00",
        "command": "python benchmarks/inference.py",
        "machine": machine.parse_cpuinfo(X86_CPUINFO)
        | {
            "cpu": "AMD EPYC 7B13",
            "cpu_features": ["avx2"],
            "cores_usable": 2,
            "cores_logical": 2,
            "packages": {"ai-edge-litert": "2.3.0", "tensorflow": "2.21.0"},
        },
        "sections": {
            "peak": {"threads": {"1": {"ms": 10.0, "gmacs": 20.0}}},
            "zoo": {
                "epochs": 10,
                "peak_gmacs": {"1": 20.0},
                "models": {
                    "tiny": {
                        "params": 1234,
                        "macs": 10_000_000,
                        "accuracy": 0.9,
                        "none": {"size_bytes": 2048, "accuracy": 0.9, "threads": latency},
                        "int8": {"size_bytes": 1024, "accuracy": 0.85, "threads": latency},
                    }
                },
            },
            "twins": {
                "cases": {
                    "mobilenet_v1 1 224": {
                        "threads": {
                            "1": {
                                "none": {
                                    "ms_a": 10.0,
                                    "ms_b": 10.0,
                                    "ratio": 1.0,
                                    "paired_ratio": 0.99,
                                }
                            }
                        }
                    }
                }
            },
        },
    }


def test_render_writes_one_row_a_model(inference):
    block = inference.render(_payload())
    assert block.startswith(inference.BEGIN) and block.endswith(inference.END)
    row = next(line for line in block.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        "tiny",
        "1,234",
        "10.0",
        "2.0",
        "1.0",
        "2.00",
        "2.00",
        "5.0",
        "25",
        "90.0",
        "85.0",
    ]
    assert "| mobilenet_v1 1 224 | fp32 | 1 | 10.00 | 10.00 | 1.000 | 0.990 |" in block
    assert "20.0 GMAC/s" in block


def test_update_readme_replaces_only_the_block(inference, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# head\n\n{inference.BEGIN}\nold\n{inference.END}\n\ntail\n")
    inference.update_readme(readme, f"{inference.BEGIN}\nnew\n{inference.END}")
    assert readme.read_text() == f"# head\n\n{inference.BEGIN}\nnew\n{inference.END}\n\ntail\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="lacks the markers"):
        inference.update_readme(readme, "x")
    assert readme.read_text() == "no markers\n"


def test_parse_args_names_bad_sections(inference, capsys):
    with pytest.raises(SystemExit):
        inference.parse_args(["--sections", "peak,speed"])
    assert "unknown ['speed']" in capsys.readouterr().err
    args = inference.parse_args(["--sections", "twins,peak", "--threads", "2,1"])
    assert args.sections == ["peak", "twins"] and args.threads == [1, 2]
    assert inference.README.read_text().count(inference.BEGIN) == 1


def test_a_partial_run_keeps_the_sections_it_skipped(inference, tmp_path):
    path = tmp_path / "inference.json"
    earlier = _payload()
    earlier["measured"] = dict.fromkeys(earlier["sections"], earlier["timestamp"])
    path.write_text(json.dumps(earlier))
    later = _payload()
    later["timestamp"] = "2026-12-03T00:00:00+00:00"
    later["sections"] = {"twins": {"cases": {}}}
    inference.merge_earlier(path, later)
    assert list(later["sections"]) == ["peak", "zoo", "twins"]
    assert later["sections"]["twins"] == {"cases": {}}
    assert later["sections"]["zoo"] == earlier["sections"]["zoo"]
    assert later["measured"] == {
        "twins": "2026-12-03T00:00:00+00:00",
        "peak": earlier["timestamp"],
        "zoo": earlier["timestamp"],
    }
    assert f"Kept from earlier runs: peak ({earlier['timestamp']})" in inference.render(later)


@pytest.fixture(scope="module")
def ablation():
    return load_benchmark("ablation", "ablation")


def test_ablation_methods_build_the_runs_terms(ablation, capsys):
    from tfdistill import DIST, AttentionTransfer, DecoupledKD, FeatureHint, SoftTargetLoss

    args = ablation.parse_args(
        ["--preset", "cifar_subset", "--methods", ",".join(ablation.METHODS)]
        + ["--method_kwargs", '{"dist": {"beta": 2.0}}', "--hint_beta", "50"]
    )
    assert args.shared_teacher and args.teacher_file.name.endswith("_teacher.keras")
    terms = {method: ablation.terms_of(method, args) for method in args.methods}
    assert {m for m, t in terms.items() if t.alpha == 1.0} == {"scratch", "at", "gat", "fitnet"}
    assert terms["kd"].alpha == args.alpha == 0.1
    assert isinstance(terms["dkd"].loss, DecoupledKD) and terms["dkd"].loss.beta == 8.0
    assert isinstance(terms["dist"].loss, DIST) and terms["dist"].loss.beta == 2.0
    assert isinstance(terms["kd+ls"].loss, SoftTargetLoss) and terms["kd+ls"].loss.standardize
    assert isinstance(terms["at+kd"].features, AttentionTransfer)
    for method in ("fitnet", "kd+fitnet"):
        assert isinstance(terms[method].features, FeatureHint)
        assert terms[method].features.beta == 50.0 and terms[method].loss is None
    assert ablation.CACHEABLE == {m for m, t in terms.items() if t.features is None}
    quick = ablation.parse_args(["--preset", "cifar_subset", "--quick"])
    assert quick.out.name == "ablation_cifar10_subset_quick.json"
    for bad in (["--methods", "kd,hint"], ["--method_kwargs", '{"dist": {"tau": 1}}']):
        with pytest.raises(SystemExit):
            ablation.parse_args(bad)
    assert "unknown method(s) ['hint']" in capsys.readouterr().err


def test_ablation_pairs_with_scratch_and_merges_other_methods(ablation):
    args = ablation.parse_args(["--methods", "scratch,kd", "--settings", "full", "--seeds", "0,1"])
    runs = [
        {"setting": "full", "method": m, "seed": s, "accuracy": a, "train_seconds": 1.0}
        for m, s, a in [("scratch", 0, 0.5), ("scratch", 1, 0.6), ("kd", 0, 0.6), ("kd", 1, 0.8)]
    ]
    teachers = [{"accuracy": 0.9, "weights_sha256": "a"}]
    cell = ablation.summarize(runs, teachers, args)["accuracy"]["full"]["kd"]
    assert cell["vs_scratch_mean"] == pytest.approx(15.0)
    assert cell["vs_scratch_std"] == pytest.approx(7.0710678)
    fit = [{**runs[2], "method": "fitnet", "accuracy": 0.7}]
    previous = {"runs": runs, "teachers": teachers, "invocations": [{"methods": ["kd"]}]}
    args.methods = ["kd", "fitnet"]  # kd rerun: its earlier runs go
    kept, kept_teachers, invocations = ablation.merged(previous, args, fit, teachers)
    assert [r["method"] for r in kept] == ["scratch", "scratch", "fitnet"]
    assert kept_teachers is teachers and invocations == previous["invocations"]
    with pytest.raises(SystemExit, match="teachers"):
        ablation.merged(previous, args, fit, [{"weights_sha256": "b"}])


@pytest.fixture(scope="module")
def budget_bench():
    return load_benchmark("budget_bench", "budget")


def test_budget_benchmark_pairs_each_variant_with_the_narrow_student(budget_bench, capsys):
    def seed(narrow: float, pruned: float, ratio: float) -> dict:
        run = {"macs": 100, "params": 10}
        return {
            "runs": {
                "narrow": {**run, "accuracy": narrow, "ratio_to_narrow": 1.0},
                "pruned": {**run, "accuracy": pruned, "ratio_to_narrow": ratio},
            }
        }

    table = budget_bench.summary([seed(0.80, 0.85, 0.9), seed(0.70, 0.71, 1.1)])
    assert table["pruned"]["minus_narrow"] == pytest.approx([0.03, np.std([0.05, 0.01], ddof=1)])
    assert table["pruned"]["ratio_to_narrow"] == pytest.approx([1.0, np.std([0.9, 1.1], ddof=1)])
    assert "minus_narrow" not in table["narrow"]
    text = budget_bench.markdown({"dataset": "digits", "seeds": [0, 1], "summary": table})
    assert "| pruned | 78.00 ± 9.90 | +3.00 ± 2.83 | 1.000 ± 0.141 | 100 | 10 |" in text
    quick = budget_bench.parse_args(["--quick", "--student_epochs", "3"])
    assert budget_bench.base_settings(quick)["student_epochs"] == 1
    assert budget_bench.main(["--variants", "pruned,wide"]) == 2
    assert "--variants ['wide'] not known" in capsys.readouterr().err


def test_budget_benchmark_takes_its_budget_as_a_share_timed_interleaved(budget_bench, tmp_path):
    """The narrow file's latency as a share of ×0.5's, from an untrained ×0.5 file at the same
    input and classes: about 1 against its own width, well below 1 against twice the width; a
    narrow run of another process is read from its `report.json`."""
    import json

    from tfdistill import models
    from tfdistill.export import inference_function, to_tflite

    narrow = models.get("mobilenet_v1", num_classes=10, input_shape=(32, 32, 3), alpha=0.25)
    folder = tmp_path / "narrow_0"
    path = to_tflite(inference_function(models.with_preprocessing(narrow, 1 / 255)), folder / "n")
    assert 0.75 < budget_bench.budget_share(path, tmp_path, 0.25) < 1.33
    assert budget_bench.budget_share(path, tmp_path, 0.5) < 0.75
    student = {"accuracy": 0.5, "macs": 3, "params": 2}
    report = {"teacher": {"accuracy": 0.6}, "students": {"distilled": student, "scratch": student}}
    (folder / "report.json").write_text(json.dumps(report))
    assert budget_bench.finished(folder)["accuracy"] == 0.5
