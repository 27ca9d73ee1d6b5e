import dataclasses
import pickle
import tarfile
import types

import numpy as np
import pytest

from tfdistill import data

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird"]
CIFAR100_FINE = [b"apple", b"bear", b"bed", b"bee"]
CIFAR100_COARSE = [b"fruit", b"insects"]


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _rows(n, seed):
    """(n, 3072) uint8 rows; row 0 has R = arange pattern, G = 7, B = 200."""
    rows = np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    rows[0, :1024] = np.arange(1024) % 256
    rows[0, 1024:2048] = 7
    rows[0, 2048:] = 200
    return rows


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _write_cifar10(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _dump(
            folder / f"data_batch_{i}",
            {b"batch_label": b"x", b"labels": [i % 3, (i + 1) % 3], b"data": _rows(2, i)},
        )
    _dump(folder / "test_batch", {b"labels": [2, 0, 1], b"data": _rows(3, 9)})
    _dump(folder / "batches.meta", {b"label_names": CIFAR10_NAMES, b"num_vis": 3072})
    return folder


def _write_cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    _dump(
        folder / "train",
        {b"fine_labels": [0, 3, 1, 2], b"coarse_labels": [0, 1, 0, 1], b"data": _rows(4, 1)},
    )
    _dump(folder / "test", {b"fine_labels": [3, 0], b"coarse_labels": [1, 0], b"data": _rows(2, 2)})
    _dump(
        folder / "meta",
        {b"fine_label_names": CIFAR100_FINE, b"coarse_label_names": CIFAR100_COARSE},
    )
    return folder


def _tar(folder):
    tarball = folder.parent / {"cifar-10-batches-py": "cifar-10-python.tar.gz"}.get(
        folder.name, "cifar-100-python.tar.gz"
    )
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    return tarball


def test_digits_shapes_dtypes_and_range(digits):
    # 1797 images, test_size=0.2 -> ceil(359.4) = 360 test, 1437 train.
    assert digits.x_train.shape == (1437, 32, 32, 1)
    assert digits.x_test.shape == (360, 32, 32, 1)
    assert digits.y_train.shape == (1437,) and digits.y_test.shape == (360,)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert digits.input_shape == (32, 32, 1)
    assert digits.num_classes == 10 and digits.class_names == tuple("0123456789")
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0 and x.max() <= 1.0 and x.max() > 0.99


def test_digits_raw_pixels_are_sklearn_intensities(digits):
    # sklearn's digits are 0..16 intensities; resizing interpolates, so no rounding.
    assert digits.pixel_max == 16.0
    raw = digits.raw_pixels()
    assert raw.pixel_max == 16.0 and raw.x_train.dtype == np.float32
    assert raw.x_train.min() == 0.0 and 15.9 < raw.x_train.max() <= 16.0
    np.testing.assert_allclose(raw.x_test, digits.x_test * 16.0, rtol=1e-6)
    assert raw.y_train is digits.y_train and raw.class_names == digits.class_names
    assert digits.x_train.max() <= 1.0


@pytest.mark.parametrize("bad", [0, -255.0, float("nan"), float("inf"), "255", True, None])
def test_bad_pixel_max_is_named(digits, bad):
    with pytest.raises(ValueError, match="pixel_max must be a finite number > 0"):
        dataclasses.replace(digits, pixel_max=bad)


def test_raw_pixels_of_a_unit_scale_dataset_is_an_equal_copy(digits):
    unit = dataclasses.replace(
        digits, x_train=digits.x_train[:3], y_train=digits.y_train[:3], pixel_max=1.0
    )
    raw = unit.raw_pixels()
    np.testing.assert_array_equal(raw.x_train, unit.x_train)
    assert raw.x_train is not unit.x_train and raw.pixel_max == 1.0


def test_digits_split_is_stratified_and_deterministic(digits):
    from sklearn.datasets import load_digits

    totals = np.bincount(load_digits().target)
    test_counts = np.bincount(digits.y_test, minlength=10)
    assert np.all(np.abs(test_counts - totals * 0.2) <= 1)
    np.testing.assert_array_equal(test_counts + np.bincount(digits.y_train), totals)
    again = data.load("digits")
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.y_test, digits.y_test)


