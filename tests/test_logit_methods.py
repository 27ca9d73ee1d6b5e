"""Logit methods beyond Hinton KD: decoupled KD (Zhao et al., CVPR 2022) and logit
standardization (Sun et al., CVPR 2024), each against a float64 NumPy transcription of its
paper's reference code (mdistiller's `dkd_loss`; the logit-standardization repository's
`normalize`), through `Distiller.fit`, under a MirroredStrategy, and in a `.keras` round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests.test_distribute import assert_replicas_fit_as_one
from tfdistill import DIST, DecoupledKD, Distiller, SoftTargetLoss
from tfdistill.losses import standardized

RNG = np.random.default_rng(31)


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _kl_sum(p, log_q):
    """torch's `F.kl_div(log_q, p, reduction="sum")`: Σ p · (log p - log q), 0 where p = 0."""
    safe = np.where(p > 0, p, 1.0)
    return float(np.sum(np.where(p > 0, p * (np.log(safe) - log_q), 0.0)))


def dkd_reference(s, t, target, alpha, beta, temperature):
    """mdistiller's `dkd_loss`, in float64."""
    batch, classes = s.shape
    gt = np.eye(classes)[target]
    other = 1.0 - gt
    ps, pt = _softmax(s / temperature), _softmax(t / temperature)
    bs = np.stack([(ps * gt).sum(1), (ps * other).sum(1)], 1)
    bt = np.stack([(pt * gt).sum(1), (pt * other).sum(1)], 1)
    tckd = _kl_sum(bt, np.log(bs)) * temperature**2 / batch
    pt2 = _softmax(t / temperature - 1000.0 * gt)
    zs = s / temperature - 1000.0 * gt
    log_ps2 = zs - zs.max(1, keepdims=True)
    log_ps2 = log_ps2 - np.log(np.exp(log_ps2).sum(1, keepdims=True))
    nckd = _kl_sum(pt2, log_ps2) * temperature**2 / batch
    return alpha * tckd + beta * nckd


def normalize_reference(logit):
    """The logit-standardization repository's `normalize` (torch.std is Bessel-corrected)."""
    return (logit - logit.mean(-1, keepdims=True)) / (1e-7 + logit.std(-1, ddof=1, keepdims=True))


def kd_reference(s, t, temperature):
    log_ps = np.log(_softmax(s / temperature))
    pt = _softmax(t / temperature)
    return _kl_sum(pt, log_ps) * temperature**2 / len(s)


def _pearson(a, b, eps=1e-8):
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + eps)


def dist_reference(s, t, beta, gamma, tau):
    """The DIST paper's reference code (`inter_class_relation`, `intra_class_relation`)."""
    y_s, y_t = _softmax(s / tau), _softmax(t / tau)
    inter = tau**2 * (1 - _pearson(y_s, y_t).mean())
    intra = tau**2 * (1 - _pearson(y_s.T, y_t.T).mean())
    return beta * inter + gamma * intra


def test_dist_matches_the_reference_code():
    s, t = RNG.normal(0, 2, (9, 6)), RNG.normal(0, 2, (9, 6))
    for beta, gamma, tau in ((1.0, 1.0, 1.0), (2.0, 0.5, 4.0)):
        got = float(DIST(beta, gamma, tau).compute(np.zeros(9, int), t, s))
        assert got == pytest.approx(dist_reference(s, t, beta, gamma, tau), rel=1e-4)
    weights = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], np.float32)  # padding rows stay out
    rows = DIST().per_example(np.zeros(9, int), t, s, weights=weights).numpy()
    intra = dist_reference(s[:7], t[:7], 0.0, 1.0, 1.0)
    inter = 1 - _pearson(_softmax(s[:7]), _softmax(t[:7]))
    np.testing.assert_allclose(rows[:7], inter + intra, rtol=1e-4)
    with pytest.raises(ValueError, match="DIST weights must be >= 0"):
        DIST(gamma=-1.0)


