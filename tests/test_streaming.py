"""Photos at any size and count: the on-disk `ImageStore`, the views models see of it, the
folder loader's size rule and cache, and the run's two views (teacher and student sizes)."""

import logging
import os
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tfdistill import data
from tfdistill.batches import INPUTS, TEACHER_INPUTS, TEACHER_LOGITS
from tfdistill.data import folder as folder_lib
from tfdistill.data import store as store_lib
from tfdistill.data import views
from tfdistill.data.resized import in_store


def _write(path, image, fmt="png"):
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
    path.write_bytes(encode(image).numpy())


def _store(tmp_path, images):
    store_lib.write(tmp_path / "s", [images[:3], images[3:]], images.shape[1:])
    return store_lib.ImageStore.open(tmp_path / "s")


def test_image_store_reads_like_a_float_array_and_keeps_nothing_half_written(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 5, 4, 3), dtype=np.uint8)
    store = _store(tmp_path, images)
    assert store.shape == (7, 5, 4, 3) and len(store) == 7 and store.dtype == np.float32
    np.testing.assert_array_equal(store.uint8([6, 0, 6]), images[[6, 0, 6]])
    np.testing.assert_allclose(store[2:5], images[2:5] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(store[-1], images[-1] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(store.scaled(1.0)[[1, 3]], images[[1, 3]].astype(np.float32))
    subset = store.subset([4, 1])
    np.testing.assert_array_equal(subset.uint8(slice(None)), images[[4, 1]])
    np.testing.assert_array_equal(subset.subset([1]).uint8([0]), images[[1]])
    with pytest.raises(IndexError, match="out of range for a store of 7"):
        store.uint8([7])
    gathered = tf.data.Dataset.from_tensors(tf.constant([5, 2], tf.int64)).map(store.gather)
    np.testing.assert_array_equal(next(iter(gathered)).numpy(), images[[5, 2]])
    with pytest.raises(ValueError, match=r"images of shape \(5, 4, 1\) for a store of"):
        store_lib.write(tmp_path / "bad", [images[..., :1]], (5, 4, 3))
    assert not store_lib.is_complete(tmp_path / "bad")


def test_a_store_is_built_once_by_one_of_many_and_a_dead_builders_lock_goes_stale(
    tmp_path, monkeypatch
):
    images = np.arange(2 * 2 * 2 * 1, dtype=np.uint8).reshape(2, 2, 2, 1)
    builds = []

    def build(folder):
        builds.append(threading.get_ident())
        time.sleep(0.3)
        store_lib.write(folder, [images], (2, 2, 1))

    opened = []
    workers = [
        threading.Thread(target=lambda: opened.append(store_lib.cached(tmp_path / "c", build)))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(builds) == 1 and len(opened) == 3
    assert all(np.array_equal(s.uint8([0, 1]), images) for s in opened)

    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / "build.lock").touch()
    old = time.time() - store_lib.STALE_LOCK_SECONDS - 5
    os.utime(dead / "build.lock", (old, old))
    store = store_lib.cached(dead, build)
    assert len(builds) == 2 and len(store) == 2 and not (dead / "build.lock").exists()


def test_parse_size_and_stored_size():
    assert views.parse_size("96") == (96, 96) and views.parse_size("96,128") == (96, 128)
    assert views.parse_size(64) == (64, 64) and views.parse_size((3, 5)) == (3, 5)
    assert views.parse_size(None) is None
    for bad in ("0", "a,b", (1, 2, 3), True, -4, "96,"):
        with pytest.raises(ValueError, match="image_size must be H or H,W"):
            views.parse_size(bad)
    assert views.stored_size([(64, 64), (96, 80)]) == (110, 92)  # ceil(96/0.875), ceil(80/.875)


def test_fit_and_crop_keeps_the_aspect_ratio_and_takes_the_centre():
    image = np.zeros((20, 40, 1), np.uint8)
    image[:, :20], image[:, 20:] = 10, 200
    out = views.fit_and_crop(tf.constant(image), (10, 10)).numpy()[..., 0]
    # resized to 10 x 20 (aspect kept, covering 10 x 10), then columns 5..14 kept
    assert out.shape == (10, 10) and out.dtype == np.uint8
    assert (out[:, :4] == 10).all() and (out[:, 6:] == 200).all()
    tall = views.fit_and_crop(tf.zeros((50, 10, 3), tf.uint8), (8, 6)).numpy()
    assert tall.shape == (8, 6, 3)


def test_center_view_spans_the_middle_seven_eighths():
    size = 33
    ramp = np.add.outer(np.arange(size, dtype=np.float32), 100.0 * np.arange(size))
    view = views.center_view(ramp[None, ..., None], (8, 8)).numpy()[0, ..., 0]
    low, high = (
        (1 - views.CROP_FRACTION) / 2 * (size - 1),
        (1 + views.CROP_FRACTION) / 2 * (size - 1),
    )
    np.testing.assert_allclose(view[0, 0], low + 100 * low, rtol=1e-5)
    np.testing.assert_allclose(view[-1, -1], high + 100 * high, rtol=1e-5)


def test_random_views_are_one_crop_at_each_size_and_repeat_with_the_seed():
    rng = np.random.default_rng(0)
    smooth = tf.image.resize(rng.uniform(0, 255, (4, 6, 6, 3)), (60, 60)).numpy()
    seed = tf.constant([3, 7], tf.int64)
    small, large = views.random_views(smooth, [(16, 16), (48, 48)], seed)
    again, _ = views.random_views(smooth, [(16, 16), (48, 48)], seed)
    np.testing.assert_array_equal(small.numpy(), again.numpy())
    shrunk = tf.image.resize(large, (16, 16), antialias=True).numpy()
    other_small, _ = views.random_views(smooth, [(16, 16), (48, 48)], seed + 1)
    same_crop = np.abs(shrunk - small.numpy()).mean()
    assert same_crop < 0.3 * np.abs(shrunk - other_small.numpy()).mean()
    boxes = views.random_boxes(tf.constant(4000), seed).numpy()
    height, width = boxes[:, 2] - boxes[:, 0], np.abs(boxes[:, 3] - boxes[:, 1])
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0 + 1e-6
    assert (height * width).min() >= views.CROP_SCALE[0] * 0.75 - 1e-6
    assert 0.45 < np.mean(boxes[:, 3] < boxes[:, 1]) < 0.55  # mirrored half the time
    other = views.random_boxes(tf.constant(4000), tf.constant([3, 8], tf.int64)).numpy()
    assert not np.allclose(boxes, other)


def _photos(root, per_class=4, sizes=((30, 50), (70, 40), (45, 45))):
    rng = np.random.default_rng(1)
    for c, name in enumerate(("a", "b", "c")):
        for i in range(per_class):
            h, w = sizes[(c + i) % len(sizes)]
            image = np.clip(rng.normal(60 * c + 40, 30, (h, w, 3)), 0, 255).astype(np.uint8)
            _write(
                root / name / f"{i}.{'jpg' if i % 2 else 'png'}", image, "jpg" if i % 2 else "png"
            )
    (root / "a" / "notes.txt").write_text("ignored")
    (root / "b" / "broken.png").write_bytes(b"\x89PNG broken")


def test_a_folder_of_mixed_photos_streams_at_the_size_asked(tmp_path, caplog):
    _photos(tmp_path / "p")
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="tfdistill"):
        default = data.load(f"folder:{tmp_path / 'p'}", cache_dir=cache)
    assert default.input_shape == (224, 224, 3) and "image_size 224x224" in caplog.text
    ds = data.load(
        f"folder:{tmp_path / 'p'}", image_size="24", view_sizes=[(40, 40)], cache_dir=cache
    )
    assert ds.streamed and ds.skipped == 1 and ds.image_size == (24, 24)
    assert ds.x_train.image_shape == (46, 46, 3) and len(ds.x_train) + len(ds.x_test) == 12
    assert ds.inputs("test").shape == (len(ds.x_test), 24, 24, 3)
    teacher_view = ds.inputs("test", (40, 40))[:2]
    assert (
        teacher_view.shape == (2, 40, 40, 3)
        and 0.0 <= teacher_view.min() <= teacher_view.max() <= 1.0
    )
    raw = ds.raw_pixels().inputs("test")[:2]
    np.testing.assert_allclose(raw, ds.inputs("test")[:2] * 255.0, rtol=1e-5, atol=1e-3)
    x, y = next(iter(ds.as_tf_dataset("train", 5)))
    assert x.shape == (5, 24, 24, 3) and list(y.numpy()) == list(ds.y_train[:5])


def test_the_folder_cache_is_reused_until_a_file_changes(tmp_path, monkeypatch):
    _photos(tmp_path / "p", per_class=2, sizes=((20, 20),))
    cache = tmp_path / "cache"
    first = data.load(f"folder:{tmp_path / 'p'}", cache_dir=cache, test_fraction=0.5)
    assert first.image_size is None and first.input_shape == (20, 20, 3)  # small and alike

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_lib, "_build", no_decoding)
    again = data.load(f"folder:{tmp_path / 'p'}", cache_dir=cache, test_fraction=0.5)
    assert again.files_digest == first.files_digest
    np.testing.assert_array_equal(again.x_train[:], first.x_train[:])
    changed = tmp_path / "p" / "a" / "0.png"
    os.utime(changed, (time.time() + 10, time.time() + 10))
    with pytest.raises(AssertionError, match="decoded again"):
        data.load(f"folder:{tmp_path / 'p'}", cache_dir=cache, test_fraction=0.5)


