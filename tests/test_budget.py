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
    assert budget.proposals(model, 1e6, 58.0, min_channels=2) == {"a": 6, "b": 6}


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