def test_decoupled_kd_matches_the_reference_code():
    s, t = RNG.normal(0, 3, (6, 5)), RNG.normal(0, 3, (6, 5))
    labels = np.array([0, 4, -1, 2, -1, 1])
    target = np.where(labels >= 0, labels, t.argmax(1))
    dkd = DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0)
    expected = dkd_reference(s, t, target, 1.0, 8.0, 4.0)
    assert float(dkd.compute(labels, t, s)) == pytest.approx(expected, rel=1e-5)
    one_hot = np.eye(5)[np.maximum(labels, 0)] * (labels >= 0)[:, None]
    assert float(dkd.compute(one_hot, t, s)) == pytest.approx(expected, rel=1e-5)
    weighted = DecoupledKD(alpha=0.5, beta=2.0, temperature=1.0)
    expected = dkd_reference(s, t, target, 0.5, 2.0, 1.0)
    assert float(weighted.compute(labels, t, s)) == pytest.approx(expected, rel=1e-5)
    warming = DecoupledKD(warmup_steps=20)
    full = float(DecoupledKD().compute(labels, t, s))
    assert float(warming.compute(labels, t, s, step=5)) == pytest.approx(full / 4, rel=1e-5)
    assert float(warming.compute(labels, t, s, step=40)) == pytest.approx(full, rel=1e-5)
    standard = DecoupledKD(standardize=True)
    expected = dkd_reference(normalize_reference(s), normalize_reference(t), target, 1.0, 8.0, 4.0)
    assert float(standard.compute(labels, t, s)) == pytest.approx(expected, rel=1e-4)


def test_logit_standardization_matches_the_reference_and_ignores_scale_and_shift():
    s, t = RNG.normal(0, 2, (5, 7)), RNG.normal(0, 5, (5, 7))
    np.testing.assert_allclose(standardized(t), normalize_reference(t), rtol=1e-5, atol=1e-6)
    kd_ls = SoftTargetLoss(temperature=2.0, standardize=True)
    expected = kd_reference(normalize_reference(s), normalize_reference(t), 2.0)
    assert float(tf.reduce_mean(kd_ls.call(t, s))) == pytest.approx(expected, rel=1e-4)
    moved = float(tf.reduce_mean(kd_ls.call(3.0 * t + 7.0, 0.5 * s - 2.0)))
    assert moved == pytest.approx(expected, rel=1e-4)
    plain = float(tf.reduce_mean(SoftTargetLoss(temperature=2.0).call(3.0 * t + 7.0, s)))
    assert plain != pytest.approx(expected, rel=1e-2)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="at least 3 classes; these logits have 2"):
        DecoupledKD().compute([0, 1], np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="weights must be >= 0"):
        DecoupledKD(beta=-1.0)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        DecoupledKD(warmup_steps=-3)


def _distiller(method):
    keras.utils.set_random_seed(0)
    student = helpers.cnn((2, 3), "s", 1, (8, 8, 2), classes=4)
    teacher = helpers.cnn((4, 6), "t", 2, (8, 8, 2), classes=4)
    distiller = Distiller(student, teacher)
    distiller.compile(keras.optimizers.SGD(0.1), alpha=0.3, distillation_loss_fn=method)
    return distiller


