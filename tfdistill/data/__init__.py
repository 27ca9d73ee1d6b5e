"""Dataset loading: the first stage of the pipeline (data -> models -> distiller).

Every loader returns a :class:`Dataset` holding images as float32 arrays of shape (N, H, W, C)
with values in [0, 1] and integer labels of shape (N,) and dtype int64; ``Dataset.pixel_max`` is
the raw pixel value that 1.0 stands for (16 for ``"digits"``, 255 for the 8-bit sources), and
:meth:`Dataset.raw_pixels` gives the images back on that scale, for models that preprocess
their own input (:func:`tfdistill.models.with_preprocessing`). ``"digits"`` ships with
scikit-learn; ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` and ``"cifar100"`` come through
``keras.datasets`` (downloaded once into its cache, ``~/.keras/datasets`` or
``$KERAS_HOME/datasets``); the CIFAR loaders read the python-pickle release (the folder or the
``.tar.gz``) from ``data_dir``, ``$TFDISTILL_DATA_DIR``, ``~/.keras/datasets`` or that cache, and
only download when none of them has it and no ``data_dir`` is given. ``folder:PATH`` reads an
image folder and ``tfds:NAME`` TensorFlow Datasets.

One concern a module: ``dataset`` (the ``Dataset`` container), ``registry`` (``load``,
``check_name``, ``available``), ``builtin`` (digits, MNIST, Fashion-MNIST), ``cifar``,
``tfds``, ``folder`` (``folder:PATH``), ``decode`` (one image file read defensively with
Pillow: its header, its pixels, or why it is skipped), ``store`` (``ImageStore``: uint8
images on disk), ``views`` (what a model sees of a stored photo), ``resized``
(``in_store``), ``stream`` (``shuffled_batches``), ``labels``
(``label_subset``, ``mask_labels``), ``augment`` (``random_crop_flip``, ``resize_bilinear``) and
``teacher_cache`` (``teacher_logits``, ``cache_teacher_outputs``) and ``teacher_views``
(``label_views``: the teacher's logits of K augmented views per image, for augmented
distillation without the teacher online). The modules import one another
directly, never this package, so there is no import cycle.
"""

from tfdistill.data import decode, store, teacher_views, views
from tfdistill.data.augment import random_crop_flip, resize_bilinear
from tfdistill.data.cifar import DATA_DIR_ENV
from tfdistill.data.dataset import DIGITS_MAX, EIGHT_BIT, SPLITS, Dataset
from tfdistill.data.decode import DEFAULT_MAX_MEGAPIXELS
from tfdistill.data.folder import load_folder
from tfdistill.data.labels import label_subset, mask_labels
from tfdistill.data.registry import PREFIXES, available, check_name, load
from tfdistill.data.store import ImageStore
from tfdistill.data.stream import shuffled_batches
from tfdistill.data.teacher_cache import cache_teacher_outputs, teacher_logits
from tfdistill.data.teacher_views import TeacherViews, label_views

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_MAX_MEGAPIXELS",
    "DIGITS_MAX",
    "EIGHT_BIT",
    "PREFIXES",
    "SPLITS",
    "Dataset",
    "ImageStore",
    "TeacherViews",
    "available",
    "cache_teacher_outputs",
    "check_name",
    "decode",
    "label_subset",
    "label_views",
    "load",
    "load_folder",
    "mask_labels",
    "random_crop_flip",
    "resize_bilinear",
    "shuffled_batches",
    "store",
    "teacher_logits",
    "teacher_views",
    "views",
]
