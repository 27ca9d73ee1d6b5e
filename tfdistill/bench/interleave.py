"""Interleaved timing: several workloads measured round-robin in one process, so that load from
the rest of a shared machine falls on all of them alike and their ratios stay meaningful."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

PER_CALL = ("mean", "median")


@dataclass(frozen=True)
class Interleaved:
    """`samples[name]`: seconds per call of each workload, one entry a round, in round order;
    `orders`: the order the workloads ran in, each round."""

    samples: dict[str, list[float]]
    orders: list[list[str]]

    def median(self, name: str) -> float:
        """The median over rounds of seconds per call."""
        return statistics.median(self.samples[name])

    def ratio(self, a: str, b: str) -> float:
        """median(a) / median(b): how many times slower `a` is than `b`."""
        return self.median(a) / self.median(b)

    def paired_ratio(self, a: str, b: str) -> float:
        """The median over rounds of a/b within a round: cancels load that lasts a round."""
        return statistics.median(
            x / y for x, y in zip(self.samples[a], self.samples[b], strict=True)
        )


def interleave(
    workloads: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    calls: int | Mapping[str, int] = 1,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    per_call: str = "mean",
) -> Interleaved:
    """Times `calls` calls of each workload per round for `rounds` rounds, after `warmup`
    untimed calls of each. Round r starts at workload r mod n of the given order and wraps: in
    any n consecutive rounds each workload runs once in each position. `calls` may differ per
    workload (a mapping by name), so that a fast one's chunk lasts about as long as a slow
    one's. A round's sample is the chunk's seconds over its calls (`per_call="mean"`), or the
    median of each call's own seconds (`"median"`: a call the scheduler preempts, milliseconds
    on a shared core, then does not weigh on the round; for short calls of equal work)."""
    if not workloads:
        raise ValueError("interleave needs at least one workload.")
    names = list(workloads)
    per_name = calls if isinstance(calls, Mapping) else dict.fromkeys(names, calls)
    missing = [name for name in names if name not in per_name]
    if missing:
        raise ValueError(f"calls has no count for {missing}.")
    checks = [("rounds", rounds)] + [(f"calls[{n!r}]", per_name[n]) for n in names]
    for name, value in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}.")
    if per_call not in PER_CALL:
        raise ValueError(f"per_call must be one of {PER_CALL}, got {per_call!r}.")
    for name in names:
        for _ in range(warmup):
            workloads[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    orders = []
    for index in range(rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        orders.append(order)
        for name in order:
            samples[name].append(_chunk(workloads[name], per_name[name], clock, per_call))
    return Interleaved(samples, orders)


def _chunk(
    run: Callable[[], object], count: int, clock: Callable[[], float], per_call: str
) -> float:
    """Seconds per call of `count` calls of `run`: their mean, or the median call's."""
    if per_call == "mean":
        start = clock()
        for _ in range(count):
            run()
        return (clock() - start) / count
    each = []
    for _ in range(count):
        start = clock()
        run()
        each.append(clock() - start)
    return statistics.median(each)


__all__ = ["Interleaved", "interleave"]


def with_cpu(
    workloads: Mapping[str, Callable[[], object]], cpu: dict[str, list[float]]
) -> dict[str, Callable[[], None]]:
    """`workloads` with each call's process CPU seconds (every thread, tf.data's included)
    appended to `cpu[name]` (emptied first), to give `interleave` alongside wall time."""

    def counted(name: str, run: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            start = time.process_time()
            run()
            cpu[name].append(time.process_time() - start)

        return call

    for name in workloads:
        cpu[name] = []
    return {name: counted(name, run) for name, run in workloads.items()}
