"""Model families, one file each, built by name: `tfdistill.models.get(name, **kwargs)`."""

from tfdistill.models import convnet  # noqa: F401  (registers the family)
from tfdistill.models.registry import available, get, register

__all__ = ["available", "get", "register"]