@pytest.mark.parametrize(
    "method",
    [
        DecoupledKD(beta=2.0),
        DecoupledKD(standardize=True),
        SoftTargetLoss(2.0, standardize=True),
        DIST(2.0, 2.0, 4.0),
    ],
    ids=["dkd", "dkd+ls", "kd+ls", "dist"],
)
def test_the_distiller_trains_on_a_logit_method_and_saves_it(tmp_path, method):
    x = RNG.random((16, 8, 8, 2)).astype("float32")
    y = RNG.integers(0, 4, 16)
    y[:4] = -1
    distiller = _distiller(method)
    logged = distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    t, s = distiller.teacher(x).numpy(), distiller.student(x).numpy()
    if isinstance(method, DIST):
        reference = dist_reference(s, t, 2.0, 2.0, 4.0)
    elif isinstance(method, DecoupledKD):
        target = np.where(y >= 0, y, t.argmax(1))
        reference = dkd_reference(
            *(normalize_reference(v) if method.standardize else v for v in (s, t)),
            target,
            method.alpha,
            method.beta,
            method.temperature,
        )
    else:
        reference = kd_reference(normalize_reference(s), normalize_reference(t), 2.0)
    assert logged["distillation_loss"] == pytest.approx(reference, rel=1e-4)
    history = distiller.fit(x, y, batch_size=8, epochs=5, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
    distiller.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    assert type(loaded.soft_loss) is type(method)
    assert loaded.soft_loss.get_config() == method.get_config()


def test_dist_takes_its_intra_class_term_over_the_global_batch(mirrored):
    """Five rows split 3 + 2 over two replicas, the second padded with a row of weight 0: the
    replicas' shares add up to the one-device loss, and their gradients to its gradient (the
    moments are all-reduced, and so are the gradients reaching them)."""
    s = RNG.normal(0, 2, (5, 4)).astype("float32")
    t = RNG.normal(0, 2, (5, 4)).astype("float32")
    dist = DIST(1.0, 4.0, 2.0)
    x = tf.constant(s)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = dist.compute(None, tf.constant(t), x)
    expected = tape.gradient(loss, x).numpy()
    pad = np.zeros((1, 4), np.float32)
    parts = [
        (s[:3], t[:3], [1, 1, 1]),
        (np.vstack([s[3:], pad]), np.vstack([t[3:], pad]), [1, 1, 0]),
    ]

    def part(ctx):
        return [tf.constant(np.asarray(v, np.float32)) for v in parts[ctx.replica_id_in_sync_group]]

    values = mirrored.experimental_distribute_values_from_function(part)

    @tf.function
    def step(values):
        xs, ts, weights = values
        with tf.GradientTape() as tape:
            tape.watch(xs)
            share = tf.reduce_sum(weights * dist.per_example(None, ts, xs, weights=weights)) / 5.0
        return share, tape.gradient(share, xs)

    shares, grads = mirrored.run(step, args=(values,))
    shares = [float(v) for v in mirrored.experimental_local_results(shares)]
    grads = [g.numpy() for g in mirrored.experimental_local_results(grads)]
    assert sum(shares) == pytest.approx(float(loss), rel=1e-5)
    np.testing.assert_allclose(np.vstack([grads[0], grads[1][:2]]), expected, atol=1e-6)
    np.testing.assert_array_equal(grads[1][2], 0.0)


def test_decoupled_kd_under_mirrored_strategy_matches_one_device(mirrored):
    """Batches of 5, 5 and 1, split 3 + 2 and 1 + 0, with the DKD weight warming up."""
    method = DecoupledKD(beta=4.0, warmup_steps=3)
    x = RNG.random((11, 8, 8, 2)).astype("float32")
    y = RNG.integers(0, 4, 11)
    y[:3] = -1
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)

    def fitted():
        distiller = _distiller(method)
        history = distiller.fit(data, epochs=2, verbose=0, shuffle=False).history
        return history, distiller.student.get_weights()

    assert_replicas_fit_as_one(fitted, mirrored, steps=2 * 3, lr=0.1)


def test_tfdistill_run_distils_with_a_method_and_its_settings(tmp_path):
    from tfdistill import run as run_lib

    config = run_lib.RunConfig(
        out=str(tmp_path / "run"),
        method="dkd+ls",
        method_kwargs={"beta": 2.0, "warmup_steps": 5},
        teacher_kwargs={"widths": (4, 8)},
        student_kwargs={"widths": (2, 4)},
        teacher_epochs=1,
        student_epochs=2,
        batch_size=256,
        quantize=("none",),
        bench_runs=1,
        quiet=True,
    )
    result = run_lib.run(config, log=lambda _: None)
    assert result["config"]["method"] == "dkd+ls"
    assert result["config"]["method_kwargs"] == {"beta": 2.0, "warmup_steps": 5}
    assert len(result["history"]["student (distilled)"]["distillation_loss"]) == 2
    with pytest.raises(ValueError, match=r"method_kwargs \['gamma'\] do not apply"):
        run_lib.RunConfig(out="unused", method="dkd", method_kwargs={"gamma": 1.0})
