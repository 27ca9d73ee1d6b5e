"""The stages of `tfdistill run`, one class each, in `STAGES` order:

data -> teacher -> scratch -> distil -> [prune_channels] -> [prune] -> [qat] -> export -> bench
-> report.

A stage declares its name, whether it is on for a config (`enabled`), its training epochs (for
the time-left estimate), its own settings (the rest are in the run's fingerprint), the files it
leaves, how it runs (`work`: value and ledger record), how it comes back from the ledger
(`reload`) and what it hands the later stages (`deliver`). `runner.run` is the loop over them.
Adding a stage is one class here and one entry in `STAGES`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import keras
import numpy as np

from tfdistill import artifacts, compress, data, ensemble
from tfdistill.run import config as config_lib
from tfdistill.run import delivery, feed, shrink, training
from tfdistill.run.config import RunConfig
from tfdistill.run.state import TENSORBOARD, Run


def data_digest(ds: data.Dataset) -> str:
    """A hex digest of the images (or, streamed, of their source files and stored size) and
    the labels of both splits."""
    digest = hashlib.sha256()
    if ds.files_digest is not None:
        digest.update(ds.files_digest.encode())
    arrays = (
        (ds.y_train, ds.y_test) if ds.streamed else (ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    )
    for array in arrays:
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()[:16]


def skipped_text(ds: data.Dataset, config: RunConfig) -> str:
    """ "skipped 3 file(s) that did not decode as images: 1 empty, 2 too large (over
    --max_megapixels=50)"."""
    reasons = data.decode.reasons_text(ds.skipped_reasons)
    if ds.skipped_reasons.get("too_large"):
        reasons += f" (over --max_megapixels={config.max_megapixels:g})"
    return f"skipped {ds.skipped} file(s) that did not decode as images" + (
        f": {reasons}" if reasons else ""
    )


def sizes_text(ds: data.Dataset, teacher: tuple[int, int] | None) -> str:
    """What the models see, for the log: sizes, and where the images come from."""
    h, w, c = ds.input_shape
    text = f"student takes {h}x{w}x{c}"
    if teacher and tuple(teacher) != (h, w):
        text += f", teacher {teacher[0]}x{teacher[1]}x{c}"
    if ds.streamed:
        stored = ds.x_train.image_shape
        text += (
            f"; {len(ds.x_train)}+{len(ds.x_test)} images streamed from {ds.x_train.folder.parent}"
        )
        if ds.image_size is not None:
            text += f" (stored at {stored[0]}x{stored[1]}, views cropped from them)"
    return text


