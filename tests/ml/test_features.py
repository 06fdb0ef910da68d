import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.features import EMBEDDING_DIM, label_free_embeddings


def _kmeans_centre_pick(E, k, seed):
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(E)
    d = ((E[:, None, :] - km.cluster_centers_[None]) ** 2).sum(-1)
    return np.unique(d.argmin(axis=0))


def _lr_accuracy(E, y, idx):
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y[idx])) < 2:
        return float(np.mean(y == y[idx][0]))
    clf = LogisticRegression(C=100, max_iter=3000).fit(E[idx], y[idx])
    return float((clf.predict(E) == y).mean())


def _cold_start_margin(E, y, *, budget=20, seeds=(0, 1, 2)):
    rand, km = [], []
    for s in seeds:
        rng = np.random.default_rng(s)
        rand.append(_lr_accuracy(E, y, rng.choice(len(y), budget, replace=False)))
        km.append(_lr_accuracy(E, y, _kmeans_centre_pick(E, budget, s)))
    return float(np.mean(km)), float(np.mean(rand))


@pytest.fixture(scope="module")
def digits_X():
    from fixtures.digits import digits_pngs
    from ml.modalities.image import load_images

    items = digits_pngs()
    return load_images([b for b, _ in items]), np.array([y for _, y in items])


def _check_contract(modality, X):
    E = label_free_embeddings(modality, X)
    assert E.shape == (len(X), EMBEDDING_DIM) and E.dtype == np.float32
    assert np.allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    # stateless and per-sample: a subset, a reordering or a single row give the same rows
    sub = label_free_embeddings(modality, X[[3, 1]])
    assert np.allclose(sub, E[[3, 1]], atol=1e-6)
    assert np.allclose(label_free_embeddings(modality, X[5:6])[0], E[5], atol=1e-6)
    assert label_free_embeddings(modality, X[:0]).shape == (0, EMBEDDING_DIM)
    return E


def test_image_embeddings_cluster_by_class(digits_X):
    X, y = digits_X
    E = label_free_embeddings("image", X[:600])
    yy = y[:600]
    S = E @ E.T
    np.fill_diagonal(S, -np.inf)
    nn = S.argmax(axis=1)
    assert (yy[nn] == yy).mean() > 0.9


def test_image_brightness_robust(digits_X):
    X, _ = digits_X
    E = label_free_embeddings("image", X[:50])
    E2 = label_free_embeddings("image", np.clip(X[:50] * 0.8 + 0.1, 0, 1))
    # a global brightness/contrast change moves an embedding less than a different digit does
    self_sim = (E * E2).sum(1)
    other_sim = (E * np.roll(E, 1, axis=0)).sum(1)
    assert self_sim.mean() > 0.95 and self_sim.mean() > other_sim.mean() + 0.1


@pytest.mark.parametrize(
    "modality, shape",
    [("image", (2, 3, 4, 4)), ("image", (2, 32, 32)), ("audio", (2, 1, 8, 4)), ("pointcloud", (2, 100, 2))],
)
def test_bad_shapes(modality, shape):
    with pytest.raises(InvalidInput):
        label_free_embeddings(modality, np.zeros(shape, dtype=np.float32))


def test_unknown_modality_and_dtype():
    with pytest.raises(InvalidInput) as ei:
        label_free_embeddings("video", np.zeros((1, 3, 32, 32)))
    assert "image" in ei.value.details["allowed"]
    with pytest.raises(InvalidInput):
        label_free_embeddings("image", np.array([["a"]]))


@pytest.fixture(scope="module")
def speech_X():
    from fixtures.speech import spoken_digits
    from ml.modalities.audio import load_audio_batch

    items = spoken_digits(20, seed=0)
    return load_audio_batch([b for b, _ in items]), np.array([y for _, y in items])


def test_audio_batch_without_channel_axis(speech_X):
    X, _ = speech_X
    # a (N, 64, T) batch without the channel axis is accepted too
    assert np.allclose(label_free_embeddings("audio", X[:3, 0]), label_free_embeddings("audio", X[:3]))


