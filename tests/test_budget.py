"""The latency-budget search (NetAdapt over channel groups) on a per-layer latency table."""

import keras
import numpy as np
import pytest

from tfdistill.compress import budget

pytestmark = pytest.mark.smoke


def two_groups():
    """(B, 8, 8, 2) -> conv "a" (8) -> ReLU -> conv "b" (8) -> ReLU -> GAP -> Dense (B, 3):
    two channel groups, a and b."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(8, 1, activation="relu", name="a")(inputs)
    x = keras.layers.Conv2D(8, 1, activation="relu", name="b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def table(model):
    """A per-layer latency table: 10 µs fixed, 3 µs per output channel of a and of b."""
    return 10.0 + 3.0 * model.get_layer("a").filters + 3.0 * model.get_layer("b").filters


def test_macs_per_channel_by_hand():
    model = two_groups()
    # a: 64 positions × 2 inputs, plus b's 64 × 8 on that input channel; b: 64 × 8 + 3 (Dense).
    assert budget.macs_per_channel(model, "a") == 64 * 2 + 64 * 8
    assert budget.macs_per_channel(model, "b") == 64 * 8 + 3
    # At 58 µs for 5,144 MACs a 5.8 µs saving is one channel of either group.
    assert budget.proposals(model, 5.8, 58.0) == {"a": 1, "b": 1}
    assert budget.proposals(model, 12.0, 58.0) == {"a": 2, "b": 3}
    assert budget.proposals(model, 1e6, 58.0, min_channels=2) == {"a": 4, "b": 4}  # half
    assert budget.proposals(model, 1e6, 58.0, min_channels=6) == {"a": 2, "b": 2}


def test_groups_tied_by_a_grouped_convolution_are_cut_by_whole_folds():
    """(B, 8, 8, 2) -> conv "a" (8) -> 1×1 conv "g" (8, 4 groups) -> GAP -> Dense (B, 3): both
    groups have fold 4, so one cut removes 4 channels, one of each block of 2."""
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(8, 1, name="a")(inputs)
    x = keras.layers.Conv2D(8, 1, groups=4, name="g")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    assert budget.group_folds(model) == {"a": 4, "g": 4}
    # 4 channels of a: 4 × 64 × 2 in a, and g's 8 filters see 1 input of 2: 64 × 8; per channel.
    assert budget.macs_per_channel(model, "a", fold=4) == (4 * 64 * 2 + 64 * 8) // 4
    assert budget.proposals(model, 1.0, 58.0) == {"a": 4, "g": 4}
    assert budget.proposals(model, 1e6, 58.0, min_channels=6) == {}
    cut = budget.prune_channels(model, {"a": 4 / 8})
    assert (cut.get_layer("a").filters, cut.get_layer("g").kernel.shape) == (4, (1, 1, 1, 8))


def test_one_round_keeps_the_most_accurate_cut_and_stops_at_the_budget():
    model = two_groups()
    tuned = []

    def fine_tune(candidate):
        tuned.append(candidate)
        return candidate

    def evaluate(candidate):  # cutting a costs accuracy, cutting b does not
        return 0.5 + 0.05 * candidate.get_layer("a").filters

    start = table(model)
    state = budget.SearchState(model, start, start)
    limit = budget.budget_us("0.95x", start)
    budget.search(state, limit, (table, fine_tune, evaluate), step_share=0.1)
    assert (start, limit) == (58.0, pytest.approx(55.1))
    assert len(state.rounds) == 1 and len(tuned) == 2
    chosen = state.rounds[0]["chosen"]
    assert (chosen["group"], chosen["removed"], chosen["channels"]) == ("b", 1, 7)
    assert chosen["latency_us"] == 55.0 and chosen["accuracy"] == pytest.approx(0.9)
    assert sorted(p["group"] for p in state.rounds[0]["proposals"]) == ["a", "b"]
    assert state.latency_us == 55.0 and state.model.get_layer("b").filters == 7
    kept = np.asarray(state.model.get_layer("b").kernel)
    original = np.asarray(model.get_layer("b").kernel)
    assert any(np.array_equal(kept, np.delete(original, i, axis=-1)) for i in range(8))


def test_proposals_too_slow_to_be_kept_are_measured_but_not_fine_tuned():
    """A table where a's channels cost little: its cut cannot save half the round's target, so
    only b's is fine-tuned; where no cut saves enough, only the fastest is."""
    model = two_groups()

    def cheap_a(candidate):
        return (
            10.0 + 0.1 * candidate.get_layer("a").filters + 3.0 * candidate.get_layer("b").filters
        )

    tuned = []
    steps = (cheap_a, lambda m: tuned.append(m.get_layer("a").filters) or m, lambda m: 0.7)
    state = budget.SearchState(model, cheap_a(model), cheap_a(model))
    assert budget.search_round(state, 0.1, steps)
    records = {p["group"]: p for p in state.rounds[0]["proposals"]}
    assert records["a"]["accuracy"] is None and records["b"]["accuracy"] == 0.7
    assert tuned == [8] and state.rounds[0]["chosen"]["group"] == "b"
    tuned.clear()
    state = budget.SearchState(model, cheap_a(model), 1e6)  # a target nothing can reach
    assert budget.search_round(state, 0.1, steps)
    fastest = min(state.rounds[0]["proposals"], key=lambda p: p["latency_us"])
    assert state.rounds[0]["chosen"] == {**fastest, "accuracy": 0.7} and len(tuned) == 1


