"""A student shrunk to a latency budget: NetAdapt (Yang et al., ECCV 2018) over channel groups.

Each round asks every prunable channel group (`channels.prunable_groups`) for the cut that
saves a set share of latency, measures each proposal, fine-tunes it briefly, and keeps the most
accurate; the rounds stop once the measured latency is within the budget. The cut of a group
is sized from its MACs per channel and the current model's measured µs per MAC (a linear
latency model, used only to propose; every proposal is then measured), in multiples of its
fold where grouped convolutions or shuffles tie it into blocks (`channels.group_folds`).
Latency, fine-tuning and accuracy come from the caller (`measure`, `fine_tune`, `evaluate`), so
the same search runs on LiteRT here, on a phone through adb, or on a per-layer latency table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import keras

from tfdistill.compress.channels import group_folds, prune_channels
from tfdistill.profile import profile


@dataclasses.dataclass(frozen=True)
class Proposal:
    """One group's cut in one round, measured and fine-tuned."""

    group: str  # the group's first producer layer
    removed: int  # channels removed from the group in this round
    channels: int  # channels the group keeps
    latency_us: float
    accuracy: float | None  # None: not fine-tuned, too slow to be kept
    macs: int
    params: int


@dataclasses.dataclass
class SearchState:
    """Where a search stands: the current model, its measured latency, the rounds so far
    (each the JSON-able dict of `round_record`) and the first model's latency."""

    model: keras.Model
    latency_us: float
    initial_us: float
    rounds: list[dict] = dataclasses.field(default_factory=list)


def parse_budget(text: str) -> tuple[str, float]:
    """ "0.6x" -> ("share", 0.6) of the starting latency; "350us" -> ("us", 350.0)."""
    value = str(text).strip().lower()
    try:
        if value.endswith("x"):
            share = float(value[:-1])
            if 0 < share < 1:
                return "share", share
        elif value.endswith("us"):
            micros = float(value[:-2])
            if micros > 0 and math.isfinite(micros):
                return "us", micros
    except ValueError:
        pass
    raise ValueError(
        f"latency budget {text!r} is not understood; give a share of the distilled student's "
        'latency in (0, 1) with "x" (e.g. "0.6x") or microseconds with "us" (e.g. "350us").'
    )


def budget_us(text: str, start_us: float) -> float:
    """The budget in µs, of a model measured at `start_us`."""
    kind, value = parse_budget(text)
    return value * start_us if kind == "share" else value


def _group_sizes(model: keras.Model) -> dict[str, tuple[int, int]]:
    """Group name -> (its channels now, its fold: a cut removes a multiple of it)."""
    return {
        name: (model.get_layer(name).output.shape[-1], fold)
        for name, fold in group_folds(model).items()
    }


def macs_per_channel(model: keras.Model, group: str, macs: int | None = None, fold: int = 1) -> int:
    """MACs an image saved by removing one channel of `group` (every layer it touches);
    `macs`: the model's own, when already known; `fold`: the group's (`channels.group_folds`),
    the fewest channels one cut removes, whose saving is shared out."""
    channels = model.get_layer(group).output.shape[-1]
    one = prune_channels(model, {group: fold / channels}) if channels > fold else model
    return ((profile(model).macs if macs is None else macs) - profile(one).macs) // fold


def proposals(
    model: keras.Model,
    saving_us: float,
    latency_us: float,
    min_channels: int = 1,
    max_share: float = 0.5,
) -> dict[str, int]:
    """Group -> channels to remove so that, at the model's measured µs per MAC, the cut saves
    `saving_us`, at most `max_share` of the group's channels in one round (a layer whose
    MACs are few would otherwise be cut to almost nothing for a saving its share of the
    latency cannot give), in multiples of the group's fold; groups already at `min_channels`
    are left out."""
    macs = profile(model).macs
    per_mac = latency_us / max(macs, 1)
    cuts = {}
    for group, (channels, fold) in _group_sizes(model).items():
        room = min(channels - min_channels, math.floor(channels * max_share))
        room -= room % fold
        saved = macs_per_channel(model, group, macs, fold) * per_mac
        if room > 0 and saved > 0:
            cuts[group] = min(room, fold * max(1, math.ceil(saving_us / saved / fold)))
    return cuts


