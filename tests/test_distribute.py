"""tf.distribute: two worker processes of a MultiWorkerMirroredStrategy on 127.0.0.1 against one
process, a run killed with SIGKILL mid-epoch against an unbroken one, TF_CONFIG checks, the
workers' roles, and cached teacher outputs under MirroredStrategy (XLA: test_attention.py)."""

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from tests.run_worker import SMALL_LR, SMALL_STEPS, small_distiller
from tfdistill import _keras_internals, data, distribute, resume
from tfdistill import run as run_lib
from tfdistill.data import cache_teacher_outputs
from tfdistill.distiller import Distiller
from tfdistill.run import training

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

WORKER = Path(__file__).with_name("run_worker.py")
SMALL = {
    "student_kwargs": {"widths": [2, 4]},
    "labels_per_class": 3,
    "student_epochs": 2,
    "batch_size": 256,
    "method": "kd+at",
    "augment": True,
    "quantize": ["none"],
    "bench_runs": 1,
    "quiet": True,
}
STALL = (1, 2)  # the distil stage's epoch and batch where the run to be killed stops


def reordered_tolerance(steps: int, lr: float) -> float:
    """Absolute tolerance on weights (gradients of size below 1) between two runs of the same
    arithmetic whose sums may run in another order or through other kernels: oneDNN's
    AVX-512/AMX ones against TensorFlow's own, an all-reduce over replicas or workers against
    one device. Each step's gradient then differs by float32 rounding, about 1e-5 of its size
    (2^-24 per addition over about a hundred terms, with cancellation); each step moves the
    weights by `lr` times it, and `steps` steps add up. Bit-exact claims stay where the same
    kernels run in the same process settings (the resumed run, with op determinism)."""
    return steps * lr * 1e-5


def assert_same_fit(got: dict, reference: dict, steps: int, lr: float) -> None:
    """`got` and `reference` ({name: logs per epoch or a weight}) within `reordered_tolerance`;
    logs (averages of float32 losses near 1) within 1e-5 relative too."""
    assert set(got) == set(reference)
    atol = reordered_tolerance(steps, lr)
    for key, values in reference.items():
        np.testing.assert_allclose(got[key], values, rtol=1e-5, atol=atol, err_msg=key)


def assert_replicas_fit_as_one(
    fitted: Callable[[], tuple[dict, list]], strategy: tf.distribute.Strategy, steps: int, lr: float
) -> None:
    """`fitted()` -> (history, weights) on one device and under `strategy` agree within
    `assert_same_fit`."""
    runs = []
    for scope in (contextlib.nullcontext(), strategy.scope()):
        with scope:
            history, weights = fitted()
        runs.append({**history, **dict(enumerate(weights))})
    single, replicated = runs
    assert_same_fit(replicated, single, steps, lr)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _launch(config: dict, folder: Path, name: str, *args: str, tf_config: dict | None = None):
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    log = open(folder / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    process.log = log
    return process


def _finish(process, timeout: float = 300) -> str:
    try:
        process.wait(timeout)
    finally:
        process.kill()
        process.log.close()
    text = Path(process.log.name).read_text()
    assert process.returncode == 0, text[-3000:]
    return text


class Starts(keras.callbacks.Callback):
    """(model class, epoch, optimizer step) at the start of every epoch of every fit."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, int]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        step = resume.optimizer_step(self.model.optimizer)
        self.seen.append((type(self.model).__name__, epoch, step))


@dataclasses.dataclass
class Runs:
    folder: Path
    chief_log: str
    worker_log: str
    killed_files: list[str]
    resumed: dict
    resumed_log: list[str]
    resumed_starts: list[tuple[str, int, int]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One config run three ways: by two worker processes of a MultiWorkerMirroredStrategy;
    by a process with deterministic ops killed with
    SIGKILL in the middle of a distil epoch, then resumed here; and unbroken, here (the
    reference). The teacher is untrained: exactness needs no accuracy."""
    folder = tmp_path_factory.mktemp("distributed")
    ds = data.load("digits").raw_pixels()
    keras.utils.set_random_seed(0)
    teacher = training.classifier("convnet", {"widths": (4, 8)}, ds, "teacher")
    teacher.save(folder / "teacher.keras")
    base = {**SMALL, "teacher_weights": str(folder / "teacher.keras")}
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    multi = {
        **base,
        "out": str(folder / "multi"),
        "strategy": "multi_worker",
        "prune": 0.5,  # the chief prunes alone, after the other worker left
        "compress_epochs": 1,
    }
    workers = [
        _launch(
            multi,
            folder,
            f"worker{i}",
            tf_config={"cluster": cluster, "task": {"type": "worker", "index": i}},
        )
        for i in range(2)
    ]
    killed = {**base, "out": str(folder / "killed"), "deterministic": True, "quiet": False}
    doomed = _launch(killed, folder, "doomed", f"--stall={STALL[0]},{STALL[1]}")
    marker = Path(killed["out"] + ".stalled")
    deadline = time.monotonic() + 300
    while not marker.exists() and doomed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), (folder / "doomed.log").read_text()[-3000:]
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    doomed.log.close()
    assert doomed.returncode == -signal.SIGKILL
    killed_out = Path(killed["out"])
    killed_files = sorted(
        str(p.relative_to(killed_out)) for p in killed_out.rglob("*") if p.is_file()
    )
    resumed_log: list[str] = []
    starts = Starts()
    try:  # deterministic=True turns TensorFlow's op determinism on in this process
        resumed = run_lib.run(
            run_lib.RunConfig(**killed), log=resumed_log.append, callbacks=(starts,)
        )
        unbroken = {**killed, "out": str(folder / "unbroken"), "quiet": True}
        run_lib.run(run_lib.RunConfig(**unbroken), log=lambda _: None)
    finally:
        tf_config.disable_op_determinism()
    chief_log, worker_log = (_finish(w) for w in workers)
    return Runs(folder, chief_log, worker_log, killed_files, resumed, resumed_log, starts.seen)


