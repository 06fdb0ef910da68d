import io

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ml.errors import CorruptData, EmptyData, InvalidInput
from ml.training import TrainConfig, TrainedModel, _augment, _class_weights, train_classifier, train_segmenter

SMALL = {"widths": [16, 32, 64]}  # a narrower image CNN keeps the tests fast


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def digits_images(size: int = 32):
    """scikit-learn's digits (real 8x8 scans) as (N, 3, size, size) float32 in [-1, 1]."""
    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    rep = size // 8
    x = np.repeat(np.repeat(x, rep, axis=1), rep, axis=2)
    x = np.repeat(x[:, None], 3, axis=1) * 2.0 - 1.0
    return np.ascontiguousarray(x), d.target.astype(np.int64)


def _unit_sphere(p):
    p = p - p.mean(axis=0)
    return (p / np.linalg.norm(p, axis=1).max()).astype(np.float32)


def shape_clouds(n_per_class: int, n_points: int, seed: int):
    """Point clouds sampled from parametric surfaces: sphere (0), cube (1), cylinder wall (2),
    each randomly scaled per axis, jittered and normalised to the unit sphere."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k in range(3):
        for _ in range(n_per_class):
            if k == 0:
                v = rng.normal(size=(n_points, 3))
                p = v / np.linalg.norm(v, axis=1, keepdims=True)
            elif k == 1:
                p = rng.uniform(-1, 1, size=(n_points, 3))
                p[np.arange(n_points), rng.integers(0, 3, n_points)] = rng.choice([-1.0, 1.0], n_points)
            else:
                t = rng.uniform(0, 2 * np.pi, n_points)
                p = np.stack([np.cos(t), np.sin(t), rng.uniform(-1, 1, n_points)], axis=1)
            p = p * rng.uniform(0.7, 1.3, size=3) + rng.normal(0, 0.01, size=(n_points, 3))
            X.append(_unit_sphere(p))
            y.append(k)
    return np.stack(X), np.array(y, dtype=np.int64)


def lamps(n: int, n_points: int, seed: int):
    """Clouds of a 'lamp' with per-point part labels: cylinder wall (0), top disc (1), sphere on top (2)."""
    rng = np.random.default_rng(seed)
    X, Y = [], []
    for _ in range(n):
        r, h, big_r = rng.uniform(0.3, 0.6), rng.uniform(1.0, 2.0), rng.uniform(0.4, 0.8)
        parts = rng.choice(3, size=n_points, p=[0.5, 0.2, 0.3])
        p = np.empty((n_points, 3))
        for k in range(3):
            m = parts == k
            c = int(m.sum())
            t = rng.uniform(0, 2 * np.pi, c)
            if k == 0:
                p[m] = np.stack([r * np.cos(t), r * np.sin(t), rng.uniform(0, h, c)], axis=1)
            elif k == 1:
                rr = r * np.sqrt(rng.uniform(0, 1, c))
                p[m] = np.stack([rr * np.cos(t), rr * np.sin(t), np.full(c, h)], axis=1)
            else:
                v = rng.normal(size=(c, 3))
                p[m] = v / np.linalg.norm(v, axis=1, keepdims=True) * big_r + [0.0, 0.0, h + big_r]
        X.append(_unit_sphere(p + rng.normal(0, 0.01, size=p.shape)))
        Y.append(parts)
    return np.stack(X), np.stack(Y).astype(np.int64)


def sound_logmels(n_per_class: int, seed: int, duration: float = 0.5, sr: int = 16000):
    """Rising chirps (0), falling chirps (1) and coloured noise (2) with random ranges and levels,
    as (N, 1, 64, T) log-mel scaled like ml.modalities.audio: (dB + 50) / 50, floor -100 dB."""
    import librosa

    rng = np.random.default_rng(seed)
    n = int(sr * duration)
    X, y = [], []
    for k in range(3):
        for _ in range(n_per_class):
            lo, hi = rng.uniform(200, 600), rng.uniform(2000, 5000)
            if k == 0:
                sig = librosa.chirp(fmin=lo, fmax=hi, sr=sr, duration=duration)
            elif k == 1:
                sig = librosa.chirp(fmin=hi, fmax=lo, sr=sr, duration=duration)
            else:
                sig = np.convolve(rng.normal(size=n), np.hanning(int(rng.integers(8, 32))), mode="same")
            sig = sig[:n] / np.abs(sig[:n]).max() * rng.uniform(0.2, 0.9) + rng.normal(0, 0.01, n)
            mel = librosa.feature.melspectrogram(
                y=sig.astype(np.float32), sr=sr, n_fft=400, hop_length=160, n_mels=64, fmin=20, fmax=8000
            )
            db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
            X.append(((np.maximum(db, -100.0) + 50.0) / 50.0)[None].astype(np.float32))
            y.append(k)
    return np.stack(X), np.array(y, dtype=np.int64)


@pytest.fixture(scope="module")
def digits():
    X, y = digits_images()
    perm = np.random.default_rng(0).permutation(len(X))
    tr, va = perm[:1400], perm[1400:]
    return X[tr], y[tr], X[va], y[va]


@pytest.fixture(scope="module")
def digits_model(digits):
    X_tr, y_tr, X_va, y_va = digits
    events = []
    model = train_classifier(
        "image",
        X_tr,
        y_tr,
        X_va,
        y_va,
        n_classes=10,
        config=TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=0),
        arch=SMALL,
        progress=lambda pct, msg: events.append((pct, msg)),
    )
    return model, events


def test_learns_digits_above_90_percent(digits, digits_model):
    _, _, X_va, y_va = digits
    model, _ = digits_model
    acc = float(np.mean(model.predict(X_va) == y_va))
    assert acc > 0.90, acc
    assert model.history[-1]["val_acc"] > 0.90
    probs = model.predict_proba(X_va)
    assert probs.shape == (len(X_va), 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    emb = model.embed(X_va[:5])
    assert emb.shape == (5, 128) and emb.dtype == np.float32
    p2, e2 = model.predict_and_embed(X_va[:5])
    np.testing.assert_allclose(p2, probs[:5], atol=1e-6)
    np.testing.assert_allclose(e2, emb, atol=1e-6)


def test_progress_reports_each_epoch_up_to_100(digits_model):
    model, events = digits_model
    pcts = [p for p, _ in events]
    assert pcts == sorted(pcts)
    assert pcts[-1] == 100.0
    assert sum("epoch" in m for _, m in events) == len(model.history)
    assert set(model.history[0]) >= {"epoch", "train_loss", "val_loss", "val_acc"}


def test_same_seed_gives_identical_weights_other_seed_differs(digits):
    X_tr, y_tr, X_va, y_va = digits
    kw = dict(n_classes=10, arch={"widths": [8, 16, 16], "embed_dim": 32})
    cfg = TrainConfig(epochs=2, batch_size=32, seed=3)
    a = train_classifier("image", X_tr[:200], y_tr[:200], X_va[:50], y_va[:50], config=cfg, **kw)
    b = train_classifier("image", X_tr[:200], y_tr[:200], X_va[:50], y_va[:50], config=cfg, **kw)
    c = train_classifier(
        "image", X_tr[:200], y_tr[:200], X_va[:50], y_va[:50], config=TrainConfig(epochs=2, batch_size=32, seed=4), **kw
    )
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_training_leaves_global_torch_state_alone(digits):
    X_tr, y_tr, _, _ = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_classifier(
        "image", X_tr[:40], y_tr[:40], None, None, n_classes=10,
        config=TrainConfig(epochs=1, batch_size=16), arch={"widths": [4, 4, 4], "embed_dim": 8},
    )
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()


def test_early_stopping_stops_and_keeps_best_weights():
    # real digit scans with shuffled labels: nothing to learn, so val loss rises as the net memorises
    X, y = digits_images(size=8)
    rng = np.random.default_rng(0)
    y = rng.permutation(y)
    X_tr, y_tr, X_va, y_va = X[:300], y[:300], X[300:500], y[300:500]
    cfg = TrainConfig(epochs=40, batch_size=32, lr=1e-2, patience=2, seed=0, augment=False)
    model = train_classifier("image", X_tr, y_tr, X_va, y_va, n_classes=10, config=cfg, arch={"widths": [16, 32, 64]})
    n_epochs = len(model.history)
    assert n_epochs < 40
    val_losses = [h["val_loss"] for h in model.history]
    assert model.best_epoch == int(np.argmin(val_losses)) + 1
    assert n_epochs == model.best_epoch + cfg.patience
    # the kept weights are the best epoch's: recompute its val loss
    probs = model.predict_proba(X_va)
    val_loss = float(np.mean(-np.log(probs[np.arange(len(y_va)), y_va])))
    assert val_loss == pytest.approx(val_losses[model.best_epoch - 1], rel=1e-4)


def test_class_weights_are_inverse_frequency():
    w = _class_weights(np.array([0] * 6 + [1] * 2 + [2] * 0 + [3] * 4), 4)
    # 12 samples, 3 classes present: w_c = 12 / (3 * n_c); absent class 0
    np.testing.assert_allclose(w, [12 / 18, 12 / 6, 0.0, 12 / 12], rtol=1e-6)


def test_sample_weight_zero_ignores_mislabelled_samples():
    # digits 0 vs 1 (8x8 scans); 70% of the training 0s are labelled "1"
    X, y = digits_images(size=8)
    keep = y < 2
    X, y = X[keep], y[keep]
    X_tr, y_tr, X_va, y_va = X[:260], y[:260].copy(), X[260:], y[260:]
    rng = np.random.default_rng(1)
    zeros = np.flatnonzero(y_tr == 0)
    bad = rng.choice(zeros, size=int(0.7 * len(zeros)), replace=False)
    y_noisy = y_tr.copy()
    y_noisy[bad] = 1
    weights = np.ones(len(y_tr), dtype=np.float32)
    weights[bad] = 0.0
    cfg = TrainConfig(epochs=6, batch_size=32, lr=3e-3, seed=0, class_weighting=False)
    arch = {"widths": [8, 16, 32], "embed_dim": 32}
    plain = train_classifier("image", X_tr, y_noisy, X_va, y_va, n_classes=2, config=cfg, arch=arch)
    weighted = train_classifier(
        "image", X_tr, y_noisy, X_va, y_va, n_classes=2, config=cfg, arch=arch, sample_weight=weights
    )
    recall0_plain = float(np.mean(plain.predict(X_va[y_va == 0]) == 0))
    recall0_weighted = float(np.mean(weighted.predict(X_va[y_va == 0]) == 0))
    assert recall0_weighted > 0.9
    assert recall0_weighted > recall0_plain + 0.2


def test_save_load_round_trip_with_weights_only(tmp_path, digits, digits_model):
    _, _, X_va, _ = digits
    model, _ = digits_model
    path = tmp_path / "m.pt"
    model.save(path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == 1
    assert set(raw) >= {"format", "modality", "n_classes", "arch", "state_dict", "history"}
    assert raw["modality"] == "image" and raw["n_classes"] == 10 and raw["arch"]["name"] == "image_cnn"
    loaded = TrainedModel.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X_va[:50]), model.predict_proba(X_va[:50]))
    assert loaded.history == model.history
    assert loaded.input_shape == (3, 32, 32)
    again = TrainedModel.from_bytes(model.to_bytes())
    np.testing.assert_array_equal(again.embed(X_va[:5]), model.embed(X_va[:5]))


def test_load_rejects_garbage_and_foreign_dicts(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(CorruptData):
        TrainedModel.load(bad)
    buf = io.BytesIO()
    torch.save({"format": 99}, buf)
    with pytest.raises(InvalidInput) as err:
        TrainedModel.load(buf.getvalue())
    assert err.value.code == "unsupported_model_format"


def test_mc_dropout_is_stochastic_but_reproducible(digits, digits_model):
    _, _, X_va, _ = digits
    model, _ = digits_model
    a = model.predict_proba_mc(X_va[:20], n_samples=4, random_state=0)
    b = model.predict_proba_mc(X_va[:20], n_samples=4, random_state=0)
    assert a.shape == (4, 20, 10)
    np.testing.assert_array_equal(a, b)
    assert a.std(axis=0).max() > 0
    # dropout switched off again afterwards
    np.testing.assert_array_equal(model.predict_proba(X_va[:5]), model.predict_proba(X_va[:5]))


def test_bad_inputs_raise_typed_errors(digits):
    X_tr, y_tr, _, _ = digits
    with pytest.raises(InvalidInput) as err:
        train_classifier("image", X_tr[:10, :1], y_tr[:10], None, None, n_classes=10)
    assert err.value.code == "bad_shape"
    with pytest.raises(InvalidInput) as err:
        train_classifier("video", X_tr[:10], y_tr[:10], None, None, n_classes=10)
    assert err.value.code == "unsupported_modality"
    with pytest.raises(InvalidInput) as err:
        train_classifier("image", X_tr[:10], np.full(10, 12), None, None, n_classes=10)
    assert err.value.code == "bad_labels"
    nan = X_tr[:10].copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(EmptyData):
        train_classifier("image", nan, y_tr[:10], None, None, n_classes=10)
    with pytest.raises(InvalidInput) as err:
        train_classifier("image", X_tr[:10], y_tr[:10], None, None, n_classes=10, sample_weight=-np.ones(10))
    assert err.value.code == "bad_weights"
    with pytest.raises(InvalidInput):
        TrainConfig(epochs=0)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput) as err:
            train_classifier("image", X_tr[:10], y_tr[:10], None, None, n_classes=10, config=TrainConfig(device="cuda"))
        assert err.value.code == "bad_device"


def test_audio_classifier_learns_sound_classes_and_takes_any_length():
    X_tr, y_tr = sound_logmels(12, seed=0)
    X_va, y_va = sound_logmels(6, seed=1)
    assert X_tr.shape == (36, 1, 64, 51)
    cfg = TrainConfig(epochs=6, batch_size=8, lr=3e-3, seed=0)
    model = train_classifier("audio", X_tr, y_tr, X_va, y_va, n_classes=3, config=cfg)
    assert float(np.mean(model.predict(X_va) == y_va)) >= 0.9
    assert model.input_shape == (1, 64, 51)
    long_clips, _ = sound_logmels(1, seed=2, duration=1.0)
    assert model.predict_proba(long_clips).shape == (3, 3)
    assert model.embed(long_clips).shape == (3, 128)


def test_pointcloud_classifier_learns_shapes():
    X_tr, y_tr = shape_clouds(20, 128, seed=0)
    X_va, y_va = shape_clouds(10, 128, seed=1)
    cfg = TrainConfig(epochs=6, batch_size=8, lr=3e-3, seed=0)
    model = train_classifier("pointcloud", X_tr, y_tr, X_va, y_va, n_classes=3, config=cfg)
    assert float(np.mean(model.predict(X_va) == y_va)) >= 0.9
    # trained with yaw augmentation: a rotated cloud about z keeps its class
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]], np.float32)
    assert float(np.mean(model.predict(X_va @ rot.T) == y_va)) >= 0.85
    assert model.embed(X_va[:4]).shape == (4, 128)


def test_segmenter_labels_parts_per_point(tmp_path):
    X_tr, Y_tr = lamps(40, 128, seed=0)
    X_va, Y_va = lamps(16, 128, seed=1)
    cfg = TrainConfig(epochs=8, batch_size=8, lr=3e-3, seed=0)
    model = train_segmenter(X_tr, Y_tr, X_va, Y_va, n_classes=3, config=cfg)
    probs = model.predict_proba(X_va)
    assert probs.shape == (16, 128, 3)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert float(np.mean(probs.argmax(-1) == Y_va)) >= 0.85
    assert model.history[-1]["val_acc"] is not None
    assert model.embed(X_va).shape == (16, 128)
    path = tmp_path / "seg.pt"
    model.save(path)
    again = TrainedModel.load(path)
    assert again.task == "segmentation"
    np.testing.assert_allclose(again.predict_proba(X_va[:2]), probs[:2], atol=1e-6)
    with pytest.raises(InvalidInput):
        train_segmenter(X_tr, Y_tr[:, :10], None, None, n_classes=3)


def test_pointcloud_augmentation_is_a_yaw_rotation_plus_small_jitter():
    X, _ = shape_clouds(2, 64, seed=0)
    out = _augment("pointcloud", X, np.random.default_rng(0))
    assert out.shape == X.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 2], X[..., 2], atol=0.05)  # z untouched but for jitter
    np.testing.assert_allclose(
        np.linalg.norm(out[..., :2], axis=-1), np.linalg.norm(X[..., :2], axis=-1), atol=0.08
    )
    assert np.abs(out[..., :2] - X[..., :2]).max() > 0.1  # actually rotated