def test_digits_resize_preserves_mean_and_size_option(digits):
    from sklearn.datasets import load_digits

    original = load_digits().images[0]  # pixel sum 294 -> mean 294 / 64 / 16 = 0.287109375
    assert original.sum() == 294
    resized = data.resize_bilinear(original[np.newaxis] / 16.0, 32)[0]
    assert resized.shape == (32, 32)
    assert resized.mean() == pytest.approx(0.287109375, abs=1e-6)
    small = data.load("digits", size=16)
    assert small.input_shape == (16, 16, 1)
    np.testing.assert_array_equal(small.y_train, digits.y_train)
    np.testing.assert_allclose(
        small.x_train.mean(axis=(1, 2, 3)), digits.x_train.mean(axis=(1, 2, 3)), atol=1e-6
    )


def test_resize_matches_tf_image_resize():
    import tensorflow as tf

    images = np.random.default_rng(0).random((2, 8, 8))
    expected = tf.image.resize(images[..., np.newaxis], (32, 32), method="bilinear")
    got = data.resize_bilinear(images, 32)
    np.testing.assert_allclose(got, expected.numpy()[..., 0], atol=1e-5)


@pytest.mark.parametrize("as_tarball", [False, True])
def test_cifar10_layout_labels_and_names(tmp_path, as_tarball):
    folder = _write_cifar10(tmp_path)
    if as_tarball:
        _tar(folder)
    ds = data.load("cifar10", data_dir=str(tmp_path))
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    expected_r = (np.arange(1024) % 256).reshape(32, 32) / 255.0
    np.testing.assert_allclose(ds.x_train[0, ..., 0], expected_r, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ds.x_train[0, ..., 1], 7 / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.x_train[0, ..., 2], 200 / 255.0, atol=1e-7)
    assert ds.x_train[0, 0, 1, 0] == pytest.approx(1 / 255.0)  # row-major within a channel
    assert ds.x_train[0, 1, 0, 0] == pytest.approx(32 / 255.0)
    np.testing.assert_allclose(ds.x_test[0, ..., 0], expected_r, atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, [1, 2, 2, 0, 0, 1, 1, 2, 2, 0])
    np.testing.assert_array_equal(ds.y_test, [2, 0, 1])
    assert ds.class_names == ("airplane", "automobile", "bird") and ds.num_classes == 3
    assert ds.pixel_max == 255.0
    raw = ds.raw_pixels()
    stored = np.concatenate([_rows(2, i) for i in range(1, 6)])
    np.testing.assert_array_equal(raw.x_train[0, 0, :3], [[0, 7, 200], [1, 7, 200], [2, 7, 200]])
    np.testing.assert_array_equal(
        raw.x_train, stored.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)
    )
    assert raw.x_train.dtype == np.float32 and raw.pixel_max == 255.0
    np.testing.assert_array_equal(raw.y_train, ds.y_train)
    if as_tarball:
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "cifar-10-batches-py",
            "cifar-10-python.tar.gz",
        ]


@pytest.mark.parametrize("as_tarball", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, as_tarball):
    folder = _write_cifar100(tmp_path)
    if as_tarball:
        _tar(folder)
    fine = data.load("cifar100", data_dir=str(tmp_path))
    assert fine.x_train.shape == (4, 32, 32, 3) and fine.x_test.shape == (2, 32, 32, 3)
    expected_r = (np.arange(1024) % 256).reshape(32, 32) / 255.0
    np.testing.assert_allclose(fine.x_train[0, ..., 0], expected_r, atol=1e-7)
    np.testing.assert_array_equal(fine.y_train, [0, 3, 1, 2])
    assert fine.class_names == ("apple", "bear", "bed", "bee") and fine.num_classes == 4
    coarse = data.load("cifar100", data_dir=str(tmp_path), label_mode="coarse")
    np.testing.assert_array_equal(coarse.y_train, [0, 1, 0, 1])
    np.testing.assert_array_equal(coarse.y_test, [1, 0])
    assert coarse.class_names == ("fruit", "insects") and coarse.num_classes == 2
    with pytest.raises(ValueError, match="label_mode"):
        data.load("cifar100", data_dir=str(tmp_path), label_mode="medium")