def _weights(path: Path) -> list[np.ndarray]:
    return keras.models.load_model(path).get_weights()


def _assert_same_run(history: dict, reference: dict, rtol: float) -> None:
    assert set(history) == set(reference)
    for key, values in reference.items():
        assert len(history[key]) == len(values), key
        np.testing.assert_allclose(history[key], values, rtol=rtol, err_msg=key)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> tuple[list[dict], list[str]]:
    """`small_distiller` fitted by the two workers of a MultiWorkerMirroredStrategy on
    127.0.0.1: (each worker's results, each worker's log)."""
    folder = tmp_path_factory.mktemp("two_workers")
    config = {"out": str(folder / "multi"), "strategy": "multi_worker"}
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = [
        _launch(
            config,
            folder,
            f"worker{i}",
            "--distiller",
            tf_config={"cluster": cluster, "task": {"type": "worker", "index": i}},
        )
        for i in range(2)
    ]
    logs = [_finish(w) for w in workers]
    return [dict(np.load(folder / f"multi.distiller{i}.npz")) for i in range(2)], logs


def test_two_worker_processes_train_the_distiller_as_one_process(two_workers):
    """Batches split 4 + 3 over the workers, and a last batch of one that leaves worker 1
    with no example, within the tolerance of sums taken in another order."""
    results, logs = two_workers
    reference = small_distiller()
    fits = {"loss", "student_loss", "distillation_loss"}
    assert {k for k in reference if k.startswith("cached_") and "weight" not in k} == {
        f"cached_{log}" for log in fits
    }
    assert {"online_attention_loss", "online_gradient_attention_loss"} <= set(reference)
    for saved in results:
        assert_same_fit(saved, reference, SMALL_STEPS, SMALL_LR)
    disagree = "agree: the workers disagree on the worker's index (0 on replica 0, 1 on replica 1)"
    assert all(disagree in log for log in logs)


def test_a_replica_with_no_example_trains_as_one_device(mirrored):
    """`small_distiller` (online with AT, gradient AT and a synchronized-BatchNorm student,
    and cached) under MirroredStrategy over two logical CPUs equals one device: its last batch
    of one leaves the second replica empty, whose padding row counts nowhere (a padding row
    counted in synchronized BatchNorm's statistics moves its moving mean by about 1e-2)."""
    single = small_distiller()
    with mirrored.scope():
        replicated = small_distiller()
    assert_same_fit(replicated, single, SMALL_STEPS, SMALL_LR)


