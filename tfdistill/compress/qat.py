"""Quantization-aware training with TFMOT's default 8-bit scheme, with distillation.

`quantize_aware` rebuilds the student in tf_keras, annotates every layer, applies fake
quantization (weights per channel, activations per tensor, BatchNorm folded into the
convolution before it) and fine-tunes. Layers that only move values (the zoo's
ChannelShuffle, ChannelSplit, SubsampleZeroPad; Identity) get a pass-through QuantizeConfig:
their int8 output keeps their input's scale, which TFLite's RESHAPE, TRANSPOSE, SPLIT,
STRIDED_SLICE and PAD require anyway. Layers that rescale values without weights (Rescaling,
the "preprocess" layer of `tfdistill.models.with_preprocessing`) are quantized at their output,
so the int8 model takes raw pixels on one scale and gives its first convolution another. Other
layers the scheme does not know stay in float during training, and the converter calibrates
them on `representative_data`.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import keras
import tensorflow as tf

from tfdistill import _keras_internals
from tfdistill.compress._tfmot import require_tfmot
from tfdistill.compress.bridge import to_tf_keras
from tfdistill.compress.slimming import StructuredSparsity
from tfdistill.compress.sparsity import check_integers

PASS_THROUGH = ("ChannelShuffle", "ChannelSplit", "SubsampleZeroPad", "Identity")
OUTPUT_ONLY = ("Rescaling",)


@functools.cache
def _pass_through_config(tfmot: Any) -> type:
    """One class per process: TFMOT finds it again by name when it clones the model, and
    AutoGraph leaves its methods alone."""
    plain = tf.autograph.experimental.do_not_convert

    class PassThroughQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """No weights or activations to quantize; the output keeps the input's range."""

        @plain
        def get_weights_and_quantizers(self, layer: Any) -> list:
            return []

        @plain
        def get_activations_and_quantizers(self, layer: Any) -> list:
            return []

        @plain
        def set_quantize_weights(self, layer: Any, quantize_weights: list) -> None:
            del layer, quantize_weights

        @plain
        def set_quantize_activations(self, layer: Any, quantize_activations: list) -> None:
            del layer, quantize_activations

        @plain
        def get_output_quantizers(self, layer: Any) -> list:
            return []

        def get_config(self) -> dict:
            return {}

    return PassThroughQuantizeConfig


def _folds(bn: Any) -> bool:
    """Whether TFMOT folds this BatchNorm into the layer before it: a linear Conv2D or
    DepthwiseConv2D whose only consumer it is. Any other BatchNorm (pre-activation ResNets)
    stays a layer of its own, quantized at its output."""
    calls = _keras_internals.inbound_nodes(bn)
    if len(calls) != 1:
        return False
    producers = calls[0].inbound_layers
    if isinstance(producers, list):
        return False
    return (
        type(producers).__name__ in ("Conv2D", "DepthwiseConv2D")
        and producers.get_config().get("activation") == "linear"
        and len(_keras_internals.outbound_nodes(producers)) == 1
    )


def quantize_aware(
    student: keras.Model,
    data: Any,
    *,
    teacher: keras.Model | None = None,
    epochs: int = 1,
    batch_size: int = 32,
    alpha: float = 0.1,
    temperature: float = 3.0,
    optimizer: Any = "adam",
    preserve_sparsity: bool = False,
    seed: int | None = None,
    verbose: int = 0,
    callbacks: list | None = None,
    sparsity: StructuredSparsity | None = None,
) -> Any:
    """A tf_keras copy of `student` with fake quantization, fine-tuned for `epochs`.

    `data`, `teacher`, `alpha`, `temperature` and `optimizer` as for `prune`. The result,
    (B, ...) -> (B, C) float logits, is what `tfdistill.export.to_tflite(model, path,
    quantization="int8")` turns into an int8 `.tflite` that keeps the
    ranges learned here. With `preserve_sparsity`, TFMOT's prune-preserving scheme keeps the
    zeros of a pruned student (`prune`) through training, so the int8 file is sparse too.
    A BatchNorm that does not follow a convolution is quantized at its
    output (TFLite runs it as MUL and ADD). `callbacks` (tf_keras) join the fit, e.g.
    `tf_keras.callbacks.BackupAndRestore`. `sparsity`: a `StructuredSparsity` penalty added
    to the loss, as for `prune`. `student` is unchanged.
    """
    from tfdistill.compress import tuner

    require_tfmot()
    check_integers(epochs=(epochs, 1), batch_size=(batch_size, 1))
    tuning = tuner.prepare(
        student,
        data,
        teacher,
        batch_size=batch_size,
        seed=seed,
        alpha=alpha,
        temperature=temperature,
        optimizer=optimizer,
        epochs=epochs,
        verbose=verbose,
        sparsity=sparsity,
    )
    model = quantize_model(student, preserve_sparsity=preserve_sparsity)
    tuning.run(model, callbacks=callbacks)
    return model


def quantize_model(student: keras.Model, *, preserve_sparsity: bool = False) -> Any:
    """The tf_keras twin of `student` with TFMOT's fake quantization, before any training:
    what `quantize_aware` fine-tunes, and the skeleton its saved weights load back into."""
    tfmot, tf_keras = require_tfmot()
    quantize = tfmot.quantization.keras

    registry = quantize.default_8bit.Default8BitQuantizeRegistry()
    pass_through = _pass_through_config(tfmot)
    output_only = _keras_internals.tfmot_output_quantize_config()
    left_float = []

    def annotate(layer: Any) -> Any:
        if type(layer).__name__ in PASS_THROUGH and not layer.weights:
            return quantize.quantize_annotate_layer(layer, quantize_config=pass_through())
        unfolded = isinstance(layer, tf_keras.layers.BatchNormalization) and not _folds(layer)
        if unfolded or (type(layer).__name__ in OUTPUT_ONLY and not layer.weights):
            return quantize.quantize_annotate_layer(layer, quantize_config=output_only())
        if registry.supports(layer) or isinstance(layer, tf_keras.layers.BatchNormalization):
            return quantize.quantize_annotate_layer(layer)
        if not isinstance(layer, tf_keras.layers.InputLayer):
            left_float.append(f"{layer.name} ({type(layer).__name__})")
        return layer

    twin = to_tf_keras(student)
    annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
    if left_float:
        warnings.warn(
            "Quantization-aware training leaves these layers in float (no 8-bit QuantizeConfig): "
            f"{', '.join(left_float)}; the converter calibrates them instead.",
            stacklevel=2,
        )
    custom = {pass_through.__name__: pass_through, output_only.__name__: output_only}
    custom.update({name: type(layer) for layer in twin.layers for name in [type(layer).__name__]})
    scheme = (
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        if preserve_sparsity
        else quantize.default_8bit.Default8BitQuantizeScheme()
    )
    with quantize.quantize_scope(custom):
        return quantize.quantize_apply(annotated, scheme)


__all__ = ["OUTPUT_ONLY", "PASS_THROUGH", "quantize_aware", "quantize_model"]