def test_audio_level_invariant(speech_X):
    X, _ = speech_X
    from ml.modalities.audio import LOGMEL_DB_SCALE

    louder = X[:10] + 12.0 / LOGMEL_DB_SCALE  # +12 dB everywhere
    assert np.allclose(label_free_embeddings("audio", louder), label_free_embeddings("audio", X[:10]), atol=1e-4)


def test_audio_channel_colouring_invariant(speech_X):
    """A fixed spectral tilt (a different microphone or channel, here -6 dB at the lowest band to
    +6 dB at the highest) leaves the embeddings of nearly all clips unchanged: cepstral mean
    normalisation removes it from the features and the activity detector measures above each band's
    own noise floor, so the cropped region does not move either."""
    from ml.modalities.audio import LOGMEL_DB_SCALE

    X, _ = speech_X
    m = X.shape[2]
    tilt = (np.linspace(-6.0, 6.0, m) / LOGMEL_DB_SCALE).astype(np.float32)[None, None, :, None]
    E = label_free_embeddings("audio", X[:60])
    E2 = label_free_embeddings("audio", X[:60] + tilt)
    self_sim = (E * E2).sum(1)
    other_sim = (E * np.roll(E, 1, axis=0)).sum(1)
    assert np.percentile(self_sim, 5) > 0.97 and self_sim.mean() > 0.99, np.sort(self_sim)[:5]
    assert other_sim.mean() < 0.5


@pytest.fixture(scope="module")
def shapes_X():
    from fixtures.shapes import shapes
    from ml.modalities.pointcloud import load_points_batch

    items = shapes(20, seed=0, n_points=1024)
    return load_points_batch([b for b, _ in items], n_points=512), np.array([y for _, y in items])


def test_pointcloud_rotation_scale_order_invariant(shapes_X):
    from ml.modalities.pointcloud import augment_points

    X, _ = shapes_X
    E = label_free_embeddings("pointcloud", X[:16])
    moved = augment_points(X[:16], random_state=0, rotate="so3", scale=None, jitter_std=0.0) * 3.0 + 5.0
    E2 = label_free_embeddings("pointcloud", moved)
    self_sim = (E * E2).sum(1)
    assert self_sim.min() > 0.9
    # ... and the cosine distance to itself is tiny next to the distance to other samples
    other = (E @ E.T)[~np.eye(16, dtype=bool)].mean()
    assert (1 - self_sim).mean() < 0.2 * (1 - other)


@pytest.mark.parametrize("modality, data, at, value", [("audio", "speech_X", (0, 0, 0, 0), np.nan),
                                                       ("pointcloud", "shapes_X", (1, 3, 2), np.inf)])
def test_non_finite_rejected(request, modality, data, at, value):
    X, _ = request.getfixturevalue(data)
    bad = X[:2].copy()
    bad[at] = value
    with pytest.raises(InvalidInput):
        label_free_embeddings(modality, bad)


# measured on this machine (k-means centres vs random picks):
# - image: ~0.90 vs ~0.69 (20 labels, 10 classes)
# - audio: ~0.95 vs ~0.76 (20 labels, 10 words, 200 clips; features v1, without cepstral mean normalisation: ~0.92)
# - pointcloud: ~0.95 vs ~0.75 (16 labels, 8 shapes; features v1, without oriented-normal pair histograms: ~0.90)
@pytest.mark.parametrize(
    "modality, data, picks, min_km, min_margin",
    [
        ("image", "digits_X", {}, 0.8, 0.10),
        ("audio", "speech_X", {}, 0.9, 0.12),
        ("pointcloud", "shapes_X", {"budget": 16, "seeds": (0, 1, 2, 3, 4)}, 0.9, 0.1),
    ],
)
def test_cold_start_beats_random(request, modality, data, picks, min_km, min_margin):
    X, y = request.getfixturevalue(data)
    E = label_free_embeddings(modality, X)
    km, rand = _cold_start_margin(E, y, **picks)
    assert km > min_km, (km, rand)
    assert km - rand > min_margin, (km, rand)


@pytest.mark.parametrize("modality, data, n", [("image", "digits_X", 20), ("audio", "speech_X", 12),
                                               ("pointcloud", "shapes_X", 10)])
def test_contract(request, modality, data, n):
    X, _ = request.getfixturevalue(data)
    _check_contract(modality, X[:n])
