"""Name -> model builder registry: `get("resnet", depth=20, input_shape=(32, 32, 3), ...)`."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import keras

_BUILDERS: dict[str, Callable[..., keras.Model]] = {}
_STAGE = re.compile(r"^stage(\d+)_out$")


def register(name: str) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    def decorator(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if name in _BUILDERS:
            raise ValueError(f"A model named {name!r} is already registered.")
        _BUILDERS[name] = builder
        return builder

    return decorator


def names() -> list[str]:
    """The registered family names."""
    return sorted(_BUILDERS)


def get(name: str, /, **kwargs) -> keras.Model:
    """Builds family `name`; keyword arguments (input_shape, num_classes, ...) go to its builder."""
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}; available: {names()}.")
    builder = _BUILDERS[name]
    accepted = list(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name} does not take {unknown}; its arguments are {accepted}.")
    return builder(**kwargs)


def stage_name(index: int) -> str:
    """Name of the layer whose output ends resolution stage `index` (1-based)."""
    return f"stage{index}_out"


def stage_outputs(model: keras.Model) -> list[str]:
    """Names of the layers that end each resolution stage, shallow to deep: the taps of
    attention transfer (for a CIFAR ResNet or WRN, its three residual groups)."""
    found = [
        (int(m.group(1)), layer.name) for layer in model.layers if (m := _STAGE.match(layer.name))
    ]
    return [name for _, name in sorted(found)]
