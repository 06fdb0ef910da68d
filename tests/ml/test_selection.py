import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.selection import (
    MODEL_FREE_STRATEGIES,
    STRATEGIES,
    Selection,
    bald,
    entropy,
    least_confidence,
    margin,
    select,
    slice_mask,
)


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


MODEL_FREE = list(MODEL_FREE_STRATEGIES)
MODEL_BASED = [s for s in STRATEGIES if s not in MODEL_FREE_STRATEGIES]
UNCERTAINTY = ["least_confidence", "margin", "entropy"]


def _mc_for(P, seed=0, T=6):
    """MC-dropout-like samples around P: (T, N, C)."""
    rng = np.random.default_rng(seed)
    mc = P[None] * rng.uniform(0.5, 1.5, size=(T,) + P.shape)
    return (mc / mc.sum(axis=2, keepdims=True)).astype(np.float32)


def _kw(strategy, P):
    return {"mc_probs": _mc_for(P)} if strategy == "bald" else {}


@pytest.mark.parametrize("strategy", MODEL_FREE + MODEL_BASED)
def test_budget_respected_no_duplicates_scores_ranked(pool, strategy):
    X, P = pool
    sel = select(strategy, budget=25, embeddings=X, probs=P, labeled_counts=np.array([5, 5, 5, 5]), **_kw(strategy, P))
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
    a = select(strategy, budget=12, embeddings=X, probs=P, random_state=3, **_kw(strategy, P))
    b = select(strategy, budget=12, embeddings=X, probs=P, random_state=3, **_kw(strategy, P))
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


@pytest.mark.parametrize("strategy", UNCERTAINTY)
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
    with pytest.raises(InvalidInput) as exc:
        select("margin", budget=5, embeddings=X, probs=P * 3)  # logits, not probabilities
    assert exc.value.code == "invalid_probs"
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
    sel = select(strategy, budget=20, embeddings=X, probs=P, prefer=prefer, labeled_counts=[9, 9, 9, 9], **_kw(strategy, P))
    assert len(sel.indices) == 20
    assert prefer[sel.indices[:n_pref]].all()
    assert not prefer[sel.indices[n_pref:]].any()
    assert np.all(np.diff(sel.scores[:n_pref]) <= 1e-7)
    assert np.all(np.diff(sel.scores[n_pref:]) <= 1e-7)