def round_record(chosen: Proposal, tried: list[Proposal]) -> dict:
    return {
        "chosen": dataclasses.asdict(chosen),
        "proposals": [dataclasses.asdict(p) for p in tried],
    }


def _cut(
    model: keras.Model,
    group: str,
    removed: int,
    criterion: tuple[str, Any],
    measure: Callable,
) -> tuple[keras.Model, Proposal]:
    """`group` cut by `removed` channels and measured; not yet fine-tuned (accuracy None).
    A dense float model's latency depends on its shapes, not its weights."""
    channels = model.get_layer(group).output.shape[-1]
    cut = prune_channels(model, {group: removed / channels}, *criterion)
    cost = profile(cut)
    proposal = Proposal(
        group, removed, channels - removed, measure(cut), None, cost.macs, cost.params
    )
    return cut, proposal


def _tuned(
    candidate: tuple[keras.Model, Proposal], fine_tune: Callable, evaluate: Callable
) -> tuple[keras.Model, Proposal]:
    model, proposal = candidate
    tuned = fine_tune(model)
    return tuned, dataclasses.replace(proposal, accuracy=evaluate(tuned))


def search_round(
    state: SearchState,
    step_share: float,
    steps: tuple[Callable, Callable, Callable],
    criterion: tuple[str, Any] = ("l1", None),
    min_channels: int = 1,
) -> bool:
    """One NetAdapt round on `state` (updated in place): propose and measure every cut, then
    fine-tune and evaluate those that saved at least half the round's target and keep the most
    accurate (none saved that much: the fastest, fine-tuned), measured once more: the fastest of
    several noisy measurements is optimistic, and the search stops on this one. A proposal too
    slow to be kept is not fine-tuned: its `accuracy` is None. `criterion`: (`prune_channels`'
    criterion, its data). False when no group can shrink further."""
    measure, fine_tune, evaluate = steps
    target = step_share * state.initial_us
    cuts = proposals(state.model, target, state.latency_us, min_channels)
    if not cuts:
        return False
    tried = [_cut(state.model, group, k, criterion, measure) for group, k in cuts.items()]
    enough = [t for t in tried if t[1].latency_us <= state.latency_us - target / 2]
    pool = enough or [min(tried, key=lambda t: t[1].latency_us)]
    tuned = {t[1].group: _tuned(t, fine_tune, evaluate) for t in pool}
    model, chosen = max(tuned.values(), key=lambda t: t[1].accuracy)
    chosen = dataclasses.replace(chosen, latency_us=measure(model))
    state.model, state.latency_us = model, chosen.latency_us
    records = [tuned.get(p.group, (None, p))[1] for _, p in tried]
    state.rounds.append(round_record(chosen, records))
    return True


def search(
    state: SearchState,
    budget: float,
    steps: tuple[Callable, Callable, Callable],
    *,
    step_share: float = 0.1,
    max_rounds: int = 30,
    criterion: str = "l1",
    data: Any = None,
    min_channels: int = 1,
    on_round: Callable[[SearchState], Any] | None = None,
) -> SearchState:
    """Rounds of `search_round` until `state.latency_us` <= `budget` (µs), no group can
    shrink, or `max_rounds` rounds are in `state.rounds` (a resumed state keeps its rounds).
    `steps` = (measure: model -> µs, fine_tune: model -> model, evaluate: model -> accuracy);
    `criterion` and `data`: which channels a cut removes (see `prune_channels`); `on_round(state)`
    runs after each round (to save it for resuming)."""
    while state.latency_us > budget and len(state.rounds) < max_rounds:
        if not search_round(state, step_share, steps, (criterion, data), min_channels):
            break
        if on_round is not None:
            on_round(state)
    return state
