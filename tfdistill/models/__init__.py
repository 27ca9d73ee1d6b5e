"""Model families, one file each, built by name: `tfdistill.models.get(name, **kwargs)`."""

from tfdistill.models import convnet  # noqa: F401  (registers the family)
from tfdistill.models.layers import ChannelShuffle
from tfdistill.models.registry import get, names, register, stage_outputs

__all__ = ["ChannelShuffle", "get", "names", "register", "stage_outputs"]
