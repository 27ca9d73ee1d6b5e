"""`Run`: what the stages of one `tfdistill run` share, in one object."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdistill import data, distribute, precision, resume
from tfdistill.progress import Progress
from tfdistill.run import training
from tfdistill.run.config import RunConfig
from tfdistill.run.delivery import Export

TENSORBOARD = "tensorboard"  # the event files' folder in the run folder


@dataclasses.dataclass(eq=False)
class Run:
    """One run of `config`: where it writes (`keep`: the run folder on the chief, a temporary
    folder on the other workers of a multi-worker run), its ledger and banners, and what the
    stages have delivered so far."""

    config: RunConfig
    strategy: tf.distribute.Strategy
    ledger: resume.Ledger
    progress: Progress
    keep: Path
    callbacks: tuple = ()
    backup_interval_s: float = 10.0
    ds: data.Dataset | None = None
    teacher_size: tuple[int, int] | None = None
    views_labelling_s: float | None = None
    labeled: np.ndarray | None = None
    init: list[np.ndarray] | None = None
    models: dict[str, Any] = dataclasses.field(default_factory=dict)
    histories: dict[str, dict] = dataclasses.field(default_factory=dict)
    students: dict[str, tuple[str, dict]] = dataclasses.field(default_factory=dict)
    plan: list[Export] = dataclasses.field(default_factory=list)
    rows: list[dict] = dataclasses.field(default_factory=list)
    latency: dict = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    loaded: list[str] = dataclasses.field(default_factory=list)
    stale: set[str] = dataclasses.field(default_factory=set)
    result: dict | None = None
    search: dict | None = None  # the --latency_budget search, for the report
    selective: list[dict] = dataclasses.field(default_factory=list)  # --max_accuracy_drop
    _elements: tuple | None = None
    _float32: dict[str, keras.Model] = dataclasses.field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def chief(self) -> bool:
        return self.ledger.writable

    def agree(self, values: dict[str, int]) -> None:
        """Every worker holds the same `values` (see `distribute.agree`)."""
        distribute.agree(self.strategy, values)

    def scope(self, distributed: bool) -> contextlib.AbstractContextManager:
        """The strategy's scope for a `distributed` stage; no scope for the chief's own."""
        return self.strategy.scope() if distributed else contextlib.nullcontext()

    def fitting(self, stage: str) -> training.Fitting:
        """The chief backs up in the ledger's backup folder; the other workers restore from
        there (unless the chief is dropping it as `stale`) and save in `keep`, every epoch, as
        the chief does in a multi-worker run."""
        folder = self.ledger.backup_dir(stage)
        save_dir = None if self.chief else self.keep / resume.BACKUPS / stage
        if not self.chief and stage in self.stale:
            folder = save_dir
        interval = 0.0 if distribute.is_multi_worker(self.strategy) else self.backup_interval_s
        verbose = self.progress.fit_verbose
        callbacks = tuple(self.callbacks)
        if self.config.tensorboard and self.chief:
            callbacks += (training.tensorboard(self.keep / TENSORBOARD / stage),)
        return training.Fitting(verbose, callbacks, folder, interval, save_dir)

    def tf_keras_tensorboard(self, stage: str) -> list:
        """With `--tensorboard`, the TFMOT stages' tf_keras TensorBoard callback (the chief's)."""
        if not (self.config.tensorboard and self.chief):
            return []
        return training.tf_keras_tensorboard(self.keep / TENSORBOARD / stage)

    def elements(self) -> tuple:
        """The `distillation_elements` (or with `teacher_views` the `teacher_view_elements`,
        kept in the run folder), made when a stage first trains on them (caching the
        teacher's logits takes a pass of the teacher over the training split). Always by the
        teacher as trained (16-bit under mixed precision), whichever stage comes first."""
        if self._elements is None:
            teacher = self.models["teacher"]
            if self.teacher_views:
                rows, labels, seconds = training.teacher_view_elements(
                    self.config, self.ds, teacher, self.labeled, self.keep, self.teacher_size
                )
                self._elements = (rows, labels)
                if seconds is not None:
                    self.views_labelling_s = round(seconds, 2)
            else:
                self._elements = training.distillation_elements(
                    self.config, self.ds, teacher, self.labeled, self.teacher_size
                )
        return self._elements

    @property
    def teacher_views(self) -> bool:
        """Whether the students distil from cached teacher views (`config.teacher_views` with
        augmentation)."""
        return bool(self.config.teacher_views) and training.augments(self.config)

    def float32(self, model: str) -> keras.Model:
        """Model `model` (its file stem) computing in float32, as the chief's stages after
        distillation take it (see `precision.float32_copy`)."""
        if model not in self._float32:
            self._float32[model] = precision.float32_copy(self.models[model])
        return self._float32[model]

    def online_teacher(self) -> keras.Model | None:
        """The float32 teacher for stages that distil on augmented images; None when they
        distil from cached logits."""
        online = training.augments(self.config) and not self.teacher_views
        return self.float32("teacher") if online else None