def test_the_round_winner_is_measured_again_before_the_search_stops():
    """Each model's first measurement reads 20 µs low (the luck that makes a proposal the
    fastest): the winner measured again shows 55 µs, over a 0.9x budget, so a second round runs."""
    model, seen = two_groups(), []

    def lucky_once(candidate):
        first = not any(candidate is s for s in seen)
        seen.append(candidate)
        return table(candidate) - (20.0 if first else 0.0)

    start = table(model)
    state = budget.SearchState(model, start, start)
    steps = (lucky_once, lambda m: m, lambda m: 0.5 + 0.05 * m.get_layer("a").filters)
    budget.search(state, budget.budget_us("0.9x", start), steps, step_share=0.1)
    first = state.rounds[0]
    assert first["chosen"]["latency_us"] == 55.0
    assert {p["group"]: p["latency_us"] for p in first["proposals"]}["b"] == 35.0
    assert len(state.rounds) == 2 and state.latency_us == table(state.model) <= 0.9 * start


def test_the_search_stops_when_no_group_can_shrink():
    model = two_groups()
    state = budget.SearchState(model, table(model), table(model))
    steps = (table, lambda m: m, lambda m: 1.0)
    budget.search(state, 1.0, steps, step_share=0.5, min_channels=4)
    assert table(state.model) == 10.0 + 3.0 * 4 + 3.0 * 4
    assert state.latency_us > 1.0  # out of channels before the budget


@pytest.mark.parametrize("text", ["0.6", "1.2x", "0x", "-3us", "fast", "nanus"])
def test_bad_budgets_name_the_forms(text):
    with pytest.raises(ValueError, match=r'"0.6x"\) or microseconds with "us"'):
        budget.parse_budget(text)


def test_budgets_parse():
    assert budget.parse_budget("0.6x") == ("share", 0.6)
    assert budget.parse_budget(" 350us ") == ("us", 350.0)
    assert budget.budget_us("350us", 900.0) == 350.0


def test_the_run_options_of_the_search(tmp_path):
    from tfdistill import run as run_lib

    config = run_lib.RunConfig(out="unused", latency_budget="0.6x", search_steps=5)
    assert run_lib.stage_names(config).count("prune_channels") == 1
    with pytest.raises(ValueError, match="give one: a latency"):
        run_lib.RunConfig(out="unused", latency_budget="0.6x", prune_channels=0.5)
    with pytest.raises(ValueError, match="latency budget 'half' is not understood"):
        run_lib.RunConfig(out="unused", latency_budget="half")
    with pytest.raises(ValueError, match="Unknown prune_criterion 'l2'"):
        run_lib.RunConfig(out="unused", prune_criterion="l2")
    assert run_lib.fingerprinted(config)["latency_budget"] == "0.6x"


