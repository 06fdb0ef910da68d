import subprocess
import sys

import numpy as np
import pytest

from ml.errors import CorruptData, InvalidInput
from ml.cluster import kcenter_greedy, kmeans, kmedoids_refine
from ml.index import EmbeddingIndex, exact_search, measure_recall


def _clustered(n, dim=16, n_centres=40, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_centres, dim))
    lab = rng.integers(0, n_centres, size=n)
    return (centres[lab] + spread * rng.normal(size=(n, dim))).astype(np.float32), centres, lab


def _brute(X, Q, k, cosine=False):
    if cosine:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        d = 1.0 - Q @ X.T
    else:
        d = np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


def test_heavy_libraries_are_imported_lazily():
    code = (
        "import sys, ml.cluster, ml.index, ml.selection, ml.slices, ml.evaluation\n"
        "for m in ('ml.quality', 'ml.drift'):\n"
        "    try:\n"
        "        __import__(m)\n"
        "    except ModuleNotFoundError:\n"
        "        pass\n"
        "heavy = [m for m in ('faiss', 'torch', 'cleanlab', 'modAL', 'matplotlib', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_flat_search_is_exact_with_our_ids(metric):
    X, _, _ = _clustered(500, seed=1)
    Q, _, _ = _clustered(20, seed=2)
    ids = np.arange(500, dtype=np.int64) * 7 + 1000
    index = EmbeddingIndex(16, metric=metric).add(ids, X)
    assert len(index) == 500 and index.structure_ == "flat"
    found, dist = index.search(Q, 5)
    pos, dref = _brute(X.astype(np.float64), Q.astype(np.float64), 5, cosine=metric == "cosine")
    np.testing.assert_array_equal(found, ids[pos])
    np.testing.assert_allclose(dist, dref, rtol=1e-4, atol=1e-4)
    assert measure_recall(index, Q, k=5) == 1.0


def test_upsert_remove_and_padding():
    X, _, _ = _clustered(50, seed=3)
    index = EmbeddingIndex(16).add(np.arange(50), X)
    # re-adding id 7 replaces its vector
    index.add(np.array([7]), X[3:4] + 0.001)
    assert len(index) == 50
    found, _ = index.search(X[3], 2)
    assert set(found[0].tolist()) == {3, 7}
    assert index.remove(np.array([3, 7, 999])) == 2
    assert len(index) == 48
    found, _ = index.search(X[3], 48)
    assert 3 not in found and 7 not in found
    # fewer stored than k: padded with -1 / inf
    small = EmbeddingIndex(16).add(np.array([5, 6]), X[:2])
    found, dist = small.search(X[:1], 4)
    assert found[0, :2].tolist() == [5, 6] and found[0, 2:].tolist() == [-1, -1]
    assert np.isinf(dist[0, 2:]).all()
    empty_ids, _ = EmbeddingIndex(16).search(X[:3], 2)
    assert (empty_ids == -1).all()


def test_auto_switches_to_ivf_and_reaches_recall():
    data, _, _ = _clustered(6200, seed=4)
    X, Q = data[:6000], data[6000:]  # held-out queries from the same distribution
    index = EmbeddingIndex(16, exact_threshold=4000, kind="auto")
    index.add(np.arange(3000), X[:3000])
    assert index.structure_ == "flat"
    index.add(np.arange(3000, 6000), X[3000:])
    assert index.structure_ == "ivf"
    assert len(index) == 6000
    assert index.tuned_recall_ >= 0.95 and index.nprobe_ >= 1
    assert measure_recall(index, Q, k=10) >= 0.93
    # tuning on fresh queries instead of leave-one-out
    rec = index.tune(queries=Q[:100], target_recall=0.99)
    assert rec >= 0.99 and index.nprobe_ == index._index.nprobe
    assert measure_recall(index, Q[:100], k=10) == pytest.approx(rec)
    # growing far past the size the lists were trained for asks for a rebuild
    assert not index.needs_rebuild
    more, _, _ = _clustered(20000, seed=4)
    index.add(np.arange(10_000, 30_000), more)
    assert index.needs_rebuild
    nlist_before = index._index.nlist
    index.rebuild()
    assert not index.needs_rebuild and len(index) == 26000 and index._index.nlist > nlist_before
    assert index.tuned_recall_ >= 0.95
    # removal works on IVF too
    index.remove(np.arange(100))
    found, _ = index.search(X[:100], 10)
    assert not np.isin(found, np.arange(100)).any()


def test_hnsw_with_tombstones():
    X, _, _ = _clustered(800, seed=6)
    index = EmbeddingIndex(16, kind="hnsw", hnsw_m=16).add(np.arange(800), X)
    assert index.structure_ == "hnsw" and index.tuned_recall_ >= 0.95
    assert index.remove([0, 1, 2]) == 3
    assert len(index) == 797
    found, _ = index.search(X[:3], 5)
    assert not np.isin(found, [0, 1, 2]).any() and (found >= 0).all()
    with pytest.raises(InvalidInput):
        index.add(np.array([5]), X[:1])


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_roundtrip(tmp_path, kind):
    # cosine metric throughout: also covers IVF/HNSW on inner product
    X, _, _ = _clustered(1200, seed=7)
    index = EmbeddingIndex(16, kind=kind, metric="cosine").add(np.arange(1200) + 10, X)
    index.remove([10, 11])
    path = tmp_path / "index.bin"
    index.save(path)
    loaded = EmbeddingIndex.load(path)
    assert len(loaded) == len(index) == 1198
    assert loaded.structure_ == kind and loaded.metric == "cosine"
    a = index.search(X[:20], 5)
    b = loaded.search(X[:20], 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])
    assert measure_recall(loaded, X[:50], k=5) >= 0.9
    assert (a[1] >= -1e-5).all() and (a[1][np.isfinite(a[1])] <= 2 + 1e-5).all()  # cosine distances