def test_cifar_found_via_env_var_and_extracted_folder_path(tmp_path, monkeypatch):
    folder = _write_cifar10(tmp_path)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.load("cifar10").x_test.shape == (3, 32, 32, 3)
    assert data.load("cifar10", data_dir=str(folder)).x_test.shape == (3, 32, 32, 3)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cifar10", ["cifar-10-python.tar.gz", "cifar-10-batches-py", "data_batch_1"]),
        ("cifar100", ["cifar-100-python.tar.gz", "cifar-100-python", "meta"]),
    ],
)
def test_cifar_missing_files(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as info:
        data.load(name, data_dir=str(tmp_path))
    message = str(info.value)
    for word in [*expected, str(tmp_path)]:
        assert word in message


def test_cifar_incomplete_folder_is_not_accepted(tmp_path):
    folder = _write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        data.load("cifar10", data_dir=str(tmp_path))


def test_cifar_bad_tarball_leaves_nothing_behind(tmp_path):
    folder = _write_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    _tar(folder)
    with pytest.raises(ValueError, match="test_batch"):
        data.load("cifar10", data_dir=str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]


_RELEASES = {
    "cifar10": (_write_cifar10, "cifar-10-batches-py-target", "cifar-10-python.tar.gz"),
    "cifar100": (_write_cifar100, "cifar-100-python-target", "cifar-100-python.tar.gz"),
}


@pytest.fixture
def fake_home(tmp_path, monkeypatch):
    """An empty home folder as HOME, with KERAS_HOME and TFDISTILL_DATA_DIR unset."""
    import keras  # noqa: F401  (imported before HOME changes: Keras reads it on import)

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    return home


def _no_download(monkeypatch, name):
    import keras

    calls = []
    monkeypatch.setattr(getattr(keras.datasets, name), "load_data", lambda: calls.append(name))
    return calls


def _expected_cifar(name):
    """(raw x_train, y_train, raw x_test, y_test, class names) of the fabricated release."""

    def raw(rows):
        return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)

    if name == "cifar10":
        train = np.concatenate([_rows(2, i) for i in range(1, 6)])
        labels = [y for i in range(1, 6) for y in (i % 3, (i + 1) % 3)]
        names = tuple(n.decode() for n in CIFAR10_NAMES)
        return raw(train), labels, raw(_rows(3, 9)), [2, 0, 1], names
    names = tuple(n.decode() for n in CIFAR100_FINE)
    return raw(_rows(4, 1)), [0, 3, 1, 2], raw(_rows(2, 2)), [3, 0], names


def _assert_is_fabricated(ds, name):
    x_train, y_train, x_test, y_test, names = _expected_cifar(name)
    raw = ds.raw_pixels()
    np.testing.assert_array_equal(raw.x_train, x_train)
    np.testing.assert_array_equal(raw.x_test, x_test)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.class_names == names and ds.num_classes == len(names) and ds.name == name


