"""What `tfdistill run` prints while it works: a banner per stage, with an estimate of the time
left, and how talkative Keras's `fit` is. Quiet prints nothing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """`seconds` for people: "45 s", "3 min 05 s", "1 h 02 min"."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Banners for the stages of a run and the time left.

    `work`: the stages in order with their training steps (0 for stages that do not train).
    `kinds` groups stages whose steps cost alike (e.g. all that train the student); a stage
    without one is its own kind. The estimate is each training stage still to run, its steps at
    the pace its kind has shown in this process (stages loaded from an earlier run do not
    count); until every kind left has run once there is none, rather than a guess off by the
    ratio of the models' sizes.
    """

    def __init__(
        self,
        work: dict[str, int],
        *,
        kinds: dict[str, str] | None = None,
        quiet: bool = False,
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.work = dict(work)
        self.kinds = dict(kinds or {})
        self.quiet = quiet
        self._log = log
        self._clock = clock
        self._steps: dict[str, int] = {}
        self._seconds: dict[str, float] = {}
        self._finished: set[str] = set()
        self._began: dict[str, float] = {}

    @property
    def fit_verbose(self) -> int:
        """`verbose` for `fit`: progress bars on a terminal, a line per epoch otherwise."""
        if self.quiet:
            return 0
        return 1 if sys.stdout.isatty() else 2

    def log(self, message: str) -> None:
        if not self.quiet:
            self._log(message)

    def eta(self) -> float | None:
        """Seconds of training left at the pace so far; None while a kind of stage left has
        not run yet, and once no training is left."""
        left = {
            name: steps for name, steps in self.work.items() if steps and name not in self._finished
        }
        kinds = {name: self.kinds.get(name, name) for name in left}
        if not left or any(kind not in self._steps for kind in kinds.values()):
            return None
        return sum(
            steps * self._seconds[kinds[name]] / self._steps[kinds[name]]
            for name, steps in left.items()
        )

    def start(self, stage: str, detail: str = "") -> None:
        self._began[stage] = self._clock()
        names = list(self.work)
        number = f"{names.index(stage) + 1}/{len(names)}" if stage in names else ""
        eta = self.eta()
        left = f" · about {duration(eta)} of training left" if eta is not None else ""
        self.log(f"── stage {number} {stage}{': ' + detail if detail else ''}{left}")

    def finish(self, stage: str, *, skipped: bool = False, paced: bool = True) -> float:
        """Ends `stage`; returns its seconds. A stage `skipped` (loaded) or not `paced` (resumed
        part-way, so it ran fewer steps than it has) does not count toward the pace."""
        seconds = self._clock() - self._began.pop(stage, self._clock())
        self._finished.add(stage)
        if skipped:
            self.log(f"   {stage}: finished in an earlier run, loaded")
            return seconds
        steps = self.work.get(stage, 0)
        if steps and paced:
            kind = self.kinds.get(stage, stage)
            self._steps[kind] = self._steps.get(kind, 0) + steps
            self._seconds[kind] = self._seconds.get(kind, 0.0) + seconds
        self.log(f"   {stage}: done in {duration(seconds)}")
        return seconds
