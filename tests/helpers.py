"""Small models with known weights and numpy references for the loss."""

import keras
import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def linear(weights: np.ndarray, bias: np.ndarray, name: str, softmax_out: bool = False):
    """x (B, D) -> x @ W + b (B, C), optionally through a softmax."""
    inputs = keras.Input(shape=(weights.shape[0],))
    dense = keras.layers.Dense(weights.shape[1], name=f"{name}_dense")
    outputs = dense(inputs)
    if softmax_out:
        outputs = keras.layers.Softmax()(outputs)
    model = keras.Model(inputs, outputs, name=name)
    dense.set_weights([weights, bias])
    return model


def reference_loss(x, y, w_s, b_s, w_t, b_t, alpha, temperature):
    """(loss, hard, soft, dL/dW_s, dL/db_s) for linear student/teacher, by hand."""
    s, t = x @ w_s + b_s, x @ w_t + b_t
    batch, classes = s.shape
    onehot = np.eye(classes)[y]
    p = softmax(s)
    hard = -np.log(p[np.arange(batch), y]).mean()
    pt, ps = softmax(t / temperature), softmax(s / temperature)
    soft = temperature**2 * (pt * np.log(pt / ps)).sum(-1).mean()
    dlogits = alpha * (p - onehot) / batch + (1 - alpha) * temperature * (ps - pt) / batch
    return alpha * hard + (1 - alpha) * soft, hard, soft, x.T @ dlogits, dlogits.sum(0)


def cnn(widths, name, seed, input_shape=(8, 8, 2), classes=3):
    """conv (same) -> conv (stride 2) -> pooled logits; no BatchNorm, so training mode is
    deterministic and the same on any number of replicas."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(
        widths[0], 3, padding="same", activation="relu", name="c1", kernel_initializer=init
    )(inputs)
    x = keras.layers.Conv2D(
        widths[1], 3, 2, padding="same", activation="relu", name="c2", kernel_initializer=init
    )(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x), name=name)
