"""Teachers from `keras.applications`: `--teacher=keras.applications.NAME`.

`build("keras.applications.MobileNetV2", num_classes, input_shape, weights=None, alpha=0.35)`
is the application without its top (`include_top=False`, `pooling="avg"`), at the dataset's
image shape, behind an `ImageNetPreprocessing` layer that does what the family's own
`preprocess_input` does (found by running that function on probe pixels, so every family is
covered), and under a Dropout + Dense head giving logits for the dataset's classes. The base is
called with `training=False` as Keras's transfer-learning guide does, but Keras 3's Functional
models hand the outer call's `training` to every layer, over the node's own (checked on Keras
3.15: BatchNorm's moving statistics moved in `fit`), so what keeps BatchNorm in inference mode
is `unfreeze`: it makes every layer trainable except the BatchNormalization ones, which Keras 3
runs in inference mode when not trainable (and which Keras's EfficientNet fine-tuning example
keeps frozen). The flags are in the saved config, so a loaded teacher keeps them.
"""

from __future__ import annotations

import inspect
import re
import types
from typing import Any

import keras
import numpy as np

from tfdistill.models.imagenet_preprocessing import MODES, ImageNetPreprocessing

PREFIX = "keras.applications."
SET_BY_TFDISTILL = (
    "include_top",
    "input_shape",
    "input_tensor",
    "pooling",
    "classes",
    "classifier_activation",
)
HEAD_DROPOUT = 0.2
_PROBE = np.array([[[[0.0, 64.0, 255.0], [10.0, 200.0, 31.5]]]])  # (1, 1, 2, 3) RGB pixels


_OWN_SIZES = {
    "InceptionV3": 299,
    "InceptionResNetV2": 299,
    "Xception": 299,
    "NASNetLarge": 331,
    **{f"EfficientNetB{i}": s for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))},
    **{f"EfficientNetV2B{i}": s for i, s in enumerate((224, 240, 260, 300))},
    "EfficientNetV2S": 384,
    "EfficientNetV2M": 480,
    "EfficientNetV2L": 480,
}


def own_size(name: str) -> tuple[int, int]:
    """(H, W) the application `name` was trained at on ImageNet (its `default_size`, from
    Keras's documentation: 299 for the Inception family and Xception, 331 for NASNetLarge,
    each EfficientNet its own, 224 for the rest)."""
    size = _OWN_SIZES.get(name[len(PREFIX) :], 224)
    return (size, size)


def names() -> list[str]:
    """Every classifier constructor in `keras.applications`, as `--teacher` spells it."""
    return sorted(
        PREFIX + name
        for name, value in vars(keras.applications).items()
        if inspect.isfunction(value) and name[:1].isupper()
    )


def is_application(name: str) -> bool:
    """Whether `name` is "keras.applications.NAME" (valid or not)."""
    return name.startswith(PREFIX)


def constructor(name: str) -> Any:
    """The `keras.applications` function `name` ("keras.applications.NAME") names."""
    if name not in names():
        short = [n[len(PREFIX) :] for n in names()]
        raise ValueError(f"Unknown teacher {name!r}; keras.applications has {short}.")
    return getattr(keras.applications, name[len(PREFIX) :])


def check_kwargs(name: str, kwargs: dict) -> None:
    """A ValueError when `kwargs` are not arguments of application `name` that tfdistill
    leaves to the user (it sets the top, the input and the pooling itself)."""
    accepted = set(inspect.signature(constructor(name)).parameters) - set(SET_BY_TFDISTILL)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"teacher_kwargs {unknown} are not arguments {name} takes from tfdistill; "
            f"valid: {sorted(accepted)} (tfdistill sets {list(SET_BY_TFDISTILL)})."
        )
    if kwargs.get("include_preprocessing") is False:
        raise ValueError(
            f"teacher_kwargs include_preprocessing=false would make {name} expect prepared "
            "inputs; tfdistill feeds raw pixels, so leave it on."
        )


def family(name: str) -> types.ModuleType:
    """The public `keras.applications` submodule defining application `name` (the one whose
    `preprocess_input` goes with it)."""
    function = constructor(name)
    modules = [
        module
        for module in vars(keras.applications).values()
        if isinstance(module, types.ModuleType) and hasattr(module, "preprocess_input")
    ]
    for module in modules:  # the submodule that exports the function
        if getattr(module, function.__name__, None) is function:
            return module
    defined_in = function.__module__.rsplit(".", 1)[-1]  # e.g. mobilenet_v3 exports none
    for module in modules:
        if module.__name__.rsplit(".", 1)[-1] == defined_in:
            return module
    raise ValueError(f"{name} has no keras.applications module with a preprocess_input.")