def test_agreement_counts_the_matching_top_classes():
    from tfdistill.run import shrink

    model = two_groups()
    x = np.random.default_rng(4).normal(size=(300, 8, 8, 2)).astype("float32")
    top = np.argmax(np.asarray(model(x)), axis=-1)
    wrong = (top + 1) % 3
    assert shrink.agreement(model, x, top) == 1.0
    assert shrink.agreement(model, x, np.where(np.arange(300) < 75, wrong, top)) == 0.75


def test_a_search_state_round_trips_and_reports(tmp_path):
    from tfdistill import plots, report
    from tfdistill.run import shrink

    model = two_groups()
    state = budget.SearchState(model, table(model), table(model))
    steps = (table, lambda m: m, lambda m: 0.5 + 0.05 * m.get_layer("a").filters)
    budget.search(state, 52.0, steps, step_share=0.1)
    shrink._save(tmp_path, state)
    again = shrink._saved(tmp_path)
    assert again.rounds == state.rounds and again.latency_us == state.latency_us
    assert again.model.get_layer("b").filters == state.model.get_layer("b").filters
    search = {
        "budget": "52us",
        "budget_us": 52.0,
        "start_us": 58.0,
        "searched_us": state.latency_us,
        "final_us": state.latency_us,
        "met": True,
        "selected_by": "the table",
        "rounds": state.rounds,
    }
    lines = report._search_lines(search)
    assert lines[0].startswith("Latency budget 52us: 52.0 µs from 58.0 µs;") and "(met)" in lines[0]
    assert lines[4].startswith("| 1 | b | 1 / 7 | 55.0 | 90.00% |")
    assert plots.search_path(search, tmp_path / "search.png").stat().st_size > 0
    check = {"timed": "t", "threads": 1, "distilled_us": 2.0, "pruned_us": 1.0, "ratio": 0.5}
    checked = report._search_lines({**search, "check": {**check, "of_budget": 1, "within": 1}})[0]
    assert "(single measurements; the files are timed interleaved below)" in checked


