import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.selection import STRATEGIES, Selection, entropy, least_confidence, margin, select


def _blobs(sizes, dim=8, spread=0.3, seed=0):
    """Well separated Gaussian blobs with the given sizes; returns (X float32, blob id per row)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(len(sizes), dim))
    X = np.concatenate([c + spread * rng.normal(size=(s, dim)) for c, s in zip(centres, sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    return X.astype(np.float32), y


def _dirichlet_probs(n, c, seed=0, alpha=1.0):
    return np.random.default_rng(seed).dirichlet(np.full(c, alpha), size=n).astype(np.float32)


@pytest.fixture(scope="module")
def pool():
    X, _ = _blobs([40] * 10, seed=1)
    P = _dirichlet_probs(len(X), 4, seed=2)
    return X, P


MODEL_FREE = ["random", "kmeans", "auto"]
MODEL_BASED = ["least_confidence", "margin", "entropy"]


@pytest.mark.parametrize("strategy", MODEL_FREE + MODEL_BASED)
def test_budget_respected_no_duplicates_scores_ranked(pool, strategy):
    X, P = pool
    sel = select(strategy, budget=25, embeddings=X, probs=P, labeled_counts=np.array([5, 5, 5, 5]))
    assert isinstance(sel, Selection)
    assert len(sel.indices) == 25 == len(sel.scores)
    assert sel.indices.dtype == np.int64
    assert len(np.unique(sel.indices)) == 25
    assert sel.indices.min() >= 0 and sel.indices.max() < len(X)
    assert np.all(np.diff(sel.scores) <= 1e-7), "scores must not increase along the ranking"
    assert sel.strategy.split("/")[0] in STRATEGIES


@pytest.mark.parametrize("strategy", MODEL_FREE + MODEL_BASED)
def test_deterministic_with_random_state(pool, strategy):
    X, P = pool
    a = select(strategy, budget=12, embeddings=X, probs=P, random_state=3)
    b = select(strategy, budget=12, embeddings=X, probs=P, random_state=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_random_changes_with_seed_and_is_uniformish(pool):
    X, _ = pool
    a = select("random", budget=50, embeddings=X, random_state=0)
    b = select("random", budget=50, embeddings=X, random_state=1)
    assert set(a.indices) != set(b.indices)
    counts = np.zeros(len(X))
    for seed in range(40):
        counts[select("random", budget=50, embeddings=X, random_state=seed).indices] += 1
    # each sample is picked with probability 50/400 = 0.125: 5 times in 40 draws on average
    assert counts.mean() == pytest.approx(5.0)
    assert counts.max() < 16


def test_budget_larger_than_pool_and_zero_budget(pool):
    X, P = pool
    sel = select("margin", budget=10_000, embeddings=X[:30], probs=P[:30])
    assert sorted(sel.indices.tolist()) == list(range(30))
    assert len(select("auto", budget=0, embeddings=X).indices) == 0
    assert len(select("auto", budget=5, embeddings=X[:0]).indices) == 0


def test_uncertainty_measures_values():
    P = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]], dtype=np.float32)
    np.testing.assert_allclose(least_confidence(P), [0.5, 0.0, 0.4, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(margin(P), [1.0, 0.0, 0.7, 1.0], atol=1e-6)
    np.testing.assert_allclose(entropy(P), [np.log(2), 0.0, -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1)), np.log(3)], atol=1e-6)


def test_uncertainty_measures_agree_with_modal():
    """Our array functions compute what modAL's classifier_* functions compute on the same probabilities."""
    from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty

    P = _dirichlet_probs(200, 5, seed=7)

    class Precomputed:
        def predict_proba(self, X):
            return P[np.asarray(X, dtype=int).ravel()]

    X = np.arange(len(P)).reshape(-1, 1)
    np.testing.assert_allclose(least_confidence(P), classifier_uncertainty(Precomputed(), X), atol=1e-6)
    np.testing.assert_allclose(margin(P), 1.0 - classifier_margin(Precomputed(), X), atol=1e-6)
    np.testing.assert_allclose(entropy(P), classifier_entropy(Precomputed(), X), atol=1e-5)


@pytest.mark.parametrize("strategy", MODEL_BASED)
def test_uncertainty_strategies_pick_uncertain_samples(strategy):
    rng = np.random.default_rng(0)
    n, c = 300, 4
    X = rng.normal(size=(n, 8)).astype(np.float32)
    P = np.full((n, c), 0.01, np.float32)
    P[:, 0] = 0.97  # confident
    uncertain = rng.choice(n, size=15, replace=False)
    P[uncertain] = rng.dirichlet(np.full(c, 20.0), size=15)  # near uniform
    sel = select(strategy, budget=15, embeddings=X, probs=P)
    assert set(sel.indices.tolist()) == set(uncertain.tolist())
    # rank 0 is the single most uncertain one under that measure
    fn = {"least_confidence": least_confidence, "margin": margin, "entropy": entropy}[strategy]
    assert sel.indices[0] == np.argmax(fn(P))


@pytest.mark.parametrize("strategy", MODEL_BASED)
def test_uncertainty_without_model_raises_model_required(pool, strategy):
    X, _ = pool
    with pytest.raises(InvalidInput) as exc:
        select(strategy, budget=5, embeddings=X)
    assert exc.value.code == "model_required"


