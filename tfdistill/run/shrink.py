"""`--latency_budget`: the distilled student shrunk to a latency by `compress.budget`'s NetAdapt
search, resumable per round, then fine-tuned longer like `--prune_channels`' student."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfdistill import artifacts, bench, compress, data
from tfdistill.compress.budget import SearchState
from tfdistill.export import inference_function, to_tflite
from tfdistill.run import delivery, training
from tfdistill.run.config import RunConfig

STATE_FILE, MODEL_FILE = "search.json", "search_model.keras"
SELECTED_BY = "agreement with the teacher's top class on the first {n} training images"


def agreement(model: keras.Model, images: np.ndarray, targets: np.ndarray) -> float:
    """Share of `images` (n, h, w, C) whose top class from `model` is `targets`' (n,). Run
    eagerly by slices: `predict` would trace a new function for every proposal."""
    predicted = np.concatenate(
        [
            np.argmax(np.asarray(model(images[i : i + 256], training=False)), axis=-1)
            for i in range(0, len(images), 256)
        ]
    )
    return float(np.mean(predicted == targets))


def _saved(folder: Path) -> SearchState | None:
    """The search state saved after the last finished round, if any."""
    if not (folder / STATE_FILE).is_file() or not (folder / MODEL_FILE).is_file():
        return None
    saved = json.loads((folder / STATE_FILE).read_text())
    model = keras.models.load_model(folder / MODEL_FILE)
    return SearchState(model, saved["latency_us"], saved["initial_us"], saved["rounds"])


def _save(folder: Path, state: SearchState) -> None:
    artifacts.save_model(state.model, folder / MODEL_FILE)
    record = {"latency_us": state.latency_us, "initial_us": state.initial_us}
    text = json.dumps({**record, "rounds": state.rounds}, indent=1)
    artifacts.write_atomic(folder / STATE_FILE, lambda f: f.write(text))


RELATIVE = "ratios to the distilled student's file, timed interleaved, times its {us:.1f} µs"
SINGLE = "single measurements"


def _measure(
    config: RunConfig, folder: Path, distilled: keras.Model, initial_us: float | None
) -> tuple[Callable[[keras.Model], float], float, str]:
    """(measure: model -> µs, the distilled student's µs, how it is timed). A share budget
    ("0.6x") timed here is met as a ratio, so each model's float32 file is timed interleaved
    with the distilled student's (`config.bench_runs` rounds, paired median ratio) and the
    ratio scaled by the distilled student's latency (`initial_us`, or measured once): load that
    changes during the search then moves both alike. A budget in µs, or on the phone: single
    measurements (`delivery.latency_us`)."""
    candidate = folder / "candidate.tflite"

    def single(model: keras.Model) -> float:
        return delivery.latency_us(config, model, candidate)

    kind, _ = compress.budget.parse_budget(config.latency_budget)
    if kind != "share" or config.android:
        return single, single(distilled) if initial_us is None else initial_us, SINGLE
    reference = folder / "reference.tflite"
    measured = delivery.latency_us(config, distilled, reference)  # also writes the reference
    initial_us = measured if initial_us is None else initial_us

    def relative(model: keras.Model) -> float:
        to_tflite(inference_function(model), candidate, quantization="none")
        files = {"candidate": candidate, "reference": reference}
        timing = bench.interleaved_tflite(
            files, num_threads=config.threads, rounds=config.bench_runs
        )
        return timing.paired_ratio("candidate", "reference") * initial_us

    return relative, initial_us, RELATIVE.format(us=initial_us)


def _steps(
    config: RunConfig,
    ds: data.Dataset,
    teacher: keras.Model,
    elements: tuple,
    size: Any,
    measure: Callable[[keras.Model], float],
    labelled: tuple[np.ndarray, np.ndarray],
) -> tuple[Callable, Callable, Callable]:
    """(measure, fine_tune, evaluate) of `compress.budget.search` for this run; proposals are
    evaluated by their agreement with the teacher's top classes of `labelled`."""
    images, targets = labelled

    def fine_tune(model: keras.Model) -> keras.Model:
        steps = (1, config.search_steps)
        training.distil_pruned(config, ds, model, teacher, elements, steps, size=size)
        return model

    return measure, fine_tune, lambda model: agreement(model, images, targets)


def shrink(
    config: RunConfig,
    ds: data.Dataset,
    distilled: keras.Model,
    teacher: keras.Model,
    elements: tuple,
    fitting: training.Fitting | None = None,
    size: Any = None,
) -> tuple[training.Trained, dict]:
    """The search from `distilled` to `config.latency_budget` (rounds saved under the stage's
    backup folder, so an interrupted run resumes at its last finished round), the winner
    fine-tuned by `training.distil_pruned` for `config.compress_epochs`, and the search's
    report record."""
    fitting = fitting or training.Fitting()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) if fitting.backup_dir is None else fitting.backup_dir / "search"
        folder.mkdir(parents=True, exist_ok=True)
        labelled = training.teacher_labelled(config, ds, teacher, size)
        state = _saved(folder)
        initial = None if state is None else state.initial_us
        measure, initial, timed = _measure(config, folder, distilled, initial)
        steps = _steps(config, ds, teacher, elements, size, measure, labelled)
        state = state or SearchState(distilled, initial, initial)
        limit = compress.budget.budget_us(config.latency_budget, state.initial_us)
        compress.budget.search(
            state,
            limit,
            steps,
            step_share=config.search_step,
            criterion=config.prune_criterion,
            data=training.criterion_data(config, ds, teacher, size, labelled),
            on_round=lambda done: _save(folder, done),
        )
        epochs = (config.compress_epochs, training.steps_of(config, ds, 1))
        winner = state.model
        history = training.distil_pruned(
            config, ds, winner, teacher, elements, epochs, fitting, size
        )
        final = steps[0](winner)
    record = {
        "budget": config.latency_budget,
        "budget_us": limit,
        "start_us": state.initial_us,
        "searched_us": state.latency_us,
        "final_us": final,
        "met": final <= limit,
        "timed": timed,
        "selected_by": SELECTED_BY.format(n=len(labelled[1])),
        "rounds": state.rounds,
    }
    return training.Trained(winner, history), record
