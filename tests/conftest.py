import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# XLA compilation costs seconds per compiled model, which doubled the suite; tests of the
# default take it back with the `xla_auto` fixture, others pass jit_compile=True.
os.environ["TFDISTILL_XLA"] = "off"
# Decoded-image stores of the tests go to a folder of this session, never the user's cache.
if "TFDISTILL_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["TFDISTILL_CACHE_DIR"] = tempfile.mkdtemp(prefix="tfdistill-test-cache-")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs for the MirroredStrategy tests; must be set before TensorFlow makes devices.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs for the whole session: a second strategy
    in the same process restarts the collective instance keys, and its all-reduces then collide
    with the first one's (shape-mismatch aborts)."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, "conftest sets up two logical CPUs"
    return tf.distribute.MirroredStrategy(devices)


@pytest.fixture
def xla_auto(monkeypatch):
    """tfdistill's own XLA default ("auto": on, CPUs included) for one test."""
    monkeypatch.delenv("TFDISTILL_XLA")