def preprocessing_mode(name: str) -> str:
    """The `ImageNetPreprocessing` mode equal to application `name`'s `preprocess_input` on
    probe pixels; a ValueError when none is."""
    reference = np.asarray(family(name).preprocess_input(_PROBE.copy()), dtype=np.float64)
    for mode in MODES:
        ours = keras.ops.convert_to_numpy(ImageNetPreprocessing(mode, dtype="float32")(_PROBE))
        if ours.shape == reference.shape and np.allclose(ours, reference, atol=1e-3):
            return mode
    raise ValueError(
        f"{name}'s preprocess_input matches none of tfdistill's modes {list(MODES)}; it "
        "cannot be folded into the teacher."
    )


def download_error(name: str, error: Exception) -> ValueError:
    """The ValueError for application `name`'s weights that did not download: the URL Keras
    tried, the file, where Keras keeps it, and how to put it there by hand."""
    urls = re.findall(r"https?://\S+", str(error))
    url = urls[0].rstrip(":,") if urls else None
    file = url.rsplit("/", 1)[-1] if url else "the weights file"
    where = f"from {url} " if url else ""
    return ValueError(
        f"{name} could not download its pretrained weights {where}({error}). Keras keeps them "
        f"in ~/.keras/models/ ($KERAS_HOME/models/ when KERAS_HOME is set): on a machine with "
        f"internet, download {file} and copy it there, or pass teacher_kwargs "
        '{"weights": null} to train from scratch, or {"weights": "/path/to/' + file + '"}.'
    )


def _base(name: str, input_shape: tuple[int, int, int], kwargs: dict) -> keras.Model:
    """Application `name` without its top, average-pooled: (B, H, W, 3) prepared pixels ->
    (B, features)."""
    args = {**kwargs, "include_top": False, "input_shape": input_shape, "pooling": "avg"}
    try:
        return constructor(name)(**args)
    except Exception as error:
        if "URL fetch failure" in str(error) or isinstance(error, OSError | ConnectionError):
            raise download_error(name, error) from None
        if isinstance(error, ValueError | TypeError):
            raise ValueError(
                f"{name} does not build for {input_shape} images with {kwargs}: {error}"
            ) from None
        raise


def build(
    name: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    pixel_max: float = 255.0,
    model_name: str = "teacher",
    **kwargs: Any,
) -> keras.Model:
    """Raw RGB pixels (B, H, W, 3) in [0, `pixel_max`] -> logits (B, `num_classes`):
    `ImageNetPreprocessing`, the application (`kwargs` go to it, `weights` default
    "imagenet"), called with `training=False`, then Dropout and a Dense head."""
    check_kwargs(name, kwargs)
    if input_shape[-1] != 3:
        raise ValueError(
            f"{name} takes RGB images (3 channels); this dataset's images are {input_shape}. "
            "Use a dataset of colour images (cifar10, cifar100, a folder: of photos) or a "
            "tfdistill teacher such as --teacher=convnet."
        )
    mode = preprocessing_mode(name)
    base = _base(name, tuple(input_shape), kwargs)
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = ImageNetPreprocessing(mode, pixel_max, name="preprocess")(inputs)
    x = base(x, training=False)
    x = keras.layers.Dropout(HEAD_DROPOUT, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=model_name)


def base_of(model: keras.Model) -> keras.Model:
    """The application inside a model made by `build`."""
    bases = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(bases) != 1:
        raise ValueError(f"{model.name!r} is not a keras.applications teacher made by build().")
    return bases[0]


def freeze(model: keras.Model) -> None:
    """Only the head of `model` (made by `build`) trains."""
    base_of(model).trainable = False


def unfreeze(model: keras.Model) -> None:
    """Every layer of `model` (made by `build`) trains except the BatchNormalization layers of
    its base, which stay frozen and so in inference mode."""
    base = base_of(model)
    base.trainable = True
    for layer in _layers(base):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of `model`, those of nested models included."""
    found = []
    for layer in model.layers:
        found += _layers(layer) if isinstance(layer, keras.Model) else [layer]
    return found


__all__ = [
    "PREFIX",
    "base_of",
    "build",
    "check_kwargs",
    "constructor",
    "download_error",
    "family",
    "freeze",
    "is_application",
    "names",
    "preprocessing_mode",
    "unfreeze",
]
