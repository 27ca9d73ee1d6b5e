"""One `tfdistill.run_lib.run` in its own process, for the tests of test_distribute.py.

python tests/run_worker.py CONFIG.json [--stall=EPOCH,BATCH | --distiller]

CONFIG.json holds the RunConfig's fields. With TF_CONFIG set the process is one worker of a
multi-worker run. With --distiller it only fits `small_distiller` under that strategy (saved to
`<out>.distiller<task index>.npz`) and has the workers `agree` on their index (which they
cannot). With --stall the distil stage stops at that batch of that epoch, writes
`<out>.stalled` and waits there to be killed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfdistill import distribute  # noqa: E402
from tfdistill import run as run_lib  # noqa: E402
from tfdistill.attention import AttentionTransfer, GradientAttentionTransfer  # noqa: E402
from tfdistill.data import cache_teacher_outputs  # noqa: E402
from tfdistill.distiller import Distiller  # noqa: E402


def _net(name: str, width: int) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(width, 3, name="c1")(inputs)
    h = keras.layers.BatchNormalization(momentum=0.5, synchronized=True)(h)
    h = keras.layers.Conv2D(width, 3, activation="relu", name="c2")(keras.layers.ReLU()(h))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, outputs, name=name)


SMALL_STEPS, SMALL_LR = 2 * 6, 0.1


def small_distiller() -> dict[str, np.ndarray]:
    """Two fits under the strategy in scope, each 2 epochs of SGD (`SMALL_STEPS` steps at
    `SMALL_LR`) on 36 images (5 unlabeled) in batches of 7, which two replicas split 4 + 3, and
    a last batch of 1, which leaves the second replica with no example: KD + AT + gradient AT
    of a student with synchronized BatchNormalization, and KD from cached teacher logits.
    {"<fit>_<log>": values per epoch, "<fit>_weight<i>": the student's weights}."""
    rng = np.random.default_rng(0)
    x = rng.random((36, 8, 8, 1), dtype="float32")
    y = rng.integers(0, 3, 36)
    y[:5] = -1
    results = {}
    for fit, cached in (("online", False), ("cached", True)):
        keras.utils.set_random_seed(1)
        student, teacher = _net("student", 3), _net("teacher", 6)
        attention = None
        if not cached:
            taps = AttentionTransfer(pairs=[("c1", "c1"), ("c2", "c2")], beta=100.0)
            attention = [taps, GradientAttentionTransfer(beta=0.5)]
        distiller = Distiller(student, teacher, attention=attention)
        distiller.compile(
            optimizer=keras.optimizers.SGD(SMALL_LR), alpha=0.3, temperature=2.0, jit_compile=False
        )
        if cached:
            data = cache_teacher_outputs((x, y), teacher, batch_size=7)
            history = distiller.fit(data, epochs=2, verbose=0, shuffle=False).history
        else:
            history = distiller.fit(x, y, batch_size=7, epochs=2, shuffle=False, verbose=0).history
        results.update({f"{fit}_{key}": np.array(values) for key, values in history.items()})
        results.update({f"{fit}_weight{i}": w for i, w in enumerate(student.get_weights())})
    return results


class Stall(keras.callbacks.Callback):
    def __init__(self, epoch: int, batch: int, marker: Path) -> None:
        super().__init__()
        self.epoch, self.batch, self.marker = epoch, batch, marker
        self.current = -1

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.current = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if isinstance(self.model, Distiller) and (self.current, batch) == (self.epoch, self.batch):
            self.marker.write_text(f"{self.current},{batch}")
            while True:
                time.sleep(1)


def main(argv: list[str]) -> int:
    config = run_lib.RunConfig(**json.loads(Path(argv[1]).read_text()))
    strategy = None
    if "TF_CONFIG" in os.environ:
        strategy = distribute.strategy_of(config.strategy)
    if "--distiller" in argv[2:]:
        with strategy.scope():
            results = small_distiller()
        index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
        try:
            distribute.agree(strategy, {"the worker's index": index})
        except ValueError as error:
            print(f"agree: {error}")
        np.savez(f"{config.out}.distiller{index}.npz", **results)
        return 0
    callbacks = []
    for arg in argv[2:]:
        epoch, batch = (int(v) for v in arg.removeprefix("--stall=").split(","))
        callbacks.append(Stall(epoch, batch, Path(config.out + ".stalled")))
    result = run_lib.run(
        config, log=print, callbacks=tuple(callbacks), strategy=strategy, backup_interval_s=0
    )
    print("result keys:", sorted(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
