"""The run package's seams on stand-in stages and flags: the runner's one loop (reuse, the
re-run-everything-after rule, seeds, workers leaving after the distributed stages) and the
options generated from `RunConfig`'s fields."""

import dataclasses
import json
import random

import pytest
import tensorflow as tf
from absl import flags

from tfdistill import cli, resume
from tfdistill import run as run_lib
from tfdistill.progress import Progress
from tfdistill.run import config as config_lib
from tfdistill.run import runner
from tfdistill.run.stages import STAGES, Stage
from tfdistill.run.state import Run

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed


class Fake(Stage):
    """A stage that writes `<name>.txt`, draws a random number where it runs, and logs what
    happened to it in `calls`."""

    def __init__(self, name, calls, *, distributed=False, ledgered=True, own=None):
        self.name, self.calls, self.own = name, calls, own
        self.distributed, self.ledgered = distributed, ledgered

    def settings(self, config):
        return self.own

    def files(self, run, record):
        return [f"{self.name}.txt"]

    def work(self, run):
        (run.keep / f"{self.name}.txt").write_text(self.name)
        self.calls.append(("work", self.name))
        return random.random(), {"drawn": random.random()}

    def reload(self, run, record):
        self.calls.append(("reload", self.name))
        return "reloaded", record

    def deliver(self, run, value, record):
        run.models[self.name] = value


def loop(tmp_path, specs, *, chief=True, seed=5):
    """Runs `specs` ([(name, kwargs)]) in folder `tmp_path`; (result, calls, run)."""
    config = run_lib.RunConfig(out=str(tmp_path), seed=seed)
    calls = []
    stages = [Fake(name, calls, **kwargs) for name, kwargs in specs]
    ledger = resume.Ledger(tmp_path, {"fake": 1}, writable=chief)
    progress = Progress(dict.fromkeys((s.name for s in stages), 0), quiet=True)
    run = Run(config, tf.distribute.get_strategy(), ledger, progress, tmp_path)
    return runner._loop(run, stages), calls, run


SPECS = [
    ("load", {"ledgered": False}),
    ("a", {"distributed": True}),
    ("b", {"own": {"k": 1}}),
    ("c", {}),
]


def test_the_loop_reuses_what_it_can_and_reruns_everything_after_a_rerun(tmp_path):
    _, calls, first = loop(tmp_path, SPECS)
    assert calls == [("work", "load"), ("work", "a"), ("work", "b"), ("work", "c")]
    for index, name in enumerate(["load", "a", "b", "c"]):
        if name != "load":  # a stage that runs is seeded with config.seed + its place
            assert first.models[name] == random.Random(5 + index).random()
    assert first.loaded == []

    _, calls, again = loop(tmp_path, SPECS)
    assert calls == [("work", "load"), ("reload", "a"), ("reload", "b"), ("reload", "c")]
    assert again.loaded == ["a", "b", "c"]

    (tmp_path / "a.txt").unlink()  # a lost file: its stage and every later one run again
    _, calls, _ = loop(tmp_path, SPECS)
    assert calls == [("work", "load"), ("work", "a"), ("work", "b"), ("work", "c")]

    changed = [*SPECS[:2], ("b", {"own": {"k": 2}}), SPECS[3]]  # b's own settings changed
    _, calls, _ = loop(tmp_path, changed)
    assert calls == [("work", "load"), ("reload", "a"), ("work", "b"), ("work", "c")]
    records = json.loads((tmp_path / resume.LEDGER).read_text())["stages"]
    assert records["b"]["settings"] == {"k": 2} and set(records) == {"a", "b", "c"}


def test_a_worker_leaves_after_the_last_distributed_stage(tmp_path):
    loop(tmp_path, SPECS)  # the chief's ledger, for the worker to read
    (tmp_path / "a.txt").unlink()
    result, calls, worker = loop(tmp_path, SPECS, chief=False)
    assert result == {"worker": "chief"}  # as the default strategy names its one worker
    assert calls == [("work", "load"), ("work", "a")]
    assert worker.stale == set()