def test_load_rejects_garbage(tmp_path):
    p = tmp_path / "bad.bin"
    p.write_bytes(b"not an index")
    with pytest.raises(CorruptData):
        EmbeddingIndex.load(p)


def test_invalid_inputs():
    index = EmbeddingIndex(4)
    with pytest.raises(InvalidInput):
        index.add(np.arange(2), np.zeros((2, 5), np.float32))
    with pytest.raises(InvalidInput):
        index.add(np.arange(3), np.zeros((2, 4), np.float32))
    with pytest.raises(InvalidInput):
        index.add(np.array([1, 1]), np.zeros((2, 4), np.float32))
    with pytest.raises(InvalidInput):
        index.add(np.array([-1]), np.zeros((1, 4), np.float32))
    with pytest.raises(InvalidInput):
        index.add(np.array([1]), np.full((1, 4), np.nan, np.float32))
    with pytest.raises(InvalidInput):
        EmbeddingIndex(4, metric="manhattan")
    with pytest.raises(InvalidInput):
        index.search(np.zeros((1, 4), np.float32), 0)


def test_exact_search_matches_brute_force():
    X, _, _ = _clustered(300, seed=8)
    pos, dist = exact_search(X, X[:5], 3)
    ref, dref = _brute(X.astype(np.float64), X[:5].astype(np.float64), 3)
    np.testing.assert_array_equal(pos, ref)
    np.testing.assert_allclose(dist, dref, atol=1e-3)


def test_kmeans_recovers_blobs_and_is_deterministic():
    from sklearn.metrics import adjusted_rand_score

    X, centres, lab = _clustered(2000, n_centres=8, seed=9, spread=0.3)
    c1, l1, d1 = kmeans(X, 8, random_state=0)
    c2, l2, _ = kmeans(X, 8, random_state=0)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(l1, l2)
    assert adjusted_rand_score(lab, l1) > 0.99
    # every true centre has a fitted centroid close by
    gap = np.sqrt(((centres[:, None, :] - c1[None]) ** 2).sum(-1)).min(1)
    assert gap.max() < 0.2
    assert d1.shape == (2000,) and (d1 >= 0).all()
    # subsampled fit, everything assigned
    c3, l3, _ = kmeans(X, 8, random_state=0, max_train=400)
    assert l3.shape == (2000,) and adjusted_rand_score(lab, l3) > 0.95
    # the faiss backend agrees on well separated blobs
    _, l5, _ = kmeans(X, 8, random_state=0, backend="faiss")
    assert adjusted_rand_score(lab, l5) > 0.99
    # k larger than n is clipped
    c4, l4, _ = kmeans(X[:5], 10)
    assert len(c4) == 5 and sorted(l4.tolist()) == [0, 1, 2, 3, 4]


