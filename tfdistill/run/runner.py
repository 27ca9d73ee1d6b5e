"""`run`: the one loop over the stages of `tfdistill run` (see `stages.STAGES`).

For each stage in order: a stage the ledger holds from an earlier run of the same config, with
the same own settings and its files in place, is reloaded instead of run, unless an earlier
stage of this run ran again: **after a stage runs, every later stage runs too**, since it
follows from what that one made. A stage that runs is seeded with `config.seed` plus its place
in the list; a training stage cut short resumes from its last backed-up epoch.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tfdistill import distribute, resume
from tfdistill.progress import Progress
from tfdistill.run import config as config_lib
from tfdistill.run import lock
from tfdistill.run.config import RunConfig
from tfdistill.run.stages import Stage, stages_of
from tfdistill.run.state import Run


def run(
    config: RunConfig,
    log: Callable[[str], None] = print,
    *,
    callbacks: tuple = (),
    strategy: tf.distribute.Strategy | None = None,
    backup_interval_s: float = 10.0,
) -> dict:
    """Runs every stage; writes the models, `.tflite` files, bench.json, report.json,
    report.md and plots to `config.out`; returns the report.

    A folder holding an earlier run of the same config (`run.json`) gives back its finished
    stages instead of re-running them, and a training stage cut short resumes from its last
    backed-up epoch; a folder of another config or other data is a ValueError, and one that
    another run holds (`run.lock`, see `lock`) a RunFolderBusy, before any data is read. `callbacks`
    join every Keras 3 `fit` (teacher, scratch, distil, prune_channels); `strategy` (default:
    `config.strategy`) holds the models of the distributed stages; they back up at the end of
    an epoch at most every `backup_interval_s`.

    Under a multi-worker strategy every worker calls `run` with the same config and `out` (a
    folder they all reach). The chief alone writes there; the others read its ledger and
    backups, train with it, back up to a temporary folder of their own (all workers back up
    every epoch: saving takes part in their collective ops), and return {"worker": name}
    after the last distributed stage, leaving the rest to the chief.

    `config.mixed_precision` "float16" or "bfloat16": the teacher, scratch and distilled
    students are built under "mixed_float16" or "mixed_bfloat16"; the chief's later stages,
    the export and the report take float32 copies of them with the same weights. The global
    dtype policy is left as it was.
    """
    strategy = strategy or distribute.strategy_of(config.strategy)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    chief = distribute.is_chief(strategy)
    settings = {k: v for k, v in config_lib.settings(config).items() if k != "quiet"}
    digits = int(resume.fingerprint(settings)[:6], 16)
    out = Path(config.out)
    held, busy = _lock(out, chief, log)
    try:
        _agree_locked(strategy, busy, {"the settings (the first digits of their digest)": digits})
        return _stages(config, strategy, chief, log, callbacks, backup_interval_s)
    finally:
        if held is not None:
            held.release()


def _lock(
    out: Path, chief: bool, log: Callable[[str], None]
) -> tuple[lock.RunLock | None, lock.RunFolderBusy | None]:
    """The chief's lock of the run folder, or why another run keeps it (see `lock`)."""
    if not chief:
        return None, None
    try:
        return lock.acquire(out, log), None
    except lock.RunFolderBusy as error:
        return None, error


def _agree_locked(
    strategy: tf.distribute.Strategy, busy: lock.RunFolderBusy | None, values: dict[str, int]
) -> None:
    """`values` agreed, and that the chief holds the run folder's lock: a busy folder stops
    every worker, the chief with its own message."""
    try:
        distribute.agree(strategy, {**values, "whether the chief locked --out": int(not busy)})
    except ValueError:
        if busy is None:
            raise
    if busy is not None:
        raise busy