@pytest.mark.parametrize("keras_home", [False, True])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_found_in_the_keras_datasets_cache(fake_home, monkeypatch, name, keras_home):
    write, cache, _ = _RELEASES[name]
    home = fake_home / ".keras"
    if keras_home:
        home = fake_home.parent / "keras_home"
        monkeypatch.setenv("KERAS_HOME", str(home))
    folder = write(home / "datasets" / cache)
    calls = _no_download(monkeypatch, name)
    ds = data.load(name)
    _assert_is_fabricated(ds, name)
    assert calls == []
    assert sorted(p.name for p in folder.parent.parent.iterdir()) == [cache]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_downloads_through_keras_datasets_into_its_cache(fake_home, monkeypatch, name):
    import keras

    write, cache, _ = _RELEASES[name]
    keras_home = fake_home.parent / "keras_home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    calls = []

    def load_data():
        calls.append(name)
        write(keras_home / "datasets" / cache)
        x_train, y_train, x_test, y_test, _ = _expected_cifar(name)
        train = (x_train.astype(np.uint8), np.reshape(y_train, (-1, 1)))
        return train, (x_test.astype(np.uint8), np.reshape(y_test, (-1, 1)))

    monkeypatch.setattr(getattr(keras.datasets, name), "load_data", load_data)
    _assert_is_fabricated(data.load(name), name)
    assert calls == [name]
    _assert_is_fabricated(data.load(name), name)
    assert calls == [name]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_offline_download_names_the_places_and_folder_path(
    fake_home, tmp_path, monkeypatch, name
):
    import keras

    _, cache, tarball = _RELEASES[name]
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    own = tmp_path / "own"
    own.mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(own))
    (fake_home / ".keras").mkdir()

    def offline():
        raise Exception(
            f"URL fetch failure on https://www.cs.toronto.edu/~kriz/{tarball}: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(getattr(keras.datasets, name), "load_data", offline)
    with pytest.raises(FileNotFoundError) as info:
        data.load(name)
    message = str(info.value)
    keras_datasets = fake_home / ".keras" / "datasets"
    for place in (own, own / folder, keras_datasets / folder, keras_datasets / cache / folder):
        assert f"  {place}\n" in message
    assert f"keras.datasets.{name}.load_data() could not download it (Exception: URL" in message
    assert "Temporary failure in name resolution" in message
    assert f"put either {tarball} or the extracted folder {folder}/" in message
    assert f"in {keras_datasets} (or" in message and "--dataset folder:PATH" in message
    assert not keras_datasets.exists()

    calls = _no_download(monkeypatch, name)
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded when data_dir is given"):
        data.load(name, data_dir=str(own))
    assert calls == []


def test_label_subset_balanced_and_seeded():
    y = np.repeat(np.arange(4), [5, 6, 7, 8])
    idx = data.label_subset(y, 3, seed=1)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [3, 3, 3, 3])
    np.testing.assert_array_equal(idx, data.label_subset(y, 3, seed=1))
    assert not np.array_equal(idx, data.label_subset(y, 3, seed=2))
    every_zero = data.label_subset(y, 5)
    np.testing.assert_array_equal(every_zero[y[every_zero] == 0], np.flatnonzero(y == 0))


def test_label_subset_errors():
    y = np.repeat(np.arange(3), [4, 2, 4])
    with pytest.raises(ValueError, match=r"class 1 has 2"):
        data.label_subset(y, 3)
    with pytest.raises(ValueError, match="per_class"):
        data.label_subset(y, 0)


def test_mask_labels():
    y = np.array([3, 1, 4, 1, 5], dtype=np.int64)
    masked = data.mask_labels(y, [0, 3])
    np.testing.assert_array_equal(masked, [3, -1, -1, 1, -1])
    assert masked.dtype == np.int64
    np.testing.assert_array_equal(y, [3, 1, 4, 1, 5])


def test_as_tf_dataset_batches(digits):
    small = dataclasses.replace(digits, x_train=digits.x_train[:10], y_train=digits.y_train[:10])
    shapes = [(x.shape, y.shape) for x, y in small.as_tf_dataset("train", 4)]
    assert shapes == [((4, 32, 32, 1), (4,)), ((4, 32, 32, 1), (4,)), ((2, 32, 32, 1), (2,))]
    batches = list(small.as_tf_dataset("train", 4, drop_remainder=True))
    assert len(batches) == 2 and batches[0][0].dtype.name == "float32"
    assert batches[0][1].dtype.name == "int64"

    def epoch(ds):
        return np.concatenate([x for x, _ in ds]).mean(axis=(1, 2, 3))

    shuffled = small.as_tf_dataset("train", 3, shuffle=True, seed=0)
    first, second = epoch(shuffled), epoch(shuffled)
    unshuffled = small.x_train.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(np.sort(first), np.sort(unshuffled), rtol=1e-6)
    assert not np.allclose(first, unshuffled) and not np.allclose(first, second)
    np.testing.assert_array_equal(
        epoch(small.as_tf_dataset("train", 3, shuffle=True, seed=0)), first
    )
    with pytest.raises(ValueError, match="train, test"):
        small.as_tf_dataset("validation", 4)