def test_a_plain_model_fits_evaluates_and_predicts_with_an_empty_replica(mirrored):
    """13 images in batches of 4: the last splits 1 + 0. Keras's compiled loss averages per
    replica, so only a finite loss is asked of training; predictions are per example."""
    rng = np.random.default_rng(4)
    x = rng.random((13, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 13)

    def model() -> keras.Model:
        keras.utils.set_random_seed(5)
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(4, 3)(inputs)
        h = keras.layers.BatchNormalization(synchronized=True)(h)
        h = keras.layers.Conv2D(4, 3, activation="relu")(h)
        h = keras.layers.BatchNormalization()(h)
        outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
        net = keras.Model(inputs, outputs)
        net.compile(
            "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["acc"]
        )
        return net

    with mirrored.scope():
        replicated = distribute.support_strategy(model())
    history = replicated.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"]).all() and len(history["loss"]) == 2
    evaluated = replicated.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert np.isfinite(evaluated["loss"]) and 0 <= evaluated["acc"] <= 1
    single = model()
    single.set_weights(replicated.get_weights())
    # The unsynchronized BatchNorm's moving statistics are per replica under Keras 3 (its
    # variables aggregate with "none"): give every replica replica 0's, as saving would.
    replicated.set_weights(single.get_weights())
    predicted = replicated.predict(x, batch_size=4, verbose=0)
    assert predicted.shape == (13, 3)
    np.testing.assert_allclose(predicted, single.predict(x, batch_size=4, verbose=0), atol=1e-5)


def test_the_onednn_setting_is_the_one_asked_for():
    """What the subprocess of test_onednn.py relies on: TF_ENABLE_ONEDNN_OPTS decides."""
    asked = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if asked not in ("0", "1"):
        pytest.skip("TF_ENABLE_ONEDNN_OPTS is not set: the CPU's default holds")
    assert _keras_internals.onednn_enabled() == (asked == "1")


def test_two_worker_processes_run_the_pipeline_as_one_process(runs):
    """The chief alone writes the run's folder, which matches one process's run: the same
    files (and the pruned student's, which it makes alone after the other worker left), and the
    same losses and weights up to what Adam makes of the last-bit differences of sums taken in
    another order (below 1e-3 of the weights here)."""
    assert "result keys: ['worker']" in runs.worker_log
    assert "result keys: ['config'," in runs.chief_log
    chief = json.loads((runs.folder / "multi" / "report.json").read_text())
    unbroken = json.loads((runs.folder / "unbroken" / "report.json").read_text())
    names = sorted(p.name for p in (runs.folder / "multi").iterdir())
    pruned = {"student_pruned.keras", "student_pruned_fp32.tflite", "student_pruned_int8.tflite"}
    assert set(names) == {p.name for p in (runs.folder / "unbroken").iterdir()} | pruned
    assert chief["students"]["pruned"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    for name in ("student (scratch)", "student (distilled)"):
        _assert_same_run(chief["history"][name], unbroken["history"][name], 2e-4)
    assert {"attention_loss", "distillation_loss"} <= set(chief["history"]["student (distilled)"])
    for name in ("student_scratch.keras", "student_distilled.keras"):
        single = _weights(runs.folder / "unbroken" / name)
        distributed = _weights(runs.folder / "multi" / name)
        for a, b in zip(single, distributed, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-3)


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(runs):
    assert "student_distilled.keras" not in runs.killed_files
    assert ".backup/distil/checkpoint/training_metadata.json" in runs.killed_files
    assert "   distil: resuming from its last backed-up epoch" in runs.resumed_log
    assert "run.lock" in runs.killed_files  # the killed run's lock, taken over by the resume
    takeover = [line for line in runs.resumed_log if "taking over the lock" in line]
    assert len(takeover) == 1 and "killed or crashed" in takeover[0], runs.resumed_log
    steps = -(-1437 // SMALL["batch_size"])
    assert runs.resumed_starts == [("Distiller", 1, steps)]  # not a restart from epoch 0
    assert runs.resumed["loaded_stages"] == ["teacher", "scratch"]
    unbroken = json.loads((runs.folder / "unbroken" / "report.json").read_text())
    for name, history in unbroken["history"].items():
        _assert_same_run(runs.resumed["history"][name], history, 0.0)
    for name in ("student_distilled.keras", "student_scratch.keras"):
        resumed = _weights(runs.folder / "killed" / name)
        for a, b in zip(_weights(runs.folder / "unbroken" / name), resumed, strict=True):
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        (None, "reads the cluster from the TF_CONFIG environment variable, which is not set"),
        ("{cluster", "TF_CONFIG must be JSON with 'cluster' and 'task'"),
        ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG must be JSON with 'cluster' and 'task'"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
            "is not one of its cluster's workers",
        ),
        (
            '{"cluster": {"ps": ["a:1"], "worker": ["b:1"]}, "task": {"type": "ps", "index": 0}}',
            "no parameter servers",
        ),
        ('{"cluster": [], "task": {"type": "worker", "index": 0}}', "must be JSON with"),
        (
            '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
            "job 'worker' must be a non-empty list of 'host:port' strings, got 'a:1'",
        ),
        (
            '{"cluster": {"worker": 5}, "task": {"type": "worker", "index": 0}}',
            "must be a non-empty list of 'host:port' strings, got 5",
        ),
        (
            '{"cluster": {"chief": [], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
            "job 'chief' must be a non-empty list",
        ),
        (
            '{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}',
            "has 2 chiefs; one at most",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": ["worker"], "index": 0}}',
            "not one of",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": true}}',
            "not one of",
        ),
    ],
)
def test_a_bad_tf_config_is_named(tf_config, message):
    environ = {} if tf_config is None else {"TF_CONFIG": tf_config}
    with pytest.raises(ValueError, match=message) as raised:
        distribute.cluster_task(environ)
    assert 'TF_CONFIG=\'{"cluster"' in str(raised.value)
    cluster, kind, index = distribute.cluster_task(
        {
            "TF_CONFIG": '{"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, '
            '"task": {"type": "worker", "index": 1}}'
        }
    )
    assert (cluster, kind, index) == ({"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "worker", 1)


def test_single_process_strategies_are_the_chief(mirrored):
    for strategy in (mirrored, distribute.strategy_of("default")):
        assert distribute.is_chief(strategy) and not distribute.is_multi_worker(strategy)
        assert distribute.num_workers(strategy) == 1
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert distribute.support_strategy(model) is model and "train_step" not in vars(model)


def test_a_damaged_epoch_count_is_a_clear_error(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    assert resume.next_epoch(tmp_path) == 0
    (checkpoint / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    assert resume.next_epoch(tmp_path) == 3
    (checkpoint / "training_metadata.json").write_text('{"epo')
    with pytest.raises(ValueError, match="does not load .*delete that folder"):
        resume.next_epoch(tmp_path)


def _net(name: str, width: int) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(width, 3, activation="relu", name="c1")(inputs)
    h = keras.layers.Conv2D(width, 3, activation="relu", name="c2")(h)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, outputs, name=name)


def test_cached_teacher_outputs_under_mirrored_strategy_match_one_device(mirrored):
    """Batches of 5, 5 and 1 cached teacher logits, which two replicas split 3 + 2 and 1 + 0:
    the global-batch arithmetic holds for an uneven split and for a replica with no example."""
    rng = np.random.default_rng(3)
    x = rng.random((11, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 11)
    y[:2] = -1

    def fitted() -> tuple[dict, list[np.ndarray]]:
        keras.utils.set_random_seed(2)
        student, teacher = _net("student", 3), _net("teacher", 6)
        distiller = Distiller(student, teacher)
        distiller.compile(
            optimizer=keras.optimizers.SGD(0.2), alpha=0.4, temperature=2.0, jit_compile=False
        )
        cached = cache_teacher_outputs((x, y), teacher, batch_size=5)
        history = distiller.fit(cached, epochs=2, verbose=0, shuffle=False).history
        return history, student.get_weights()

    assert_replicas_fit_as_one(fitted, mirrored, steps=2 * 3, lr=0.2)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_the_keras_method_support_strategy_replaces_is_still_there():
    """`support_strategy` overrides a private method of Keras's TensorFlow trainer."""
    import inspect

    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    parameters = inspect.signature(TensorFlowTrainer._maybe_symbolic_build).parameters
    assert list(parameters) == ["self", "iterator", "data_batch"]
    assert callable(TensorFlowTrainer._symbolic_build)


def test_a_first_batch_split_unevenly_over_the_replicas_trains(mirrored):
    """Keras's own fit averages the replicas' shares of the first batch to learn its shapes,
    which fails for 3 + 2 rows; `support_strategy` takes one share instead."""
    x = np.random.default_rng(0).random((11, 3), dtype="float32")
    y = x.sum(axis=1)
    with mirrored.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), "mse")
    assert distribute.support_strategy(model) is model
    mended = model._maybe_symbolic_build
    assert distribute.support_strategy(model)._maybe_symbolic_build == mended
    history = model.fit(x, y, batch_size=5, epochs=2, shuffle=False, verbose=0).history
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert all(isinstance(v, float) for v in history["loss"])  # scalars off multi-worker


def test_the_other_workers_read_the_chief_ledger_and_write_nothing(tmp_path):
    chief = resume.Ledger(tmp_path, {"seed": 0})
    chief.finish("data", {"seconds": 1.0})
    (tmp_path / resume.BACKUPS / "distil").mkdir(parents=True)
    (tmp_path / resume.BACKUPS / "distil" / "checkpoint").write_text("the chief's")
    before = _files(tmp_path)
    worker = resume.Ledger(tmp_path, {"seed": 0}, writable=False)
    assert worker.record("data") == {"seconds": 1.0} and worker.resumable("distil")
    worker.start("data", ["data", "distil"], keep_backup=False)
    worker.finish("distil", {"seconds": 2.0})
    assert worker.record("distil") == {"seconds": 2.0} and worker.record("data") is None
    assert _files(tmp_path) == before
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        resume.Ledger(tmp_path, {"seed": 1}, writable=False)
    resume.Ledger(tmp_path / "new", {"seed": 0}, writable=False)
    assert not (tmp_path / "new").exists()


def test_a_worker_restores_the_chief_backup_and_saves_its_own_elsewhere(tmp_path):
    x = np.arange(8, dtype="float32").reshape(8, 1) / 8
    y = 2 * x

    def model() -> keras.Model:
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        net.compile(keras.optimizers.Adam(0.1), "mse")
        return net

    chief, worker = tmp_path / "chief", tmp_path / "worker"
    log, callbacks = resume.fit_callbacks(chief, 0.0)
    first = model()
    first.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
    saved = _files(chief)
    assert resume.next_epoch(chief) == 2 and len(log.history["loss"]) == 2
    chief_losses = log.history["loss"]
    log, callbacks = resume.fit_callbacks(chief, 0.0, save_to=worker)
    started = []
    began = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started.append(epoch))
    second = model()
    second.fit(x, y, epochs=3, verbose=0, callbacks=[*callbacks, began])
    assert started == [2] and int(second.optimizer.iterations) == 3
    assert _files(chief) == saved
    assert resume.next_epoch(worker) == 3
    assert log.history["loss"][:2] == chief_losses and len(log.history["loss"]) == 3


@pytest.mark.slow
def test_two_workers_distil_streamed_photos_from_teacher_views_as_one_process(tmp_path):
    """Three processes start at once on one photo folder and one image cache: two workers of a
    MultiWorkerMirroredStrategy and one process alone. They share one train and one test store
    (built under the lock, `test_streaming` tests it), and the
    workers distil from teacher views (teacher 24 px, student 16 px) as the lone process does."""
    rng = np.random.default_rng(4)
    for i in range(36):
        h, w = rng.integers(20, 48, 2)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = tmp_path / "photos" / "abc"[i % 3] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tf.io.encode_png(image).numpy())
    dataset = f"folder:{tmp_path / 'photos'}"
    ds = data.load(dataset, image_size=16, cache_dir=tmp_path / "probe").raw_pixels()
    keras.utils.set_random_seed(0)
    teacher = training.classifier("convnet", {"widths": (4, 8)}, ds, "teacher", size=(24, 24))
    teacher.save(tmp_path / "teacher.keras")
    base = {
        **SMALL,
        "dataset": dataset,
        "image_size": "16",
        "cache_dir": str(tmp_path / "cache"),
        "teacher_weights": str(tmp_path / "teacher.keras"),
        "teacher_views": 2,
        "method": "kd",
        "labels_per_class": 2,
        "batch_size": 8,
    }
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    multi = {**base, "out": str(tmp_path / "multi"), "strategy": "multi_worker"}
    processes = [
        _launch(
            multi,
            tmp_path,
            f"worker{i}",
            tf_config={"cluster": cluster, "task": {"type": "worker", "index": i}},
        )
        for i in range(2)
    ]
    processes.append(_launch({**base, "out": str(tmp_path / "alone")}, tmp_path, "alone"))
    for process in processes:
        _finish(process)
    assert len(list((tmp_path / "cache" / "images").iterdir())) == 2  # one train, one test store
    chief = json.loads((tmp_path / "multi" / "report.json").read_text())
    alone = json.loads((tmp_path / "alone" / "report.json").read_text())
    assert chief["dataset"]["input_shape"] == [16, 16, 3] and chief["teacher"]["input_shape"] == [
        24,
        24,
        3,
    ]
    _assert_same_run(
        chief["history"]["student (distilled)"], alone["history"]["student (distilled)"], 2e-4
    )
    views = sorted(p.name for p in (tmp_path / "multi").glob("teacher_views_*"))
    assert views == sorted(p.name for p in (tmp_path / "alone").glob("teacher_views_*"))
    assert len(views) == 2