def epochs_text(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


class Stage:
    """One stage. `kind`: stages whose steps cost alike share one (see `Progress`);
    `distributed`: it trains on every worker, inside the strategy (the other stages run on
    the chief alone); `ledgered`: the ledger keeps it, so a run of the same config reuses it
    (data and report run every time)."""

    name: ClassVar[str] = ""
    kind: ClassVar[str | None] = None
    distributed: ClassVar[bool] = False
    ledgered: ClassVar[bool] = True

    def enabled(self, config: RunConfig) -> bool:
        return True

    def epochs(self, config: RunConfig) -> int:
        """Epochs over the training split it trains for (0: none)."""
        return 0

    def settings(self, config: RunConfig) -> dict | None:
        """Its own settings (`option(stage=...)`), kept in its record; None when it has none."""
        names = config_lib.stage_settings(self.name)
        return config_lib.settings(config, names) if names else None

    def detail(self, run: Run) -> str:
        return ""

    def files(self, run: Run, record: dict) -> list[str]:
        """The files in the run folder that `record` needs to be reused."""
        return []

    def work(self, run: Run) -> tuple[Any, dict]:
        """Runs the stage: its value and its ledger record (JSON-able)."""
        raise NotImplementedError

    def reload(self, run: Run, record: dict) -> Any:
        """The value of an earlier run's stage from its `record`."""
        raise NotImplementedError

    def deliver(self, run: Run, value: Any, record: dict) -> None:
        """Hands `value` to the later stages through `run`."""


class Data(Stage):
    """Loads the dataset as raw pixels; a run folder of other data is a ValueError."""

    name = "data"
    ledgered = False

    def detail(self, run: Run) -> str:
        return run.config.dataset

    def work(self, run: Run) -> tuple[data.Dataset, dict]:
        config = run.config
        teacher = feed.teacher_size(config)
        photos = config.dataset.startswith("folder:")
        ds = data.load(
            config.dataset,
            data_dir=config.data_dir,
            image_size=config.image_size,
            view_sizes=[teacher] if teacher else [],
            cache_dir=config.cache_dir,
            **({"max_megapixels": config.max_megapixels} if photos else {}),
        ).raw_pixels()
        digest = data_digest(ds)
        run.agree({"the data (the first digits of its digest)": int(digest[:6], 16)})
        earlier = run.ledger.record("data")
        if earlier is not None and earlier["digest"] != digest:
            raise ValueError(
                f"--dataset={config.dataset} holds other images or labels than when the run in "
                f"--out {str(run.out)!r} began; pass a new --out, or delete {str(run.out)!r} to "
                "start over."
            )
        return ds, {"digest": digest, "new": earlier is None, "teacher_size": teacher}

    def deliver(self, run: Run, ds: data.Dataset, record: dict) -> None:
        run.ds = ds
        run.teacher_size = record["teacher_size"]
        run.labeled = training.labeled_subset(run.config, ds)
        run.progress.work = stage_work(run.config, ds)
        if record["new"]:
            run.ledger.finish("data", {"digest": record["digest"], "seconds": record["seconds"]})
        if ds.skipped:
            run.progress.log(f"   data: {skipped_text(ds, run.config)}")
        run.progress.log(f"   data: {sizes_text(ds, run.teacher_size)}")


class ModelStage(Stage):
    """A stage that makes one model, saved as `<model>.keras`, and its training history."""

    model: ClassVar[str] = ""
    history: ClassVar[str | None] = None

    def files(self, run: Run, record: dict) -> list[str]:
        return [f"{self.model}.keras"]

    def train(self, run: Run) -> training.Trained:
        raise NotImplementedError

    def work(self, run: Run) -> tuple[keras.Model, dict]:
        with run.scope(self.distributed):
            trained = self.train(run)
        artifacts.save_model(trained.model, run.keep / f"{self.model}.keras")
        return trained.model, {"history": trained.history}

    def reload(self, run: Run, record: dict) -> keras.Model:
        with run.scope(self.distributed):
            path = run.out / f"{self.model}.keras"
            return artifacts.load_model(path, unsafe=run.config.unsafe_load, what=self.model)

    def deliver(self, run: Run, model: keras.Model, record: dict) -> None:
        run.models[self.model] = model
        if self.history:
            run.histories[self.history] = record.get("history", {})


class Teacher(ModelStage):
    """Trains the teacher on every label, or loads `teacher_weights`; then draws the students'
    initial weights (at `config.seed`, so they do not depend on whether it was reused)."""

    name, model, history, distributed = "teacher", "teacher", "teacher", True

    def epochs(self, config: RunConfig) -> int:
        return 0 if config.teacher_weights else config.teacher_epochs

    def detail(self, run: Run) -> str:
        config = run.config
        files = config.teacher_files
        if len(files) > 1:
            return f"the ensemble of {len(files)} teachers from {', '.join(files)}"
        if files:
            return f"{config.teacher}, from {files[0]}"
        return f"{config.teacher}, {epochs_text(config.teacher_epochs)} on every label"

    def train(self, run: Run) -> training.Trained:
        if not run.config.teacher_files:
            fitting = run.fitting(self.name)
            return training.train_teacher(run.config, run.ds, fitting, run.teacher_size)
        teacher, warnings = training.load_teachers(
            run.config.teacher_files, run.ds, run.teacher_size, run.config.unsafe_load
        )
        for warning in warnings:
            run.progress.log(f"   teacher: {warning}")
        return training.Trained(teacher, {})

    def deliver(self, run: Run, model: keras.Model, record: dict) -> None:
        super().deliver(run, model, record)
        config = run.config
        keras.utils.set_random_seed(config.seed)
        with run.scope(True):
            student = training.classifier(config.student, config.student_kwargs, run.ds, "student")
        run.init = student.get_weights()


class Scratch(ModelStage):
    """The student alone on the labeled images, as many steps as the distilled one."""

    name, kind, distributed = "scratch", "student", True
    model, history, report_as = "student_scratch", "student (scratch)", "scratch"

    def epochs(self, config: RunConfig) -> int:
        return config.student_epochs

    def detail(self, run: Run) -> str:
        return f"{run.config.student} on the {len(run.labeled)} labeled images"

    def train(self, run: Run) -> training.Trained:
        fitting = run.fitting(self.name)
        return training.train_scratch(run.config, run.ds, run.labeled, run.init, fitting)

    def deliver(self, run: Run, model: keras.Model, record: dict) -> None:
        super().deliver(run, model, record)
        labels = {"model": run.config.student, "labels": len(run.labeled)}
        run.students[self.report_as] = (self.model, {**labels, "file": f"{self.model}.keras"})


class Distil(ModelStage):
    """The student on every training image with `config.method`."""

    name, kind, distributed = "distil", "student", True
    model, history = "student_distilled", "student (distilled)"

    def epochs(self, config: RunConfig) -> int:
        return config.student_epochs

    def detail(self, run: Run) -> str:
        config = run.config
        images = len(run.ds.x_train)
        return f"{config.method}, {epochs_text(config.student_epochs)} on all {images} images"

    def train(self, run: Run) -> training.Trained:
        config = run.config
        if training.features_of(config) is None:
            elements = run.elements()
        else:
            if run.teacher_views:
                run.progress.log(
                    f"   distil: {config.method} needs the teacher's features every step; the "
                    "teacher runs online (--teacher_views serves the other stages)"
                )
            elements = training.distillation_elements(config, run.ds, None, run.labeled)
        teacher = run.models["teacher"]
        fitting = run.fitting(self.name)
        return training.distil(
            config, run.ds, teacher, elements, run.init, fitting, run.teacher_size
        )

    def deliver(self, run: Run, model: keras.Model, record: dict) -> None:
        super().deliver(run, model, record)
        config = run.config
        extra = {"model": config.student, "labels": len(run.labeled)}
        extra.update(alpha=config.alpha, temperature=config.temperature)
        run.students["distilled"] = (self.model, {**extra, "file": f"{self.model}.keras"})
        if run.chief:
            student = run.float32(self.model)
            modes = delivery.student_modes(config)
            run.plan.append(delivery.Export(self.model, student, modes, selective=True))


class PruneChannels(ModelStage):
    """The distilled student with a share of its channels removed (`--prune_channels`), or
    shrunk to a latency by a NetAdapt search (`--latency_budget`), fine-tuned with
    distillation (a smaller dense model: fewer MACs on any runtime)."""

    name, kind = "prune_channels", "student"
    model, history = "student_pruned_channels", "student (pruned channels)"

    def enabled(self, config: RunConfig) -> bool:
        return config.prune_channels is not None or config.latency_budget is not None

    def epochs(self, config: RunConfig) -> int:
        return config.compress_epochs

    def detail(self, run: Run) -> str:
        config = run.config
        tuning = f"{epochs_text(config.compress_epochs)} of distillation"
        if config.latency_budget is not None:
            return f"searching for a {config.latency_budget} latency budget, then {tuning}"
        return f"removing {config.prune_channels:.0%} of the channels, {tuning}"

    def work(self, run: Run) -> tuple[keras.Model, dict]:
        if run.config.latency_budget is None:
            return super().work(run)
        with run.scope(self.distributed):
            trained, search = shrink.shrink(*self._arguments(run))
        artifacts.save_model(trained.model, run.keep / f"{self.model}.keras")
        return trained.model, {"history": trained.history, "search": search}

    def _arguments(self, run: Run) -> tuple:
        """What pruning and the search start from: the float32 distilled student and teacher,
        the training elements, the stage's backups, the teacher's size."""
        distilled, teacher = run.float32("student_distilled"), run.float32("teacher")
        elements, fitting = run.elements(), run.fitting(self.name)
        return run.config, run.ds, distilled, teacher, elements, fitting, run.teacher_size

    def train(self, run: Run) -> training.Trained:
        return training.prune_channels(*self._arguments(run))

    def deliver(self, run: Run, model: keras.Model, record: dict) -> None:
        super().deliver(run, model, record)
        extra = {"model": run.config.student, "file": f"{self.model}.keras"}
        run.students["pruned_channels"] = (self.model, extra)
        run.search = record.get("search")
        modes = delivery.student_modes(run.config)
        run.plan.append(delivery.Export(self.model, model, modes, selective=True))


class Prune(ModelStage):
    """The distilled student pruned to `config.prune` sparsity with TFMOT, still distilling."""

    name, kind, model = "prune", "tfmot", "student_pruned"

    def enabled(self, config: RunConfig) -> bool:
        return config.prune is not None

    def epochs(self, config: RunConfig) -> int:
        return config.compress_epochs

    def detail(self, run: Run) -> str:
        config = run.config
        return f"to {config.prune:.0%} sparsity, {epochs_text(config.compress_epochs)}"

    def train(self, run: Run) -> training.Trained:
        backup = training.tf_keras_backup(run.ledger.backup_dir(self.name))
        backup += run.tf_keras_tensorboard(self.name)
        distilled = run.float32("student_distilled")
        batches = training.epoch_batches(
            run.config, run.ds, run.elements(), feed.sizes_of(run.ds, run.teacher_size, "both")
        )
        pruned = training.prune(
            run.config, run.ds, distilled, batches, run.online_teacher(), backup
        )
        return training.Trained(pruned, {})

    def deliver(self, run: Run, model: keras.Model, record: dict) -> None:
        super().deliver(run, model, record)
        extra = {"model": run.config.student, "file": f"{self.model}.keras"}
        extra["sparsity"] = compress.overall_sparsity(model)
        run.students["pruned"] = (self.model, extra)
        run.plan.append(delivery.Export(self.model, model, ("none", "int8"), sparse=True))


class QAT(Stage):
    """Quantization-aware fine-tuning with distillation of the pruned student (keeping its
    zeros) or of the distilled one; exported to int8."""

    name, kind, model = "qat", "tfmot", "student_qat"
    weights = "student_qat.weights.h5"

    def enabled(self, config: RunConfig) -> bool:
        return config.qat

    def epochs(self, config: RunConfig) -> int:
        return config.compress_epochs

    def detail(self, run: Run) -> str:
        return f"quantization-aware, {epochs_text(run.config.compress_epochs)}"

    def files(self, run: Run, record: dict) -> list[str]:
        return [self.weights]

    @staticmethod
    def base(run: Run) -> keras.Model:
        pruned = run.models.get("student_pruned")
        return pruned if pruned is not None else run.float32("student_distilled")

    def work(self, run: Run) -> tuple[Any, dict]:
        backup = training.tf_keras_backup(run.ledger.backup_dir(self.name))
        backup += run.tf_keras_tensorboard(self.name)
        batches = training.epoch_batches(
            run.config, run.ds, run.elements(), feed.sizes_of(run.ds, run.teacher_size, "both")
        )
        model = training.quantize_aware(
            run.config, self.base(run), batches, run.online_teacher(), backup
        )
        artifacts.save_weights(model, run.out / self.weights)
        return model, {}

    def reload(self, run: Run, record: dict) -> Any:
        preserve = run.config.prune is not None
        model = compress.quantize_model(self.base(run), preserve_sparsity=preserve)
        model.load_weights(run.out / self.weights)
        return model

    def deliver(self, run: Run, model: Any, record: dict) -> None:
        run.plan.append(delivery.Export(self.model, model, ("int8",)))


class Export(Stage):
    """Every student of the plan, and the teacher, as `.tflite` files checked in LiteRT."""

    name = "export"

    def plan(self, run: Run) -> list[delivery.Export]:
        """The students' files, the teacher's and, of an ensemble, each of its teachers'."""
        teacher = run.float32("teacher")
        members = ensemble.members_of(teacher)
        each = [] if members is None else members[0]
        return [
            *run.plan,
            delivery.Export("teacher", teacher, ("none",)),
            *(delivery.Export(f"teacher_{i}", m, ("none",)) for i, m in enumerate(each)),
        ]

    def detail(self, run: Run) -> str:
        return f"{sum(len(item.quantizations) for item in self.plan(run))} .tflite files"

    def files(self, run: Run, record: dict) -> list[str]:
        return [row["file"] for row in record["rows"]]

    def work(self, run: Run) -> tuple[list[dict], dict]:
        plan = self.plan(run)
        rows = delivery.export(run.config, run.ds, plan, run.out)
        extra, selective = delivery.selective(run.config, run.ds, plan, run.out)
        return rows + extra, {"rows": rows + extra, "selective": selective}

    def reload(self, run: Run, record: dict) -> list[dict]:
        return record["rows"]

    def deliver(self, run: Run, rows: list[dict], record: dict) -> None:
        run.rows = rows
        run.selective = record.get("selective") or []


class Bench(Stage):
    """LiteRT latency of every file, and the phone's with `--android`; bench.json."""

    name = "bench"

    def detail(self, run: Run) -> str:
        where = " and on the phone" if run.config.android else ""
        return f"{run.config.bench_runs} runs of each file in LiteRT{where}"

    def files(self, run: Run, record: dict) -> list[str]:
        return ["bench.json"]

    def work(self, run: Run) -> tuple[dict, dict]:
        measured = delivery.bench(run.config, [run.out / row["file"] for row in run.rows])
        dump = lambda f: json.dump(measured, f, indent=2)  # noqa: E731
        artifacts.write_atomic(run.out / "bench.json", dump)
        return measured, {"bench": measured}

    def reload(self, run: Run, record: dict) -> dict:
        return record["bench"]

    def deliver(self, run: Run, latency: dict, record: dict) -> None:
        run.latency = latency


class Report(Stage):
    """report.json, report.md and the plots."""

    name = "report"
    ledgered = False

    def detail(self, run: Run) -> str:
        return "report.md, report.json and plots"

    def work(self, run: Run) -> tuple[dict, dict]:
        result = report_of(run)
        delivery.write_reports(result, run.out, pictures_of(run))
        return result, {}

    def deliver(self, run: Run, result: dict, record: dict) -> None:
        run.result = result


STAGES: tuple[Stage, ...] = (
    Data(),
    Teacher(),
    Scratch(),
    Distil(),
    PruneChannels(),
    Prune(),
    QAT(),
    Export(),
    Bench(),
    Report(),
)


def stages_of(config: RunConfig) -> list[Stage]:
    """The stages `run` goes through for `config`, in order."""
    return [stage for stage in STAGES if stage.enabled(config)]


def stage_names(config: RunConfig) -> list[str]:
    return [stage.name for stage in stages_of(config)]


def stage_work(config: RunConfig, ds: data.Dataset) -> dict[str, int]:
    """The stages of this run with their training steps (for the time estimate)."""
    return {
        stage.name: training.steps_of(config, ds, stage.epochs(config))
        for stage in stages_of(config)
    }


def report_of(run: Run) -> dict:
    """The report of a finished run (see `docs/` and `report.write_json`)."""
    config, ds = run.config, run.ds
    timings = {**run.timings, "total": round(sum(run.timings.values()), 2)}
    if run.views_labelling_s is not None:  # inside the time of the stage that first distilled
        timings["teacher_views_labelling"] = run.views_labelling_s
    teacher = teacher_entry(run)
    students = {
        key: training.entry(run.float32(model), ds, config, **extra)
        for key, (model, extra) in run.students.items()
    }
    return {
        "dataset": dataset_entry(run),
        "teacher": teacher,
        "students": students,
        "tflite": delivery.with_latency(run.rows, run.latency),
        "config": config_lib.settings(config),
        "timings_s": timings,
        "loaded_stages": list(run.loaded),
        "tensorboard": str(run.out / TENSORBOARD) if config.tensorboard else None,
        "op_profile": op_profile_of(run),
        "search": run.search and {**run.search, "check": (run.latency or {}).get("budget_check")},
        "selective": delivery.selective_costs(run.selective, run.rows, run.latency),
        "history": dict(run.histories),
    }


ATTENTION_METHODS = ("at", "kd+at", "gat")


def pictures_of(run: Run) -> dict | None:
    """With an attention method, the attention maps of the teacher and of the scratch and
    distilled students (`delivery.attention_pictures`)."""
    if run.config.method not in ATTENTION_METHODS:
        return None
    students = {
        "distilled": run.float32("student_distilled"),
        "scratch": run.float32("student_scratch"),
    }
    return delivery.attention_pictures(run.ds, run.float32("teacher"), students)


def op_profile_of(run: Run) -> dict | None:
    """With `--android --enable_op_profiling`, the distilled student's float32 file's per-op
    rows on the phone."""
    phone = (run.latency or {}).get("android") or {}
    name = delivery.DISTILLED_FP32
    if not run.config.enable_op_profiling or not phone.get(name, {}).get("ops"):
        return None
    return {"file": name, "ops": phone[name]["ops"]}


def teacher_entry(run: Run) -> dict:
    """The teacher's report entry; an ensemble's lists each of its teachers under `members`
    (accuracy, size, the file it came from; its `.tflite` rows are `teacher_<i>`)."""
    config, ds = run.config, run.ds
    teacher32 = run.float32("teacher")
    shape = list(teacher32.inputs[0].shape[1:])
    members = ensemble.members_of(teacher32)
    if members is None:
        return training.entry(
            teacher32, ds, config, model=config.teacher, file="teacher.keras", input_shape=shape
        )
    teachers, weights = members
    rows = [
        training.entry(member, ds, config, model=f"teacher_{i}", file=path, weight=weight)
        for i, (member, path, weight) in enumerate(
            zip(teachers, config.teacher_files, weights, strict=True)
        )
    ]
    return training.entry(
        teacher32, ds, config, model="ensemble", file="teacher.keras", input_shape=shape
    ) | {"members": rows}


def dataset_entry(run: Run) -> dict:
    ds, config = run.ds, run.config
    return {
        "name": ds.name,
        "train": len(ds.x_train),
        "test": len(ds.x_test),
        "num_classes": ds.num_classes,
        "input_shape": list(ds.input_shape),
        "pixel_max": ds.pixel_max,
        "augmented": training.augments(config),
        "labels_per_class": config.labels_per_class,
        "labeled": len(run.labeled),
        "skipped_files": ds.skipped,
        "skipped_by_reason": dict(ds.skipped_reasons),
        "streamed": ds.streamed,
        "stored_shape": list(ds.x_train.image_shape) if ds.streamed else None,
    }