def test_in_memory_sets_at_another_size_are_stored_like_photos(tmp_path):
    rng = np.random.default_rng(2)
    small = data.Dataset(
        name="small",
        x_train=rng.integers(0, 256, (6, 8, 8, 3)).astype(np.float32) / 255.0,
        y_train=np.arange(6) % 2,
        x_test=rng.integers(0, 256, (2, 8, 8, 3)).astype(np.float32) / 255.0,
        y_test=np.array([0, 1]),
        num_classes=2,
        class_names=("x", "y"),
        pixel_max=255.0,
    )
    sized = in_store(small, (16, 16), cache_dir=tmp_path)
    assert sized.streamed and sized.input_shape == (16, 16, 3)
    assert sized.x_train.image_shape == (19, 19, 3)
    view = sized.raw_pixels().inputs("test")[:]
    upsampled = tf.image.resize(small.x_test * 255.0, (16, 16)).numpy()
    assert np.abs(view.mean() - upsampled.mean()) < 3.0
    same = data.load("digits", image_size=16)
    assert same.input_shape == (16, 16, 1) and not same.streamed


def test_the_run_feeds_each_model_its_view(tmp_path):
    from tfdistill.run import feed
    from tfdistill.run.config import RunConfig

    _photos(tmp_path / "p")
    ds = data.load(
        f"folder:{tmp_path / 'p'}", image_size=16, view_sizes=[(24, 24)], cache_dir=tmp_path / "c"
    ).raw_pixels()
    config = RunConfig(out="unused", dataset=f"folder:{tmp_path / 'p'}", batch_size=4)
    sizes = feed.sizes_of(ds, (24, 24), "both")
    assert sizes == [(16, 16), (24, 24)] and feed.sizes_of(ds, None, "both") == [(16, 16)]
    stream = feed.stream_of(config, ds, (ds.x_train, ds.y_train), sizes)
    first = [b for b in stream(0).take(3)]
    x, y = first[1]
    assert x[INPUTS].shape == (4, 16, 16, 3) and x[TEACHER_INPUTS].shape == (4, 24, 24, 3)
    assert 1.5 < float(tf.reduce_max(x[INPUTS])) <= 255.0  # raw pixels
    resumed, _ = next(iter(stream(1)))
    np.testing.assert_array_equal(resumed[INPUTS].numpy(), x[INPUTS].numpy())
    logits = np.zeros((len(ds.x_train), 3), np.float32)
    cached = feed.stream_of(
        config, ds, ({INPUTS: ds.x_train, TEACHER_LOGITS: logits}, ds.y_train), sizes
    )
    x, _ = next(iter(cached(0)))
    assert sorted(x) == [INPUTS, TEACHER_LOGITS] and x[INPUTS].shape == (4, 16, 16, 3)
    epoch = feed.epoch_batches(config, ds, (ds.x_train, ds.y_train), sizes)
    assert sum(len(b[1]) for b in epoch) == len(ds.x_train)