def _first_40_preferred(seed):
    """100 random 4-d embeddings, Dirichlet probabilities over 3 classes, and the first 40 samples preferred."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(100, 4)).astype(np.float32)
    P = _dirichlet_probs(100, 3, seed=seed)
    prefer = np.zeros(100, bool)
    prefer[:40] = True
    return X, P, prefer


def test_prefer_larger_than_budget_takes_best_preferred():
    X, P, prefer = _first_40_preferred(1)
    sel = select("margin", budget=10, embeddings=X, probs=P, prefer=prefer)
    assert prefer[sel.indices].all()
    top = np.argsort(-margin(P[:40]), kind="stable")[:10]
    assert set(sel.indices.tolist()) == set(top.tolist())


def test_quotas_come_before_preference():
    # 40 preferred samples, none of them at night: the night quota is still met, the rest is preferred
    X, P, prefer = _first_40_preferred(3)
    night = np.zeros(100, bool)
    night[60:80] = True
    sel = select("margin", budget=10, embeddings=X, probs=P, prefer=prefer, slices={"night": night},
                 slice_quotas={"night": 4})
    picked = sel.indices
    assert night[picked].sum() == 4 and prefer[picked].sum() == 6
    assert prefer[picked[:6]].all() and not prefer[picked[6:]].any()  # still listed preferred-first
    assert sel.info["constraints"]["slice:night"]["shortfall"] == 0 and sel.info["preferred"] == 6
    # the quota's picks are the night samples the strategy ranks highest; the preferred fill is by margin too
    assert set(picked[6:].tolist()) == set((60 + np.argsort(-margin(P[60:80]), kind="stable")[:4]).tolist())
    assert set(picked[:6].tolist()) == set(np.argsort(-margin(P[:40]), kind="stable")[:6].tolist())


def test_auto_phases():
    X, _ = _blobs([30] * 6, seed=2)
    P = _dirichlet_probs(len(X), 3, seed=3)
    assert select("auto", budget=6, embeddings=X).strategy == "auto/cold_start_kmeans"
    # a model exists but one class still has fewer than 3 labels: stay in cold start
    sel = select("auto", budget=6, embeddings=X, probs=P, labeled_counts=[5, 2, 7])
    assert sel.strategy == "auto/cold_start_kmeans"
    sel = select("auto", budget=6, embeddings=X, probs=P, labeled_counts=[3, 3, 3])
    assert sel.strategy == "auto/margin_stratified"
    # a learner's uncertainty instead of class probabilities (boxes, regions, ...): margin with batch diversity
    sel = select("auto", budget=6, embeddings=X, uncertainty=margin(P), labeled_counts=[3, 3, 3])
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
    diverse = select("auto", budget=8, embeddings=X, uncertainty=margin(P), labeled_counts=[10, 10],
                     diversity_factor=40)
    assert diverse.strategy == "auto/margin_diverse"
    assert _clusters_covered(diverse.indices, y) >= 6
    # and every pick is still among the more uncertain half of the pool
    assert np.all(margin(P)[diverse.indices] >= np.median(margin(P)))


def test_margin_stratified_follows_the_pool_and_takes_the_uncertain_in_each_stratum():
    # unequal clusters; the most uncertain samples all sit in the smallest one. auto (with probabilities) gives
    # each cluster a share of the batch in proportion to its size and takes its most uncertain members
    sizes = [200, 100, 50, 50]
    X, y = _blobs(sizes, dim=8, seed=6)
    rng = np.random.default_rng(6)
    p0 = np.where(y == 3, rng.uniform(0.49, 0.52, len(X)), rng.uniform(0.55, 0.95, len(X)))
    P = np.stack([p0, 1 - p0], axis=1).astype(np.float32)
    sel = select("auto", budget=8, embeddings=X, probs=P, labeled_counts=[10, 10])
    assert sel.strategy == "auto/margin_stratified" and len(sel.indices) == 8
    assert np.bincount(y[sel.indices], minlength=4).tolist() == [4, 2, 1, 1]  # 200:100:50:50 of 8
    u = margin(P)
    for c in range(4):  # inside each cluster (k-means splits the big ones), uncertain members
        members = np.flatnonzero(y == c)
        got = sel.indices[y[sel.indices] == c]
        assert np.all(u[got] >= np.median(u[members]))
        if c >= 2:  # a small cluster is one stratum: its single pick is its most uncertain member
            assert got.tolist() == [int(members[np.argmax(u[members])])]
    assert np.all(np.diff(sel.scores) <= 0)  # ranked by uncertainty


def test_to_dict_is_json_ready(pool):
    import json

    X, P = pool
    d = select("margin", budget=3, embeddings=X, probs=P).to_dict()
    assert json.loads(json.dumps(d))["strategy"] == "margin"
    assert len(d["indices"]) == 3


# --------------------------------------------------------------------------- more strategies


def test_stratified_random_is_proportional():
    X, _ = _blobs([50, 30, 20], seed=6)
    strata = np.array(["day"] * 70 + ["night"] * 20 + ["dusk"] * 10)
    sel = select("stratified_random", budget=10, embeddings=X, strata=strata, random_state=1)
    assert sel.strategy == "stratified_random/strata"
    got = {v: int(np.sum(strata[sel.indices] == v)) for v in ("day", "night", "dusk")}
    assert got == {"day": 7, "night": 2, "dusk": 1}
    # without strata: by predicted class when a model exists, by k-means cluster otherwise
    P = np.eye(3, dtype=np.float32)[np.repeat([0, 1, 2], [50, 30, 20])] * 0.8 + 0.2 / 3
    assert select("stratified_random", budget=10, embeddings=X, probs=P).strategy == "stratified_random/predicted_class"
    sel = select("stratified_random", budget=10, embeddings=X)
    assert sel.strategy == "stratified_random/kmeans" and len(sel.indices) == 10


def test_cluster_margin_round_robin_over_clusters():
    sizes = [60] * 8
    X, y = _blobs(sizes, dim=8, seed=5)
    rng = np.random.default_rng(5)
    p0 = np.where(y == 0, rng.uniform(0.49, 0.55, len(X)), rng.uniform(0.55, 0.70, len(X)))
    P = np.stack([p0, 1 - p0], axis=1).astype(np.float32)
    sel = select("cluster_margin", budget=8, embeddings=X, probs=P, n_clusters=8, diversity_factor=40)
    assert sel.strategy == "cluster_margin"
    assert _clusters_covered(sel.indices, y) == 8
    # within each cluster it took the most uncertain candidate
    u = margin(P)
    for i in sel.indices:
        assert u[i] == pytest.approx(u[y == y[i]].max())


def test_kcenter_goes_to_uncovered_regions():
    X, y = _blobs([30] * 8, seed=7)
    labeled = X[y < 4][::3]  # blobs 0..3 already labeled
    sel = select("kcenter", budget=4, embeddings=X, labeled_embeddings=labeled)
    assert set(y[sel.indices].tolist()) == {4, 5, 6, 7}
    assert np.all(np.diff(sel.scores) <= 1e-6)
    # preferred picks count as covered for the rest of the batch
    prefer = np.zeros(len(X), bool)
    prefer[np.flatnonzero(y == 4)[:2]] = True
    sel = select("kcenter", budget=5, embeddings=X, labeled_embeddings=labeled, prefer=prefer)
    assert prefer[sel.indices[:2]].all()
    assert set(y[sel.indices[2:]].tolist()) == {5, 6, 7}


def test_typicality_picks_dense_points_not_outliers_and_skips_covered_clusters():
    X, y = _blobs([80] * 5, dim=8, spread=0.5, seed=8)
    sel = select("typicality", budget=5, embeddings=X)
    assert sel.strategy == "typicality"
    assert _clusters_covered(sel.indices, y) == 5
    # the chosen points sit close to their blob's mean
    for i in sel.indices:
        centre = X[y == y[i]].mean(0)
        spread = np.linalg.norm(X[y == y[i]] - centre, axis=1)
        assert np.linalg.norm(X[i] - centre) < np.median(spread)
    # scattered outliers grab k-means clusters, yet they are never picked as typical
    rng = np.random.default_rng(8)
    outliers = (rng.normal(size=(20, 8)) * 25).astype(np.float32)
    sel = select("typicality", budget=5, embeddings=np.concatenate([X, outliers]))
    assert np.all(sel.indices < len(X)), "no outlier is typical"
    assert _clusters_covered(sel.indices, y) >= 4
    # clusters that already hold labeled samples come last
    labeled = X[y < 3][::10]
    sel = select("typicality", budget=2, embeddings=X, labeled_embeddings=labeled)
    assert set(y[sel.indices].tolist()) == {3, 4}


def test_bald_values_and_choice():
    # two passes that disagree completely: MI = ln 2; agreeing flat passes: MI = 0
    mc = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]], dtype=np.float32)
    np.testing.assert_allclose(bald(mc), [np.log(2), 0.0], atol=1e-6)
    rng = np.random.default_rng(9)
    n, T = 200, 8
    X = rng.normal(size=(n, 4)).astype(np.float32)
    mc = np.tile(np.array([0.9, 0.05, 0.05], np.float32), (T, n, 1))
    flat = np.arange(0, 20)  # aleatoric: every pass says uniform
    mc[:, flat] = 1 / 3
    disagree = np.arange(100, 110)  # epistemic: each pass confident in a different class
    for t in range(T):
        mc[t, disagree] = np.eye(3, dtype=np.float32)[t % 3] * 0.94 + 0.02
    P = mc.mean(0)
    sel = select("bald", budget=10, embeddings=X, probs=P, mc_probs=mc)
    assert set(sel.indices.tolist()) == set(disagree.tolist())
    # entropy of the mean cannot tell them apart from the flat ones
    assert set(select("entropy", budget=10, embeddings=X, probs=P).indices.tolist()) <= set(flat.tolist()) | set(disagree.tolist())
    with pytest.raises(InvalidInput) as exc:
        select("bald", budget=3, embeddings=X, probs=P)
    assert exc.value.code == "model_required"
    with pytest.raises(InvalidInput):
        select("bald", budget=3, embeddings=X, mc_probs=mc[:, :10])


# --------------------------------------------------------------------------- batch constraints


def _skewed_pool(seed=10):
    """500 samples; the model predicts class 0 for 90% of them, and the most uncertain are all class 0."""
    rng = np.random.default_rng(seed)
    n = 500
    X = rng.normal(size=(n, 6)).astype(np.float32)
    pred = np.where(rng.random(n) < 0.9, 0, rng.integers(1, 3, n))
    conf = np.where(pred == 0, rng.uniform(0.34, 0.6, n), rng.uniform(0.7, 0.95, n))
    P = np.zeros((n, 3), np.float32)
    P[np.arange(n), pred] = conf
    for c in range(3):
        P[:, c] += np.where(pred == c, 0, (1 - conf) / 2)
    return X, P, pred


def test_class_quotas_and_caps():
    X, P, pred = _skewed_pool()
    plain = select("margin", budget=20, embeddings=X, probs=P)
    assert np.all(pred[plain.indices] == 0)
    sel = select("margin", budget=20, embeddings=X, probs=P, class_quotas={1: 4, 2: 4})
    got = np.bincount(pred[sel.indices], minlength=3)
    assert got[1] == 4 and got[2] == 4 and got.sum() == 20
    # quota members are the most uncertain of their class
    u = margin(P)
    in1 = sel.indices[pred[sel.indices] == 1]
    assert set(in1.tolist()) == set(np.flatnonzero(pred == 1)[np.argsort(-u[pred == 1], kind="stable")[:4]].tolist())
    assert sel.info["constraints"]["class:1"] == {"count": 4, "quota": 4, "cap": None, "shortfall": 0}
    capped = select("margin", budget=20, embeddings=X, probs=P, class_caps=[5, 20, 20])
    got = np.bincount(pred[capped.indices], minlength=3)
    assert got[0] == 5 and got.sum() == 20
    assert np.all(np.diff(capped.scores) <= 1e-7)
    # caps also hold for a batch-diverse strategy
    capped = select("auto", budget=20, embeddings=X, probs=P, labeled_counts=[5, 5, 5], class_caps=[5, 20, 20])
    assert np.bincount(pred[capped.indices], minlength=3)[0] == 5 and len(capped.indices) == 20
    with pytest.raises(InvalidInput) as exc:
        select("random", budget=5, embeddings=X, class_quotas=[1, 1, 1])
    assert exc.value.code == "model_required"


def test_slice_mask_predicates():
    meta = [
        {"time_of_day": "night", "speed": 80},
        {"time_of_day": "day", "speed": 30},
        {"time_of_day": "night", "speed": 20, "weather": "rain"},
        {},
        None,
    ]
    assert slice_mask(meta, {"time_of_day": "night"}).tolist() == [True, False, True, False, False]
    assert slice_mask(meta, {"time_of_day": ["day", "dusk"]}).tolist() == [False, True, False, False, False]
    assert slice_mask(meta, {"time_of_day": "night", "speed": {"gte": 50}}).tolist() == [True, False, False, False, False]
    assert slice_mask(meta, {"weather": {"ne": "rain"}}).tolist() == [True, True, False, True, True]
    assert slice_mask(meta, {"speed": {"lt": "fast"}}).tolist() == [False] * 5  # incomparable never matches
    assert slice_mask(meta, {}).tolist() == [True] * 5
    with pytest.raises(InvalidInput):
        slice_mask(meta, {"speed": {"about": 3}})


def test_slice_quotas_and_caps():
    X, P, _ = _skewed_pool()
    meta = [{"time_of_day": "night" if i % 10 == 0 else "day"} for i in range(len(X))]
    night = slice_mask(meta, {"time_of_day": "night"})
    # make night samples confidently predicted so plain margin never picks them
    P = P.copy()
    P[night] = np.array([0.98, 0.01, 0.01], np.float32)
    assert not night[select("margin", budget=20, embeddings=X, probs=P).indices].any()
    sel = select("margin", budget=20, embeddings=X, probs=P, slices={"night": night}, slice_quotas={"night": 6})
    assert night[sel.indices].sum() == 6 and len(sel.indices) == 20
    sel = select("random", budget=40, embeddings=X, slices={"night": night}, slice_caps={"night": 1})
    assert night[sel.indices].sum() <= 1 and len(sel.indices) == 40
    with pytest.raises(InvalidInput):
        select("random", budget=5, embeddings=X, slice_quotas={"night": 2})


def test_cost_aware_selection():
    rng = np.random.default_rng(11)
    n = 300
    X = rng.normal(size=(n, 4)).astype(np.float32)
    P = _dirichlet_probs(n, 3, seed=11)
    cost = np.ones(n, np.float32)
    u = margin(P)
    top = np.argsort(-u, kind="stable")[:10]
    cost[top] = 100.0  # the most uncertain samples are very expensive to label
    sel = select("margin", budget=10, embeddings=X, probs=P, cost=cost)
    assert not np.isin(sel.indices, top).any()
    np.testing.assert_allclose(sel.scores, (u / cost)[sel.indices], rtol=1e-6)
    # total cost bound
    cost2 = rng.uniform(1, 5, n).astype(np.float32)
    sel = select("margin", budget=50, embeddings=X, probs=P, cost=cost2, max_total_cost=30.0)
    assert cost2[sel.indices].sum() <= 30.0 + 1e-4
    assert sel.info["total_cost"] == pytest.approx(float(cost2[sel.indices].sum()), rel=1e-5)
    assert len(sel.indices) >= 8  # 30 / max cost 5 at least, greedy fills more
    with pytest.raises(InvalidInput):
        select("margin", budget=5, embeddings=X, probs=P, cost=np.zeros(n))


def test_near_duplicates_of_labeled_samples_are_excluded():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(200, 16)).astype(np.float32)  # centred data: random pairs have cosine ~ 0
    labeled = X[[0, 40, 80]]
    dupes = np.array([1, 2, 41])
    X[dupes] = labeled[[0, 0, 1]] * 1.5 + 0.01 * rng.normal(size=(3, 16))  # near copies (cosine ~ 1)
    sel = select("random", budget=200, embeddings=X, labeled_embeddings=labeled, dedup_threshold=0.99)
    assert not np.isin(sel.indices, dupes).any()
    assert not np.isin(sel.indices, [0, 40, 80]).any()  # the labeled ones themselves sit in the pool too
    assert sel.info["excluded_near_duplicates"] == 6
    assert len(sel.indices) == 194


def test_unknown_option_is_rejected(pool):
    X, P = pool
    with pytest.raises(InvalidInput) as exc:
        select("margin", budget=5, embeddings=X, probs=P, diversity_factr=3)
    assert exc.value.code == "unknown_option"


def test_cold_start_picks_are_refined_as_k_medoids():
    from ml.cluster import assign_nearest

    rng = np.random.default_rng(5)
    # blobs of very different spread: nearest-to-centre picks of a wide blob are not its best medoids
    E = np.concatenate([rng.normal(0, 0.2, size=(150, 8)), rng.normal(3, 2.0, size=(250, 8))]).astype(np.float32)
    plain = select("kmeans", budget=10, embeddings=E, random_state=1, kmedoids_max=0)
    refined = select("kmeans", budget=10, embeddings=E, random_state=1)
    auto = select("auto", budget=10, embeddings=E, random_state=1)
    np.testing.assert_array_equal(np.sort(auto.indices), np.sort(refined.indices))

    def cost(idx):
        return float(assign_nearest(E, E[idx])[1].sum())

    assert cost(refined.indices) < cost(plain.indices)
    # scores: the share of the pool nearest each pick, biggest first, summing to 1
    assert np.all(np.diff(refined.scores) <= 0) and abs(float(refined.scores.sum()) - 1.0) < 1e-5
    with pytest.raises(InvalidInput):
        select("kmeans", budget=3, embeddings=E, kmedoids_max=-1)


def test_a_pool_bigger_than_kmedoids_max_is_refined_on_a_sample():
    from ml.cluster import assign_nearest

    rng = np.random.default_rng(5)
    E = np.concatenate([rng.normal(0, 0.2, size=(150, 8)), rng.normal(3, 2.0, size=(250, 8))]).astype(np.float32)

    def cost(idx):
        return float(assign_nearest(E, E[idx])[1].sum())

    costs = []
    for rs in range(6):
        plain = select("kmeans", budget=10, embeddings=E, random_state=rs, kmedoids_max=0)
        sampled = select("kmeans", budget=10, embeddings=E, random_state=rs, kmedoids_max=200)
        again = select("kmeans", budget=10, embeddings=E, random_state=rs, kmedoids_max=200)
        np.testing.assert_array_equal(sampled.indices, again.indices)  # seeded
        assert len(np.unique(sampled.indices)) == 10
        assert abs(float(sampled.scores.sum()) - 1.0) < 1e-5  # scores: shares of the whole pool
        costs.append((cost(plain.indices), cost(sampled.indices)))
    # swaps judged on 200 of the 400 points are kept only when they lower the cost over all 400
    assert all(after <= before for before, after in costs)
    assert sum(after < before for before, after in costs) >= 3, costs
    # no room to swap in the sample (kmedoids_max <= picks): the k-means picks stay
    plain = select("kmeans", budget=10, embeddings=E, random_state=1, kmedoids_max=0)
    kept = select("kmeans", budget=10, embeddings=E, random_state=1, kmedoids_max=10)
    np.testing.assert_array_equal(np.sort(kept.indices), np.sort(plain.indices))


def test_cold_start_restarts_option_and_default():
    from ml.cluster import kmeans

    rng = np.random.default_rng(4)
    E = rng.normal(size=(400, 16)).astype(np.float32)  # no real clusters: restarts find different optima
    one = select("kmeans", budget=12, embeddings=E, random_state=3, kmeans_restarts=1)
    default = select("kmeans", budget=12, embeddings=E, random_state=3)
    assert len(one.indices) == len(default.indices) == 12
    # the default (10 restarts at this size) keeps the clustering with the lowest inertia, so the one
    # with a single run can never be better
    _, _, d1 = kmeans(E, 12, random_state=3, n_iter=20, n_init=1)
    _, _, d10 = kmeans(E, 12, random_state=3, n_iter=20, n_init=10)
    assert float(d10.sum()) <= float(d1.sum())
    with pytest.raises(InvalidInput):
        select("kmeans", budget=3, embeddings=E, random_state=0, kmeans_restarts="many")
    for bad in ({"kmeans_iter": -1}, {"typicality_k": 2.5}, {"diversity_factor": "x"}, {"n_clusters": True}):
        with pytest.raises(InvalidInput):
            select("typicality", budget=3, embeddings=E, random_state=0, **bad)


def test_registry_is_the_one_table():
    from ml.selection import REGISTRY
    from ml.selection.core import KNOWN_OPTIONS

    assert STRATEGIES == tuple(REGISTRY)
    assert MODEL_FREE_STRATEGIES == ("auto", "random", "kmeans", "typicality", "kcenter", "stratified_random")
    assert {name for name, s in REGISTRY.items() if s.needs == "probs"} == {
        "least_confidence", "margin", "entropy", "cluster_margin"}
    assert REGISTRY["bald"].needs == "mc_probs"
    assert all(s.description for s in REGISTRY.values())
    assert {"typicality_k", "mc_probs", "strata", "dedup_threshold", "slice_caps"} <= KNOWN_OPTIONS
