"""Model families, one file each, built by name: `tfdistill.models.get(name, **kwargs)`."""

from tfdistill.models import (  # noqa: F401  (each module registers its family)
    applications,
    convnet,
    mobilenet,
    resnet,
    resnext,
    shufflenet,
    squeezenet,
    wide_resnet,
)
from tfdistill.models.imagenet_preprocessing import ImageNetPreprocessing
from tfdistill.models.layers import (
    ChannelShuffle,
    ChannelSplit,
    SplitGroupedConv2D,
    SubsampleZeroPad,
)
from tfdistill.models.preprocessing import with_preprocessing
from tfdistill.models.registry import get, names, register, stage_outputs

__all__ = [
    "ChannelShuffle",
    "ChannelSplit",
    "ImageNetPreprocessing",
    "SplitGroupedConv2D",
    "SubsampleZeroPad",
    "applications",
    "get",
    "names",
    "register",
    "stage_outputs",
    "with_preprocessing",
]