def test_the_stage_list_is_the_runs_stages_in_order():
    names = [stage.name for stage in STAGES]
    assert names == [
        "data",
        "teacher",
        "scratch",
        "distil",
        "prune_channels",
        "prune",
        "qat",
        "export",
        "bench",
        "report",
    ]
    assert [s.name for s in STAGES if s.distributed] == ["teacher", "scratch", "distil"]
    config = run_lib.RunConfig(out="unused")
    assert run_lib.stage_names(config) == [
        n for n in names if n not in ("prune_channels", "prune", "qat")
    ]
    assert STAGES[7].settings(config) == {
        "quantize": ["none", "float16", "dynamic", "int8"],
        "max_accuracy_drop": None,
    }
    assert set(STAGES[8].settings(config)) == {
        "threads",
        "bench_runs",
        "android",
        "benchmark_binary",
        "adb",
        "serial",
        "use_gpu",
        "use_nnapi",
        "use_npu",
        "enable_op_profiling",
        "benchmark_tool",
        "taskset",
    }


def test_every_config_field_is_one_flag_with_its_default_help_and_choices():
    fields = config_lib.fields()
    for name, field in fields.items():
        flag = flags.FLAGS[name]
        assert flag.help.endswith(field.metadata["help"]) and field.metadata["help"], name
        default = config_lib.default(field)
        if default is dataclasses.MISSING:
            assert flag.default is None
        elif isinstance(default, dict):
            assert json.loads(flag.default) == json.loads(json.dumps(default))
        elif isinstance(default, tuple):
            assert tuple(flag.default) == default
        else:
            assert flag.default == default, name
        if field.metadata["choices"] and config_lib.kind(field) == "str":
            assert tuple(flag.parser.enum_values) == field.metadata["choices"]
    assert set(cli.RUN_FLAGS) == set(fields)
    assert list(flags.FLAGS["lr_schedule"].parser.enum_values) == list(config_lib.SCHEDULES)


def test_old_spellings_still_work(tmp_path, capsys):
    flags.FLAGS(["tfdistill", "--num_runs=7"])
    try:
        assert flags.FLAGS.bench_runs == 7
    finally:
        flags.FLAGS.unparse_flags()
    (tmp_path / "run.json").write_text('{"num_runs": 4}')
    assert run_lib.read_config(tmp_path / "run.json") == {"bench_runs": 4}
    printed = {}
    for spelling in ("--width_multiplier=0.5", "--alpha=0.5", None):
        given = [spelling] if spelling else []
        argv = flags.FLAGS(["tfdistill", *given, "profile", "mobilenet_v1"])
        try:
            assert cli._main(argv) == 0
        finally:
            flags.FLAGS.unparse_flags()
        printed[spelling] = capsys.readouterr().out
    assert printed["--width_multiplier=0.5"] == printed["--alpha=0.5"] != printed[None]


def test_config_values_are_checked_from_the_fields(tmp_path):
    (tmp_path / "bad.json").write_text('{"prune_channels": "half"}')
    with pytest.raises(ValueError, match="'prune_channels' must be a number, got 'half'"):
        run_lib.read_config(tmp_path / "bad.json")
    (tmp_path / "null.json").write_text('{"seed": null}')
    with pytest.raises(ValueError, match="'seed' must be an integer, got None"):
        run_lib.read_config(tmp_path / "null.json")
    for ratio in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"prune_channels \(the share of channels removed\)"):
            run_lib.RunConfig(out="unused", prune_channels=ratio)
    plain = run_lib.RunConfig(out="unused")
    assert "prune_channels" not in run_lib.fingerprinted(plain)  # older runs still resume
    pruned = dataclasses.replace(plain, prune_channels=0.5)
    assert run_lib.fingerprinted(pruned)["prune_channels"] == 0.5