@pytest.mark.slow
def test_a_run_searches_to_a_latency_budget_and_resumes_per_round(tmp_path, monkeypatch):
    """`tfdistill run --latency_budget` on digits: interrupted after its first round, the same
    command resumes at the second; the report has the search, its table and its plot."""
    import json

    from tfdistill import run as run_lib
    from tfdistill.run import shrink

    out = tmp_path / "run"
    config = run_lib.RunConfig(
        out=str(out),
        teacher_kwargs={"widths": (4, 8)},
        student_kwargs={"widths": (8, 16)},
        labels_per_class=3,
        teacher_epochs=1,
        student_epochs=1,
        batch_size=128,
        bench_runs=10,
        compress_epochs=1,
        latency_budget="0.6x",
        search_steps=2,
        quantize=("dynamic",),
    )
    original = budget.search_round

    def interrupted(state, *args, **kwargs):
        if state.rounds:
            raise KeyboardInterrupt
        return original(state, *args, **kwargs)

    monkeypatch.setattr(budget, "search_round", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_lib.run(config, log=lambda _: None)
    saved = json.loads((out / ".backup" / "prune_channels" / "search" / "search.json").read_text())
    assert len(saved["rounds"]) == 1
    monkeypatch.setattr(budget, "search_round", original)
    logs = []
    result = run_lib.run(config, log=logs.append)
    search = result["search"]
    assert search["rounds"][0] == saved["rounds"][0] and search["start_us"] == saved["initial_us"]
    assert search["timed"] == shrink.RELATIVE.format(us=saved["initial_us"])
    # Interrupted before its second round, the search had not met the budget: the resumed
    # run searched on.
    assert len(search["rounds"]) >= 2
    assert "pruned_channels" in result["students"]
    # Without "none" in --quantize the float32 files the budget check times are exported too.
    modes = {(row["model"], row["quantization"]) for row in result["tflite"]}
    students = ("student_distilled", "student_pruned_channels")
    assert {(s, q) for s in students for q in ("none", "dynamic")} <= modes
    check = search["check"]
    assert check["of_budget"] == pytest.approx(check["ratio"] / 0.6)
    assert check["within"] == (check["of_budget"] <= 1.1)
    markdown = (out / "report.md").read_text()
    assert "| 1 | " in markdown and (out / "search.png").is_file()
    assert "Timed against the distilled student (LiteRT, 10 interleaved rounds" in markdown
    assert not (out / ".backup").exists()


def _two_convs(width: int) -> keras.Model:
    """(B, 16, 16, 3) -> (B, width): two 3×3 convolutions of `width` filters, pooled."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_a_share_budget_times_proposals_against_the_distilled_file(tmp_path):
    """With a share budget each proposal's µs is its interleaved ratio to the distilled file
    times the distilled student's µs (a resumed search's saved one); a µs budget is timed alone."""
    from tfdistill.run import shrink
    from tfdistill.run.config import RunConfig

    wide, narrow = _two_convs(96), _two_convs(4)
    config = RunConfig(out=str(tmp_path), latency_budget="0.5x", bench_runs=10)
    measure, initial, timed = shrink._measure(config, tmp_path, wide, 1e6)
    assert initial == 1e6 and timed == shrink.RELATIVE.format(us=1e6)
    assert 5e5 < measure(wide) < 2e6 and measure(narrow) < 2e5
    assert (tmp_path / "reference.tflite").is_file()
    config = RunConfig(out=str(tmp_path / "us"), latency_budget="350us", bench_runs=10)
    measure, initial, timed = shrink._measure(config, tmp_path / "us", wide, None)
    assert timed == shrink.SINGLE and initial > 0 and measure(narrow) < initial
    assert not (tmp_path / "us" / "reference.tflite").exists()


def test_the_budget_check_times_both_files_interleaved(tmp_path):
    """The pruned file against the distilled one: a paired ratio below 1 for a smaller model,
    read against a share budget as ratio / share and against a µs budget as its median."""
    from tfdistill import export, report
    from tfdistill.run import delivery
    from tfdistill.run.config import RunConfig

    for name, width in zip(delivery.BUDGET_FILES, (96, 4), strict=True):
        model = _two_convs(width)
        export.to_tflite(export.inference_function(model), tmp_path / name, quantization="none")
    share = delivery.budget_check(
        RunConfig(out=str(tmp_path), latency_budget="0.5x", bench_runs=6), tmp_path
    )
    assert share["ratio"] < 0.5 and share["of_budget"] == share["ratio"] / 0.5
    assert share["within"] and share["distilled_us"] > share["pruned_us"] > 0
    micros = delivery.budget_check(
        RunConfig(out=str(tmp_path), latency_budget="0.01us", bench_runs=3), tmp_path
    )
    assert micros["of_budget"] == micros["pruned_us"] / 0.01 and not micros["within"]
    assert delivery.budget_check(RunConfig(out=str(tmp_path), bench_runs=3), tmp_path) is None
    line = report._check_lines(micros)[1]
    assert f"{micros['of_budget']:.2f}× the budget, not within 1.1×." in line
    with pytest.raises(ValueError, match="model file not found"):
        delivery.budget_check(RunConfig(out="x", latency_budget="0.5x"), tmp_path / "none")


def test_a_latency_budget_exports_the_float32_files_its_check_times():
    """Float32 is added to `--quantize` for the two students only where `budget_check` runs."""
    from tfdistill.run import delivery
    from tfdistill.run.config import RunConfig

    def modes(**settings) -> tuple[str, ...]:
        return delivery.student_modes(RunConfig(out="x", quantize=("int8",), **settings))

    assert modes(latency_budget="0.6x") == ("none", "int8")
    phone = {"android": True, "benchmark_binary": "/data/local/tmp/benchmark_model"}
    assert modes(latency_budget="0.6x", **phone) == ("int8",)
    assert modes() == ("int8",)