def test_unknown_dataset_lists_names():
    assert data.available() == ["digits", "mnist", "fashion_mnist", "cifar10", "cifar100"]
    with pytest.raises(ValueError, match="digits, mnist, .*folder:PATH .* or tfds:NAME"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="unknown dataset 'folder:'"):
        data.load("folder:")


def test_keras_datasets_loader_and_its_offline_message(monkeypatch):
    import keras

    rng = np.random.default_rng(0)
    fake = (
        (rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), rng.integers(0, 10, 6)),
        (rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), rng.integers(0, 10, (4, 1))),
    )
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", lambda: fake)
    ds = data.load("fashion_mnist")
    assert ds.x_train.shape == (6, 28, 28, 1) and ds.x_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_test[..., 0] * 255.0, fake[1][0], atol=1e-4)
    assert ds.pixel_max == 255.0
    np.testing.assert_array_equal(ds.raw_pixels().x_test[..., 0], fake[1][0])
    assert ds.y_test.shape == (4,) and ds.y_test.dtype == np.int64
    assert ds.class_names[9] == "Ankle boot" and ds.num_classes == 10

    def offline():
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(FileNotFoundError, match="could not load mnist .*folder:PATH"):
        data.load("mnist")


def test_tfds_without_the_package_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ValueError, match="tfds:mnist needs tensorflow-datasets: pip install"):
        data.load("tfds:mnist")


class _FakeTfds:
    """Just enough of tensorflow_datasets for `load_tfds`: one builder whose splits are
    `splits` ({name: (uint8 images, labels)}), or whose download fails with `failure`."""

    def __init__(self, splits, failure=None):
        self.splits, self.failure, self.calls = splits, failure, []

    def builder(self, name, data_dir=None):
        self.calls.append((name, data_dir))
        fake = self
        shape = next(iter(fake.splits.values()))[0].shape[1:] if fake.splits else (None, None, 3)

        class Builder:
            info = types.SimpleNamespace(
                splits=dict(fake.splits),
                version="1.0.0",
                features={
                    "image": types.SimpleNamespace(shape=shape),
                    "label": types.SimpleNamespace(num_classes=2, names=["cat", "dog"]),
                },
            )

            def download_and_prepare(self):
                if fake.failure:
                    raise fake.failure

            def as_dataset(self, split, as_supervised):
                assert as_supervised
                import tensorflow as tf

                return tf.data.Dataset.from_tensor_slices(fake.splits[split])

        return Builder()


