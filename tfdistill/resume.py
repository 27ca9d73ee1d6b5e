"""A run folder's ledger: which stages of a config have finished, so a re-run skips them.

`run.json` in the folder holds the config's fingerprint, the config itself and one record per
finished stage (its seconds and whatever the stage needs to be rebuilt without re-running,
such as training histories). A stage interrupted part-way resumes from its last backed-up
epoch through `keras.callbacks.BackupAndRestore`, whose checkpoint lives in `.backup/<stage>/`
until the stage's results are saved (written at the end of an epoch, at most every ten
seconds; tf_keras's for the TFMOT stages, every epoch). The ledger, the epoch logs and the
Keras checkpoint files are written atomically (temporary file, then rename), so a kill at any
moment leaves whole files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfdistill import _keras_internals, artifacts
from tfdistill.errors import brief

LEDGER = "run.json"
BACKUPS = ".backup"


def fingerprint(config: dict) -> str:
    """A hex digest of `config` (JSON-able), independent of key order."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: dict, new: dict) -> str:
    changed = [
        f"{key}: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    return "; ".join(changed) or "the fingerprint"


class Ledger:
    """The finished stages of one config in folder `out`.

    Opening a folder that holds another config's ledger is a ValueError naming the settings
    that differ. A folder without a ledger gets an empty one at once, and loses any backups
    found there: they cannot be tied to this config. A ledger that is not `writable` (the other
    workers of a multi-worker run read the chief's) keeps its changes in memory.
    """

    def __init__(self, out: str | Path, config: dict, *, writable: bool = True) -> None:
        self.out = Path(out)
        self.config = config
        self.fingerprint = fingerprint(config)
        self.writable = writable
        self.stages: dict[str, dict] = {}
        path = self.out / LEDGER
        if not path.is_file():
            if not writable:
                return
            shutil.rmtree(self.out / BACKUPS, ignore_errors=True)
            self._write()
            return
        try:
            saved = json.loads(path.read_text())
            stages, old_fingerprint = saved["stages"], saved["fingerprint"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is not a tfdistill run ledger ({error}); pass a new --out, or delete "
                "it to start over."
            ) from None
        if old_fingerprint != self.fingerprint:
            raise ValueError(
                f"--out {str(self.out)!r} holds a run of another config ("
                f"{_differences(saved.get('config', {}), config)}); pass a new --out to keep "
                f"both runs, or delete {str(self.out)!r} to start this one over."
            )
        self.stages = stages

    def record(self, stage: str) -> dict | None:
        """The saved record of `stage` if it finished, else None."""
        return self.stages.get(stage)

    def _write(self) -> None:
        if not self.writable:
            return
        state = {"fingerprint": self.fingerprint, "config": self.config, "stages": self.stages}
        artifacts.write_atomic(self.out / LEDGER, lambda f: json.dump(state, f, indent=1))

    def start(self, stage: str, order: list[str], *, keep_backup: bool) -> None:
        """Forgets `stage` and every stage after it in `order` (they follow from what this
        one makes anew); its backup goes too unless `keep_backup`."""
        later = order[order.index(stage) :] if stage in order else [stage]
        if any(name in self.stages for name in later):
            self.stages = {k: v for k, v in self.stages.items() if k not in later}
            self._write()
        if not keep_backup and self.writable:
            shutil.rmtree(self.backup_dir(stage), ignore_errors=True)

    def finish(self, stage: str, record: dict) -> None:
        """Marks `stage` finished with `record` (JSON-able) and drops its backup."""
        self.stages[stage] = record
        self._write()
        if not self.writable:
            return
        shutil.rmtree(self.backup_dir(stage), ignore_errors=True)
        backups = self.out / BACKUPS
        if backups.is_dir() and not any(backups.iterdir()):
            backups.rmdir()

    def backup_dir(self, stage: str) -> Path:
        """Where `stage` keeps its epoch checkpoint while it runs."""
        return self.out / BACKUPS / stage

    def resumable(self, stage: str) -> bool:
        """Whether an earlier, interrupted attempt at `stage` left a checkpoint to resume
        from (Keras's, or tf_keras's for the TFMOT stages)."""
        folder = self.backup_dir(stage)
        marks = ("training_metadata.json", "checkpoint")
        return folder.is_dir() and any(p.name in marks and p.is_file() for p in folder.rglob("*"))


class EpochLog(keras.callbacks.Callback):
    """Every epoch's logs of a fit, kept in `path` (JSON) so they survive an interruption.

    After a resume (`BackupAndRestore`), the epochs from the restored one on are rewritten, so
    `history` holds each epoch once: {metric: [value per epoch]}.
    """

    def __init__(self, path: str | Path, *, save_to: str | Path | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.save_to = self.path if save_to is None else Path(save_to)
        self.epochs: list[dict[str, float]] = []
        if self.path.is_file():
            try:
                self.epochs = json.loads(self.path.read_text())
                if not isinstance(self.epochs, list) or not all(
                    isinstance(entry, dict) for entry in self.epochs
                ):
                    raise ValueError("not a list of {metric: value}")
            except (ValueError, TypeError) as error:
                reason = f"{self.path.name}: {brief(error)}"
                raise ValueError(backup_error(self.path.parent, reason)) from None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        entry = {key: float(value) for key, value in (logs or {}).items()}
        self.epochs = [*self.epochs[:epoch], entry]
        artifacts.write_atomic(self.save_to, lambda f: json.dump(self.epochs, f))

    @property
    def history(self) -> dict[str, list[float]]:
        keys = dict.fromkeys(key for entry in self.epochs for key in entry)
        return {key: [entry.get(key, float("nan")) for entry in self.epochs] for key in keys}


class SpacedBackup(_keras_internals.BackupAndRestoreBase):
    """`BackupAndRestore` that backs up at the end of an epoch only when `interval_s` seconds
    passed since the last backup (or the fit began): a kill loses at most that much training
    plus the epoch under way. Writing the weights and optimizer state every epoch cost about
    0.9 s an epoch for the default run's teacher here. The checkpoint stays
    when `fit` ends; `Ledger.finish` removes it once the stage's results are saved. With
    `save_to` it restores from `backup_dir` but writes to `save_to`: the other workers of a
    multi-worker run restore the chief's backup and write theirs where nobody reads them
    (saving takes part in the workers' collective ops, so they all save, at the same
    epochs: give them all `interval_s=0`)."""

    def __init__(
        self,
        backup_dir: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        save_to: str | None = None,
    ) -> None:
        super().__init__(backup_dir, delete_checkpoint=False)
        self.interval_s = interval_s
        self.save_to = Path(backup_dir if save_to is None else save_to)
        self._clock = clock
        self._last = clock()

    def save_backup(self, epoch: int, batch: int) -> None:
        """The weights, then the epoch they belong to and the optimizer step they were taken
        at, each written to a temporary file and renamed: a kill leaves whole files. A kill in
        the moment between the two renames leaves weights one backup newer than the epoch
        count, which the step tells when the backup is loaded."""
        self.save_to.mkdir(parents=True, exist_ok=True)
        artifacts.save_weights(self.model, self.save_to / self.weights_file.name)
        metadata = {"epoch": epoch, "batch": batch}
        if getattr(self.model, "optimizer", None) is not None:
            metadata["iterations"] = optimizer_step(self.model.optimizer)
        metadata["seed_states"] = [
            keras.ops.convert_to_numpy(g.state).tolist() for g in seed_generators(self.model)
        ]
        metadata_path = self.save_to / self.metadata_file.name
        artifacts.write_atomic(metadata_path, lambda f: json.dump(metadata, f))

    def on_train_begin(self, logs: dict | None = None) -> None:
        weights = self.weights_file.is_file()
        metadata = self.metadata_file
        if weights != metadata.is_file():
            held = "weights without the epoch" if weights else "an epoch without its weights"
            raise ValueError(backup_error(self.backup_dir, f"it holds {held}"))
        if not weights:
            super().on_train_begin(logs)
            self._last = self._clock()
            return
        try:
            super().on_train_begin(logs)
            saved = json.loads(metadata.read_text())
            _restore_seeds(self.model, saved.get("seed_states"))
            saved = saved.get("iterations")
        except Exception as error:
            raise ValueError(backup_error(self.backup_dir, error)) from None
        optimizer = getattr(self.model, "optimizer", None)
        if saved is not None and optimizer is not None and optimizer_step(optimizer) != saved:
            raise ValueError(
                backup_error(
                    self.backup_dir,
                    f"its weights are from optimizer step {optimizer_step(optimizer)} but its "
                    f"epoch count from step {saved}, as a kill while it was written leaves them",
                )
            )
        self._last = self._clock()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._clock() - self._last >= self.interval_s:
            super().on_epoch_end(epoch, logs)
            self._last = self._clock()


def seed_generators(model: keras.Model) -> list:
    """The random-number generators of `model`'s layers (Dropout's, random augmentation's), in
    a fixed order. Their states are variables that `save_weights` leaves out."""
    layers = _keras_internals.flatten_layers(model, include_self=True)
    return [g for layer in layers for g in _keras_internals.seed_generators(layer)]


def _restore_seeds(model: keras.Model, states: list | None) -> None:
    if states is None:
        return
    generators = seed_generators(model)
    if len(states) != len(generators):
        raise ValueError(
            f"it holds {len(states)} random-generator states, the model has {len(generators)}"
        )
    for generator, state in zip(generators, states, strict=True):
        generator.state.assign(np.asarray(state, dtype=generator.state.dtype))


def optimizer_step(optimizer: keras.optimizers.Optimizer) -> int:
    """The optimizer's step count (mirrored or not)."""
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def backup_error(folder: str | Path, error: Exception | str) -> str:
    """The message for a backup in `folder` that does not load: what failed and the way out
    (rather than a silent restart from the first epoch, or a resume from a mismatched one)."""
    reason = error if isinstance(error, str) else brief(error)
    return (
        f"the backup in {str(folder)!r} does not load ({reason}); delete that folder to "
        "start this stage again from its first epoch."
    )


def fit_callbacks(
    folder: Path, interval_s: float = 10.0, *, save_to: Path | None = None
) -> tuple[EpochLog, list[Any]]:
    """An `EpochLog` and the Keras 3 callbacks that back up a fit in `folder` at the end of an
    epoch (at most every `interval_s` seconds) and restore it when the same fit starts again;
    with `save_to` they restore from `folder` and write to `save_to`."""
    save_to = folder if save_to is None else save_to
    save_to.mkdir(parents=True, exist_ok=True)
    log = EpochLog(folder / "epochs.json", save_to=save_to / "epochs.json")
    backup = SpacedBackup(
        str(folder / "checkpoint"), interval_s, save_to=str(save_to / "checkpoint")
    )
    return log, [log, backup]


def next_epoch(folder: Path) -> int:
    """The epoch a fit backed up in `folder` (see `fit_callbacks`) resumes at: 0 without a
    backup."""
    metadata = folder / "checkpoint" / "training_metadata.json"
    if not metadata.is_file():
        return 0
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(backup_error(folder / "checkpoint", error)) from None
