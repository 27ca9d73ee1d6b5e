"""Does SqueezeNet's final ReLU (before the average pool) hurt training or distillation?

    python tools/squeezenet_final_relu.py [--epochs 8]

On the embedded digits (32×32×1, 1,437 training and 360 test images): a convnet teacher
(widths 16, 32, 64, depth 2, 10 epochs), then SqueezeNet v1.1 students (cifar stem) with and
without BatchNorm and the final ReLU, each trained `--epochs` epochs with Adam (1e-3, cosine
decay, batch 32) on cross-entropy alone ("ce") and with the Distiller (KD at T = 4, alpha 0.1:
"kd"). Prints the test accuracy of each. About 35 minutes on 2 busy cores at 8 epochs.
"""

from __future__ import annotations

import argparse
import math
import time

import keras
import numpy as np

from tfdistill import Distiller, data, models

BATCH = 32


def teacher(x: np.ndarray, y: np.ndarray) -> keras.Model:
    """(B, 32, 32, 1) -> (B, 10) logits, trained 10 epochs."""
    model = models.get(
        "convnet", widths=(16, 32, 64), depth=2, input_shape=x.shape[1:], num_classes=10
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=10, batch_size=BATCH, verbose=0)
    return model


def student(shape: tuple[int, ...], batch_norm: bool, final_relu: bool) -> keras.Model:
    """SqueezeNet v1.1, (B, *shape) -> (B, 10), freshly initialized from seed 2."""
    keras.utils.set_random_seed(2)
    return models.get(
        "squeezenet",
        version="1.1",
        input_shape=shape,
        num_classes=10,
        batch_norm=batch_norm,
        final_relu=final_relu,
    )


def train(model: keras.Model, mode: str, big: keras.Model | None, x, y, epochs: int) -> None:
    """Fits `model` in place: cross-entropy ("ce") or KD from `big` ("kd")."""
    steps = epochs * math.ceil(len(x) / BATCH)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps))
    if mode == "kd":
        distiller = Distiller(model, big)
        distiller.compile(optimizer=optimizer, alpha=0.1, temperature=4.0, jit_compile=False)
        distiller.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0)
    else:
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    epochs = parser.parse_args().epochs
    digits = data.load("digits")
    x, y, x_test, y_test = digits.x_train, digits.y_train, digits.x_test, digits.y_test
    keras.utils.set_random_seed(0)
    big = teacher(x, y)
    accuracy = (big.predict(x_test, verbose=0).argmax(1) == y_test).mean()
    print(f"teacher: {accuracy:.3f}", flush=True)
    print("| batch_norm | final_relu | mode | accuracy | seconds |\n|---|---|---|---:|---:|")
    for batch_norm in (False, True):
        for final_relu in (True, False):
            for mode in ("ce", "kd"):
                start = time.perf_counter()
                model = student(x.shape[1:], batch_norm, final_relu)
                train(model, mode, big, x, y, epochs)
                accuracy = (model.predict(x_test, verbose=0).argmax(1) == y_test).mean()
                seconds = time.perf_counter() - start
                print(
                    f"| {batch_norm} | {final_relu} | {mode} | {accuracy:.3f} | {seconds:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
