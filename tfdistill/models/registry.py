"""Name -> model builder registry: `get("convnet", num_classes=10, ...)`."""

from __future__ import annotations

from collections.abc import Callable

import keras

_BUILDERS: dict[str, Callable[..., keras.Model]] = {}


def register(name: str) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    def decorator(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if name in _BUILDERS:
            raise ValueError(f"A model named {name!r} is already registered.")
        _BUILDERS[name] = builder
        return builder

    return decorator


def available() -> list[str]:
    return sorted(_BUILDERS)


def get(name: str, /, **kwargs) -> keras.Model:
    """Builds the registered model `name` with the builder's keyword arguments."""
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}; available: {available()}.")
    return _BUILDERS[name](**kwargs)