def test_teacher_size_comes_from_the_flag_the_file_or_the_application(tmp_path):
    import keras

    from tfdistill.run import feed
    from tfdistill.run.config import RunConfig

    assert feed.teacher_size(RunConfig(out="u", teacher_image_size="40,48")) == (40, 48)
    app = RunConfig(out="u", teacher="keras.applications.EfficientNetB1")
    assert feed.teacher_size(app) == (240, 240)
    assert feed.teacher_size(RunConfig(out="u")) is None
    inputs = keras.Input((20, 30, 3))
    model = keras.Model(
        inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs))
    )
    model.save(tmp_path / "t.keras")
    assert feed.keras_file_size(tmp_path / "t.keras") == (20, 30)
    assert feed.teacher_size(RunConfig(out="u", teacher_weights=str(tmp_path / "t.keras"))) == (
        20,
        30,
    )
    with pytest.raises(ValueError, match="teacher_image_size must be H or H,W"):
        RunConfig(out="u", teacher_image_size="big")


@pytest.mark.slow  # a whole run (about 30 s); the README's test command is near its budget
def test_a_run_on_photos_gives_each_model_its_size_and_reports_them(tmp_path):
    import keras

    from tfdistill import run as run_lib
    from tfdistill.export.interpreter import litert_interpreter

    _photos(tmp_path / "p")
    config = run_lib.RunConfig(
        out=str(tmp_path / "run"),
        dataset=f"folder:{tmp_path / 'p'}",
        image_size="16",
        teacher_image_size="24",
        cache_dir=str(tmp_path / "cache"),
        teacher_kwargs={"widths": (4, 8), "depth": 1},
        student_kwargs={"widths": (2, 4)},
        teacher_epochs=1,
        student_epochs=1,
        labels_per_class=2,
        batch_size=4,
        quantize=("int8",),
        bench_runs=1,
        quiet=True,
    )
    result = run_lib.run(config, log=lambda _: None)
    dataset = result["dataset"]
    assert dataset["input_shape"] == [16, 16, 3] and dataset["stored_shape"] == [28, 28, 3]
    assert dataset["skipped_files"] == 1 and dataset["streamed"]
    assert result["teacher"]["input_shape"] == [24, 24, 3]
    teacher = keras.models.load_model(tmp_path / "run" / "teacher.keras")
    assert tuple(teacher.inputs[0].shape) == (None, 24, 24, 3)
    for name in ("student_distilled_int8",):
        interpreter = litert_interpreter(tmp_path / "run" / f"{name}.tflite")
        assert list(interpreter.get_input_details()[0]["shape"]) == [1, 16, 16, 3]
    assert {row["file"] for row in result["tflite"]} >= {"teacher_fp32.tflite"}


def test_teacher_logits_on_disk_are_read_by_batch(tmp_path):
    import keras

    inputs = keras.Input((4, 4, 1))
    teacher = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    images = np.random.default_rng(3).uniform(0, 1, (10, 4, 4, 1)).astype(np.float32)
    expected = data.teacher_logits(images, teacher, batch_size=4)
    stored = data.teacher_logits(images, teacher, batch_size=4, path=tmp_path / "t.npy")
    assert isinstance(stored, np.memmap) and stored.dtype == np.float16
    np.testing.assert_allclose(stored, expected, rtol=1e-3, atol=1e-3)
    stream = data.shuffled_batches((images, stored), 4, seed=0)
    x, t = next(iter(stream))
    rows = [int(np.argmin(np.abs(images - row).sum(axis=(1, 2, 3)))) for row in x.numpy()]
    np.testing.assert_allclose(t.numpy(), stored[rows].astype(np.float32))


def test_a_folder_too_small_to_split_says_so(tmp_path):
    _photos(tmp_path / "p", per_class=2, sizes=((20, 20),))
    with pytest.raises(ValueError, match="6 readable images cannot be split 0.2 for testing"):
        data.load(f"folder:{tmp_path / 'p'}", cache_dir=tmp_path / "c")