def test_kmeans_restarts_keep_the_lowest_inertia():
    # overlapping blobs and k-means++ with k = 20: single runs land in different local optima
    X, _, _ = _clustered(1500, n_centres=30, seed=12, spread=0.8)
    inertia = {}
    for r in range(6):
        _, _, d = kmeans(X, 20, random_state=r)
        inertia[r] = float(d.sum())
    assert len(set(round(v, 3) for v in inertia.values())) > 1  # restarts do have something to choose from
    c1, l1, d1 = kmeans(X, 20, random_state=0, n_init=1)
    c0, l0, _ = kmeans(X, 20, random_state=0)
    np.testing.assert_array_equal(c1, c0)  # n_init=1 is exactly the single run
    _, _, d10 = kmeans(X, 20, random_state=0, n_init=10)
    _, _, d10b = kmeans(X, 20, random_state=0, n_init=10)
    assert float(d10.sum()) <= float(d1.sum()) + 1e-3
    assert float(d10.sum()) == float(d10b.sum())  # deterministic
    with pytest.raises(InvalidInput):
        kmeans(X, 5, n_init=0)


def _medoid_cost(X, medoids):
    d2 = ((X[:, None, :] - X[np.asarray(medoids)][None, :, :]) ** 2).sum(axis=2)
    return float(d2.min(axis=1).sum())


def test_kmedoids_refine_reaches_a_swap_local_optimum():
    X, _, _ = _clustered(120, dim=8, n_centres=6, seed=3, spread=1.5)
    start = np.arange(5)  # a poor start: the first five rows
    refined, swaps = kmedoids_refine(X, start, chunk=16)
    assert swaps > 0 and len(np.unique(refined)) == 5
    before, after = _medoid_cost(X, start), _medoid_cost(X, refined)
    assert after < before
    # no single swap (one medoid out, any other row in) lowers the cost any further
    for a in range(5):
        for j in np.setdiff1d(np.arange(len(X)), refined):
            trial = refined.copy()
            trial[a] = j
            assert _medoid_cost(X, trial) >= after - 1e-3 * abs(after)
    again, _ = kmedoids_refine(X, start, chunk=16)
    np.testing.assert_array_equal(refined, again)  # deterministic


def test_kmedoids_refine_improves_kmeans_picks_and_respects_candidates():
    X, _, _ = _clustered(600, dim=16, n_centres=30, seed=12, spread=0.8)
    _, lab, d = kmeans(X, 20, random_state=0)
    picks = np.array([np.flatnonzero(lab == c)[np.argmin(d[lab == c])] for c in range(20)])
    refined, swaps = kmedoids_refine(X, picks)
    assert swaps > 0 and _medoid_cost(X, refined) < _medoid_cost(X, picks)
    kept = np.isin(refined, picks)
    assert kept.sum() == 20 - np.count_nonzero(refined != picks)  # swapped-in rows take the replaced slots
    cand = np.arange(300)
    only, _ = kmedoids_refine(X, picks, candidates=cand)
    assert np.all(np.isin(only, cand) | (only == picks))
    same, none = kmedoids_refine(X[:5], np.arange(5))  # k >= n: nothing to swap
    assert none == 0 and same.tolist() == [0, 1, 2, 3, 4]


def test_kcenter_greedy_covers_and_respects_already_selected():
    X, _, lab = _clustered(1000, n_centres=10, seed=10, spread=0.2)
    picks, dists = kcenter_greedy(X, 10)
    assert len(np.unique(lab[picks])) == 10  # one per blob
    assert np.all(np.diff(dists) <= 1e-5)
    # blobs already labeled are not picked again while unlabeled blobs remain
    labeled = X[np.isin(lab, [0, 1, 2, 3, 4])]
    picks2, _ = kcenter_greedy(X, 5, labeled)
    assert set(lab[picks2].tolist()) == {5, 6, 7, 8, 9}
    cand = np.flatnonzero(lab == 3)
    picks3, _ = kcenter_greedy(X, 4, candidates=cand)
    assert np.isin(picks3, cand).all() and len(np.unique(picks3)) == 4
