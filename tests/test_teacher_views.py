"""Cached teacher views (`--teacher_views`): each stored view rebuilds the exact crop the
teacher labelled, the stream pairs every student view with the teacher's logits of that same
view, labelled views are reused (never relabelled) for the same teacher, and the Distiller fits
them under a MirroredStrategy as on one device. The whole run (interrupted and resumed, with
every compression stage on views) is `tests/test_pipeline.py`'s `tiny_run`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests.test_distribute import assert_replicas_fit_as_one
from tfdistill import Distiller, data
from tfdistill.batches import INPUTS, TEACHER_LOGITS
from tfdistill.data import views
from tfdistill.run import feed, training
from tfdistill.run.config import RunConfig

RNG = np.random.default_rng(23)


def _in_memory(n=10, size=8):
    x = RNG.integers(0, 256, (n, size, size, 3)).astype(np.float32)
    y = np.arange(n) % 3
    return data.Dataset("toy", x, y, x[:3], y[:3], 3, ("a", "b", "c"), pixel_max=255.0)


def _stored(tmp_path, n=10):
    for i in range(n):
        h, w = 20 + 3 * i, 30 - i
        image = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = tmp_path / "p" / "abc"[i % 3] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tf.io.encode_png(image).numpy())
    return data.load(
        f"folder:{tmp_path / 'p'}",
        image_size=8,
        view_sizes=[(12, 12)],
        cache_dir=tmp_path / "c",
        test_fraction=0.3,
    ).raw_pixels()


def _teacher(size):
    keras.utils.set_random_seed(1)
    return helpers.cnn((4, 6), "t", 1, (size, size, 3))


@pytest.mark.parametrize("stored", [False, True], ids=["shifted", "cropped"])
def test_every_stored_view_is_the_crop_the_teacher_labelled(tmp_path, stored):
    ds = _stored(tmp_path) if stored else _in_memory()
    size = (12, 12) if stored else (8, 8)
    teacher = _teacher(size[0])
    labelled = data.label_views(ds, teacher, 3, seed=5, teacher_size=size, batch_size=4)
    assert labelled.params.shape == (len(ds.x_train), 3, views.PARAMS)
    assert labelled.logits.shape == (len(ds.x_train), 3, 3) and labelled.logits.dtype == np.float16
    rows = np.arange(len(ds.x_train))
    images = ds.x_train.uint8(rows) if stored else ds.x_train
    scale = ds.x_train.scale if stored else 1.0
    for k in range(3):
        seen = data.teacher_views.render(images, labelled.params[:, k], [size], stored)[0]
        np.testing.assert_allclose(
            labelled.logits[:, k], teacher(seen * scale), rtol=2e-3, atol=2e-3
        )
    assert not np.allclose(labelled.params[:, 0], labelled.params[:, 1])
    again = data.label_views(ds, teacher, 3, seed=5, teacher_size=size, batch_size=4)
    np.testing.assert_array_equal(again.params, labelled.params)


def test_the_stream_gives_each_student_view_the_teachers_logits_of_it():
    ds = _in_memory(n=12)
    teacher = _teacher(8)
    labelled = data.label_views(ds, teacher, 4, seed=0)
    config = RunConfig(out="unused", augment=True, batch_size=5, teacher_views=4)
    rows = (labelled.elements(ds.x_train), ds.y_train)
    picks = set()
    for x, _ in feed.stream_of(config, ds, rows, [(8, 8)])(0).take(5):
        assert sorted(x) == [INPUTS, TEACHER_LOGITS] and x[INPUTS].shape[1:] == (8, 8, 3)
        np.testing.assert_allclose(x[TEACHER_LOGITS], teacher(x[INPUTS]), rtol=2e-3, atol=2e-3)
        picks.add(round(float(tf.reduce_sum(x[INPUTS])), 1))
    assert len(picks) == 5
    resumed, _ = next(iter(feed.stream_of(config, ds, rows, [(8, 8)])(3)))
    third = list(feed.stream_of(config, ds, rows, [(8, 8)])(0).take(4))[3][0]
    np.testing.assert_array_equal(resumed[INPUTS], third[INPUTS])
    with pytest.raises(ValueError, match="count .* must be >= 1"):
        data.label_views(ds, teacher, 0)


def test_views_are_labelled_once_per_teacher_and_kept(tmp_path, monkeypatch):
    ds = _in_memory()
    config = RunConfig(out="unused", augment=True, teacher_views=2)
    teacher = _teacher(8)
    labeled = np.array([0, 1, 2])
    rows, labels, seconds = training.teacher_view_elements(config, ds, teacher, labeled, tmp_path)
    assert seconds is not None and labels.tolist()[:4] == [0, 1, 2, -1]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.startswith("teacher_views_2_") for f in files)

    def relabel(*args, **kwargs):
        raise AssertionError("labelled again")

    monkeypatch.setattr(data, "label_views", relabel)
    again, _, seconds = training.teacher_view_elements(config, ds, teacher, labeled, tmp_path)
    assert seconds is None and isinstance(again["view_logits"], np.memmap)
    np.testing.assert_array_equal(again["view_params"], rows["view_params"])
    monkeypatch.undo()
    other = _teacher(8)
    other.set_weights([w + 0.5 for w in other.get_weights()])
    training.teacher_view_elements(config, ds, other, labeled, tmp_path)
    assert (
        len(list(tmp_path.iterdir())) == 2 and sorted(p.name for p in tmp_path.iterdir()) != files
    )


def test_distilling_from_views_under_mirrored_strategy_matches_one_device(mirrored):
    ds = _in_memory(n=11)
    teacher = _teacher(8)
    labelled = data.label_views(ds, teacher, 2, seed=0)
    config = RunConfig(out="unused", augment=True, batch_size=5, teacher_views=2)
    y = ds.y_train.copy()
    y[:3] = -1
    stream = feed.stream_of(config, ds, (labelled.elements(ds.x_train), y), [(8, 8)])

    def fitted():
        keras.utils.set_random_seed(0)
        student = helpers.cnn((2, 3), "s", 2, (8, 8, 3))
        distiller = Distiller(student, teacher)
        distiller.compile(keras.optimizers.SGD(0.01), alpha=0.3, temperature=2.0)
        history = distiller.fit(stream(0), epochs=2, steps_per_epoch=3, verbose=0).history
        return history, student.get_weights()

    assert_replicas_fit_as_one(fitted, mirrored, steps=2 * 3, lr=0.01)