def test_tfds_with_a_validation_split_and_a_failed_download(monkeypatch):
    import sys

    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8), np.array([0, 1] * 3))
    val = (rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8), np.array([1, 0]))
    fake = _FakeTfds({"train": train, "validation": val})
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    ds = data.load("tfds:pets", data_dir="/data/tfds")
    assert fake.calls == [("pets", "/data/tfds")]
    assert (ds.name, ds.num_classes, ds.class_names, ds.pixel_max) == (
        "tfds:pets",
        2,
        ("cat", "dog"),
        255.0,
    )
    assert ds.streamed and ds.image_size is None  # small and alike: kept as they are
    np.testing.assert_array_equal(ds.raw_pixels().x_test[:], val[0].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, train[1])
    sized = data.load("tfds:pets", image_size=8)
    assert sized.input_shape == (8, 8, 3) and sized.x_train.image_shape == (10, 10, 3)
    assert sized.inputs("test")[:].shape == (2, 8, 8, 3)
    offline = _FakeTfds({}, failure=OSError("Name or service not known"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", offline)
    with pytest.raises(FileNotFoundError, match=r"tfds:pets could not be loaded \(OSError: Name"):
        data.load("tfds:pets")
    with pytest.raises(FileNotFoundError, match="list_builders.*--dataset folder:PATH"):
        data.load("tfds:pets")


def _write_png(path, image):
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


def test_image_folder_splits_skips_unreadable_files_and_converts(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {}
    for name in ("cat", "dog"):
        for i in range(5):
            image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
            pixels[(name, i)] = image
            _write_png(tmp_path / "flat" / name / f"{i}.png", image)
    _write_png(tmp_path / "flat" / "dog" / "gray.png", rng.integers(0, 256, (6, 8, 1), np.uint8))
    (tmp_path / "flat" / "cat" / "broken.png").write_bytes(b"not an image")
    ds = data.load(f"folder:{tmp_path / 'flat'}", seed=0)
    assert ds.class_names == ("cat", "dog") and ds.num_classes == 2 and ds.skipped == 1
    assert len(ds.x_train) + len(ds.x_test) == 11 and ds.input_shape == (6, 8, 3)
    assert sorted(np.bincount(ds.y_test)) == [1, 2]
    assert ds.streamed and ds.image_size is None  # one size, at most 64 px: kept as it is
    assert (
        ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train[:].min() <= ds.x_train[:].max() <= 1.0
    )
    first = np.concatenate([ds.x_train[:], ds.x_test[:]]) * 255.0
    assert any(np.allclose(first_image, pixels[("cat", 0)], atol=1e-3) for first_image in first)
    assert ds.pixel_max == 255.0
    raw = ds.raw_pixels()
    raw_images = np.concatenate([raw.x_train[:], raw.x_test[:]])
    labels = np.concatenate([raw.y_train, raw.y_test])
    for (name, _), image in pixels.items():
        assert any(
            np.array_equal(r, image) for r in raw_images[labels == ds.class_names.index(name)]
        )

    for split, names in (("train", ("a", "b")), ("val", ("b", "a"))):
        for name in names:
            _write_png(tmp_path / "split" / split / name / "0.png", np.full((4, 4, 1), 9, np.uint8))
    split = data.load(f"folder:{tmp_path / 'split'}")
    assert (len(split.x_train), len(split.x_test), split.input_shape) == (2, 2, (4, 4, 1))
    assert split.class_names == ("a", "b")

    _write_png(tmp_path / "extra" / "train" / "a" / "0.png", np.zeros((4, 4, 1), np.uint8))
    _write_png(tmp_path / "extra" / "train" / "b" / "0.png", np.zeros((4, 4, 1), np.uint8))
    _write_png(tmp_path / "extra" / "test" / "c" / "0.png", np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="class folder 'c' is not among the training classes"):
        data.load(f"folder:{tmp_path / 'extra'}")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        data.load(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="needs one subfolder per class"):
        data.load(f"folder:{tmp_path / 'flat' / 'cat'}")


def test_image_folder_ignores_non_image_files_and_counts_corrupt_images(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        for i in range(3):
            _write_png(tmp_path / name / f"{i}.png", rng.integers(0, 256, (5, 7, 3), np.uint8))
    _write_png(tmp_path / "a" / "upper.PNG", rng.integers(0, 256, (5, 7, 3), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image, not counted")
    (tmp_path / "a" / "labels.json").write_text("{}")
    (tmp_path / "b" / "Thumbs.db").write_bytes(b"\x00" * 16)
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\x00" * 16)
    (tmp_path / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = data.load(f"folder:{tmp_path}", seed=0)
    assert ds.skipped == 1 and ds.class_names == ("a", "b")
    assert len(ds.x_train) + len(ds.x_test) == 7 and ds.input_shape == (5, 7, 3)

    (tmp_path / "text" / "x").mkdir(parents=True)
    (tmp_path / "text" / "y").mkdir()
    (tmp_path / "text" / "x" / "readme.txt").write_text("x")
    (tmp_path / "text" / "y" / "readme.txt").write_text("y")
    with pytest.raises(ValueError, match="hold no image files"):
        data.load(f"folder:{tmp_path / 'text'}")


def _crop_flip_candidates(image, pad):
    """Every zero-padded shift of `image` (H, W, C) by up to `pad` pixels, and its mirror."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    crops = [padded[i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + [crop[:, ::-1] for crop in crops]


def test_random_crop_flip():
    import tensorflow as tf

    images = np.random.default_rng(0).random((16, 5, 6, 2), dtype=np.float32) + 1.0
    assert data.random_crop_flip(images, seed=1).shape == images.shape
    np.testing.assert_array_equal(data.random_crop_flip(images, pad=0, flip=False), images)
    out = np.asarray(data.random_crop_flip(images, pad=2, seed=1))
    matches = [
        [k for k, c in enumerate(_crop_flip_candidates(image, 2)) if np.array_equal(o, c)]
        for image, o in zip(images, out, strict=True)
    ]
    assert all(len(m) == 1 for m in matches)
    kinds = {m[0] for m in matches}
    assert len(kinds) > 2 and min(kinds) < 25 <= max(kinds)  # several shifts, both mirrorings
    mapped = tf.data.Dataset.from_tensor_slices(images).batch(8).map(data.random_crop_flip)
    assert mapped.element_spec.shape.as_list() == [None, 5, 6, 2]
    with pytest.raises(ValueError, match=">= 0"):
        data.random_crop_flip(images, pad=-1)


def test_stateless_crops_depend_on_the_seed_pair_alone():
    images = np.random.default_rng(1).random((6, 5, 5, 1), dtype=np.float32) + 1.0
    first = np.asarray(data.random_crop_flip(images, pad=2, seed=[3, 4]))
    np.testing.assert_array_equal(data.random_crop_flip(images, pad=2, seed=(3, 4)), first)
    assert not np.array_equal(data.random_crop_flip(images, pad=2, seed=[3, 5]), first)


def test_shuffled_batches_are_a_stream_that_resumes_anywhere():
    import tensorflow as tf

    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    elements = ({"inputs": x, "t": -x}, np.arange(10))

    def batches(skip=0, count=9, **kwargs):
        stream = data.shuffled_batches(elements, 4, seed=7, skip=skip, **kwargs)
        return [tf.nest.map_structure(np.asarray, b) for b in stream.take(count)]

    full = batches()
    labels = [b[1].tolist() for b in full]
    assert [len(b) for b in labels] == [4, 4, 2] * 3  # passes of ceil(10 / 4) batches
    passes = [sum(labels[i : i + 3], []) for i in (0, 3, 6)]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert len({tuple(p) for p in passes}) == 3  # each pass its own permutation
    for b in full:
        np.testing.assert_array_equal(b[0]["inputs"][:, 0], b[1])
        np.testing.assert_array_equal(b[0]["t"][:, 0], -b[1])
    for skip in (1, 3, 5):  # a fit resumed at batch `skip` continues the same stream
        resumed = [b[1].tolist() for b in batches(skip, 9 - skip)]
        assert resumed == labels[skip:]
    assert [b[1].tolist() for b in batches()] == labels  # and in every process
    other_seed = data.shuffled_batches(elements, 4, seed=8).take(3)
    assert [np.asarray(b[1]).tolist() for b in other_seed] != labels[:3]

    def shift(batch, seed):
        inputs, y = batch
        noise = tf.random.stateless_uniform([], seed=seed)
        return {**inputs, "inputs": inputs["inputs"] + noise}, y

    noisy = batches(augment=shift)
    again = batches(4, 5, augment=shift)
    for a, b in zip(noisy[4:], again, strict=True):
        np.testing.assert_array_equal(a[0]["inputs"], b[0]["inputs"])
    offsets = {round(float(b[0]["inputs"][0, 0] - b[1][0]), 6) for b in noisy}
    assert len(offsets) == 9  # a seed of its own for every batch
    with pytest.raises(ValueError, match="skip must be >= 0"):
        data.shuffled_batches(elements, 4, seed=0, skip=-1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        data.shuffled_batches(elements, 0, seed=0)


def test_training_streams_are_prefetched():
    """Every dataset tfdistill feeds to `fit` ends in a prefetch, so the next batch is prepared
    while the current step runs."""
    import keras

    ds = data.load("digits")
    x, y = ds.x_train[:10], ds.y_train[:10]
    teacher = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    streams = {
        "shuffled_batches": data.shuffled_batches((x, y), 4, seed=0),
        "Dataset.as_tf_dataset": ds.as_tf_dataset("train", 4, shuffle=True, seed=0),
        "cache_teacher_outputs": data.cache_teacher_outputs((x, y), teacher, batch_size=4),
    }
    for name, stream in streams.items():
        assert "Prefetch" in type(stream).__name__, name