def _stages(
    config: RunConfig,
    strategy: tf.distribute.Strategy,
    chief: bool,
    log: Callable[[str], None],
    callbacks: tuple,
    backup_interval_s: float,
) -> dict:
    """The stages of `run` once the folder is locked."""
    out = Path(config.out)
    ledger = resume.Ledger(out, config_lib.fingerprinted(config), writable=chief)
    keep = out if chief else Path(tempfile.mkdtemp(prefix="tfdistill-worker-"))
    stages = stages_of(config)
    progress = Progress(
        dict.fromkeys((stage.name for stage in stages), 0),
        kinds={stage.name: stage.kind for stage in stages if stage.kind},
        quiet=config.quiet,
        log=log,
    )
    state = Run(config, strategy, ledger, progress, keep, callbacks, backup_interval_s)
    try:
        return _loop(state, stages)
    finally:
        if not chief:
            shutil.rmtree(keep, ignore_errors=True)


def _loop(run: Run, stages: list[Stage]) -> dict:
    """Runs or reloads each of `stages` in turn; the report, or {"worker": name} on a worker
    other than the chief once the distributed stages are done."""
    keras.utils.set_random_seed(run.config.seed)
    last_distributed = max((i for i, stage in enumerate(stages) if stage.distributed), default=-1)
    ran_again = False
    for index, stage in enumerate(stages):
        if not stage.ledgered:
            value, record = _unledgered(run, stage)
        elif _reusable(run, stage, ran_again):
            value, record = _reload(run, stage)
        else:
            value, record = _rerun(run, stage, index, keep_backup=not ran_again)
            ran_again = True
        stage.deliver(run, value, record)
        if index == last_distributed and not run.chief:
            return {"worker": distribute.worker_name(run.strategy)}
    return run.result


def _unledgered(run: Run, stage: Stage) -> tuple[Any, dict]:
    """A stage that runs every time (data, report)."""
    run.progress.start(stage.name, stage.detail(run))
    value, record = stage.work(run)
    seconds = round(run.progress.finish(stage.name), 2)
    run.timings[stage.name] = seconds
    return value, {**record, "seconds": seconds}


def _reusable(run: Run, stage: Stage, ran_again: bool) -> bool:
    """Whether `stage` can be reloaded: the ledger holds it with the same own settings, its
    files are there and no earlier stage ran again. Every worker takes the chief's answer."""
    record = run.ledger.record(stage.name)
    run.progress.start(stage.name, stage.detail(run))
    reusable = (
        record is not None
        and not ran_again
        and record.get("settings") == stage.settings(run.config)
        and all((run.out / file).exists() for file in stage.files(run, record))
    )
    if stage.distributed:
        run.agree({f"whether stage {stage.name} is done": int(reusable)})
    return reusable


def _reload(run: Run, stage: Stage) -> tuple[Any, dict]:
    record = run.ledger.record(stage.name)
    value = stage.reload(run, record)
    run.progress.finish(stage.name, skipped=True)
    run.loaded.append(stage.name)
    run.timings[stage.name] = record["seconds"]
    return value, record


def _rerun(run: Run, stage: Stage, index: int, *, keep_backup: bool) -> tuple[Any, dict]:
    """Runs `stage`, seeded with `config.seed + index`; the ledger forgets it and every later
    stage first. Its backup is kept (to resume from) unless an earlier stage ran again, which
    makes it `stale` for the other workers too."""
    name = stage.name
    run.ledger.start(name, list(run.progress.work), keep_backup=keep_backup)
    if not keep_backup:
        run.stale.add(name)
    resumed = run.ledger.resumable(name)
    if resumed:
        run.progress.log(f"   {name}: resuming from its last backed-up epoch")
    keras.utils.set_random_seed(run.config.seed + index)
    value, record = stage.work(run)
    seconds = round(run.progress.finish(name, paced=not resumed), 2)
    record = {**record, "settings": stage.settings(run.config), "seconds": seconds}
    run.ledger.finish(name, record)
    run.timings[name] = seconds
    return value, record