def test_invalid_inputs(pool):
    X, P = pool
    with pytest.raises(InvalidInput) as exc:
        select("nope", budget=5, embeddings=X)
    assert exc.value.code == "unknown_strategy"
    with pytest.raises(InvalidInput):
        select("margin", budget=5, embeddings=X, probs=P[:10])
    with pytest.raises(InvalidInput):
        select("random", budget=-1, embeddings=X)
    with pytest.raises(InvalidInput):
        select("random", budget=5, embeddings=X[0])
    with pytest.raises(InvalidInput):
        select("auto", budget=5, embeddings=X, probs=P, labeled_counts=[1, 2])
    with pytest.raises(InvalidInput):
        select("random", budget=5, embeddings=X, prefer=np.ones(3, bool))
    bad = X.copy()
    bad[3, 0] = np.nan
    with pytest.raises(InvalidInput):
        select("auto", budget=5, embeddings=bad)


@pytest.mark.parametrize("strategy", MODEL_FREE + MODEL_BASED)
def test_prefer_taken_first_and_ranked_by_strategy(pool, strategy):
    X, P = pool
    prefer = np.zeros(len(X), bool)
    prefer[np.arange(3, len(X), 37)] = True  # 11 preferred samples
    n_pref = int(prefer.sum())
    sel = select(strategy, budget=20, embeddings=X, probs=P, prefer=prefer, labeled_counts=[9, 9, 9, 9])
    assert len(sel.indices) == 20
    assert prefer[sel.indices[:n_pref]].all()
    assert not prefer[sel.indices[n_pref:]].any()
    assert np.all(np.diff(sel.scores[:n_pref]) <= 1e-7)
    assert np.all(np.diff(sel.scores[n_pref:]) <= 1e-7)


def test_prefer_larger_than_budget_takes_best_preferred():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 4)).astype(np.float32)
    P = _dirichlet_probs(100, 3, seed=1)
    prefer = np.zeros(100, bool)
    prefer[:40] = True
    sel = select("margin", budget=10, embeddings=X, probs=P, prefer=prefer)
    assert prefer[sel.indices].all()
    top = np.argsort(-margin(P[:40]), kind="stable")[:10]
    assert set(sel.indices.tolist()) == set(top.tolist())


def test_auto_phases():
    X, _ = _blobs([30] * 6, seed=2)
    P = _dirichlet_probs(len(X), 3, seed=3)
    assert select("auto", budget=6, embeddings=X).strategy == "auto/cold_start_kmeans"
    # a model exists but one class still has fewer than 3 labels: stay in cold start
    sel = select("auto", budget=6, embeddings=X, probs=P, labeled_counts=[5, 2, 7])
    assert sel.strategy == "auto/cold_start_kmeans"
    sel = select("auto", budget=6, embeddings=X, probs=P, labeled_counts=[3, 3, 3])
    assert sel.strategy == "auto/margin_diverse"


def _clusters_covered(sel_idx, y):
    return len(np.unique(y[sel_idx]))


def test_cold_start_covers_clusters_better_than_random():
    # 12 clusters, very unequal sizes: random sampling tends to miss the small ones
    sizes = [400, 300, 200, 100, 60, 40, 30, 20, 15, 12, 10, 8]
    X, y = _blobs(sizes, dim=16, seed=4)
    budget = 12
    cold = select("auto", budget=budget, embeddings=X, random_state=0)
    assert cold.strategy == "auto/cold_start_kmeans"
    cov_cold = _clusters_covered(cold.indices, y)
    cov_rand = np.mean([_clusters_covered(select("random", budget=budget, embeddings=X, random_state=s).indices, y) for s in range(20)])
    assert cov_cold >= 10
    assert cov_cold >= cov_rand + 3


def test_margin_diverse_spreads_over_clusters():
    # the most uncertain samples all sit in one cluster; plain margin piles into it, auto spreads out
    sizes = [60] * 8
    X, y = _blobs(sizes, dim=8, seed=5)
    rng = np.random.default_rng(5)
    P = np.zeros((len(X), 2), np.float32)
    p0 = np.where(y == 0, rng.uniform(0.49, 0.55, len(X)), rng.uniform(0.55, 0.70, len(X)))
    P[:, 0] = p0
    P[:, 1] = 1 - p0
    plain = select("margin", budget=8, embeddings=X, probs=P)
    assert _clusters_covered(plain.indices, y) == 1
    diverse = select("auto", budget=8, embeddings=X, probs=P, labeled_counts=[10, 10], diversity_factor=40)
    assert diverse.strategy == "auto/margin_diverse"
    assert _clusters_covered(diverse.indices, y) >= 6
    # and every pick is still among the more uncertain half of the pool
    assert np.all(margin(P)[diverse.indices] >= np.median(margin(P)))


def test_to_dict_is_json_ready(pool):
    import json

    X, P = pool
    d = select("margin", budget=3, embeddings=X, probs=P).to_dict()
    assert json.loads(json.dumps(d))["strategy"] == "margin"
    assert len(d["indices"]) == 3
