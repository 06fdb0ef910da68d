import json

import numpy as np
import pytest

from ml.drift import DriftReport, _novelty_stats, _sq_dists, detect_drift, mmd_test, psi, psi_categorical, psi_level
from ml.errors import InvalidInput


def _mixture(n, seed, centres):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, len(centres), n)
    return (centres[lab] + rng.normal(size=(n, centres.shape[1]))).astype(np.float32)


CENTRES = np.random.default_rng(42).normal(scale=3.0, size=(4, 16))
NEW_CAMPAIGN = np.full((1, 16), 6.0)


def test_no_drift_gives_high_p_value():
    ref = _mixture(600, 1, CENTRES)
    prod = _mixture(400, 2, CENTRES)
    rep = detect_drift(ref, prod, n_permutations=200)
    assert isinstance(rep, DriftReport)
    assert rep.p_value > 0.05 and not rep.drifted
    assert abs(rep.mmd2) < 0.01


def test_p_values_under_the_null_are_not_too_small():
    # over several independent same-distribution pairs the test rarely fires
    ps = [mmd_test(_mixture(150, 10 + s, CENTRES), _mixture(150, 50 + s, CENTRES), n_permutations=100, random_state=s)["p_value"]
          for s in range(20)]
    assert sum(p < 0.05 for p in ps) <= 4  # expected 1 of 20; P(more than 4) is about 0.3%
    assert 0.3 < np.median(ps) < 0.7  # p-values under the null are uniform


def test_new_campaign_is_detected_and_its_samples_ranked_first():
    ref = _mixture(600, 3, CENTRES)
    prod_old = _mixture(300, 4, CENTRES)
    campaign = _mixture(100, 5, NEW_CAMPAIGN)
    prod = np.concatenate([prod_old, campaign])
    rep = detect_drift(ref, prod, n_permutations=200, top_k=20)
    assert rep.drifted and rep.p_value < 0.01
    assert rep.mmd2 > 0.01
    top = np.array(rep.top_drift_indices)
    assert len(top) == 20
    assert np.mean(top >= 300) >= 0.9  # the campaign's samples drive the drift
    assert rep.top_drift_scores == sorted(rep.top_drift_scores, reverse=True)


def test_several_bandwidths_see_a_small_new_mode_that_the_median_one_misses():
    # 6% of production is a tight new mode inside the data's range: the median bandwidth (as wide as the
    # whole mixture) averages it away, a quarter of it does not
    rng = np.random.default_rng(8)
    centres = rng.normal(scale=3.0, size=(4, 16))
    ref = _mixture(400, 9, centres)
    new_mode = (centres.mean(axis=0) + 0.3 * rng.normal(size=(18, 16))).astype(np.float32)
    prod = np.concatenate([_mixture(282, 10, centres), new_mode])
    # MMD alone (no novelty statistics): one bandwidth against four
    single = mmd_test(ref, prod, scales=(1.0,), novelty_quantiles=(), n_permutations=200, random_state=0)
    multi = mmd_test(ref, prod, novelty_quantiles=(), n_permutations=200, random_state=0)
    assert single["p_value"] > 0.05 and multi["p_value"] < 0.05, (single, multi)
    assert single["statistic"] == multi["statistic"] == "mmd" and multi["novelty"] is None
    assert multi["bandwidth"] < multi["base_bandwidth"] and len(multi["bandwidths"]) == 4
    assert single["bandwidths"] == [single["base_bandwidth"]]
    rep = detect_drift(ref, prod, top_k=18, random_state=0)
    assert rep.drifted and np.mean(np.array(rep.top_drift_indices) >= 282) >= 0.8  # the new mode leads
    with pytest.raises(InvalidInput):
        mmd_test(ref, prod, scales=(0.0, 1.0))


def test_novelty_finds_a_trickle_of_new_input_that_mmd_misses():
    # 5% of production (15 of 300) comes from somewhere the reference never was: too little mass for MMD
    # at any bandwidth, but each of those samples is farther from the reference than nearly all of the
    # reference is from itself
    ref = _mixture(300, 21, CENTRES)
    trickle = _mixture(15, 22, np.full((1, 16), 4.0))
    prod = np.concatenate([_mixture(285, 23, CENTRES), trickle])
    mmd_only = mmd_test(ref, prod, novelty_quantiles=(), n_permutations=200, random_state=0)
    both = mmd_test(ref, prod, n_permutations=200, random_state=0)
    assert mmd_only["p_value"] > 0.1 and both["p_value"] < 0.03, (mmd_only, both)
    assert both["statistic"] == "novelty"
    nov = both["novelty"]
    assert nov["share_prod"] >= 0.05 > nov["share_expected"] + 0.02  # the trickle is beyond the tail
    rep = detect_drift(ref, prod, top_k=15, random_state=0)
    assert rep.drifted and rep.statistic == "novelty" and rep.novelty == both["novelty"]
    assert sorted(rep.top_drift_indices) == list(range(285, 300))  # the witnesses are the new samples
    assert rep.top_drift_scores == sorted(rep.top_drift_scores, reverse=True)
    assert json.loads(json.dumps(rep.to_dict()))["statistic"] == "novelty"
    with pytest.raises(InvalidInput):
        mmd_test(ref, prod, novelty_quantiles=(0.5, 1.0))


@pytest.mark.parametrize("n, m", [(40, 30), (300, 200), (20, 400)])
def test_novelty_statistics_match_brute_force(n, m):
    rng = np.random.default_rng(n + m)
    Z = rng.normal(size=(n + m, 8))
    D2 = _sq_dists(Z, Z)
    A = np.zeros((n + m, 6))
    A[:n, 0] = 1.0
    for j in range(1, 6):
        A[rng.permutation(n + m)[:n], j] = 1.0
    qs = (0.9, 0.99)
    stats, observed = _novelty_stats(D2, A, n, qs)
    for j in range(6):
        ref = np.flatnonzero(A[:, j] > 0)
        prod = np.flatnonzero(A[:, j] == 0)
        d = np.array([min(D2[i, r] for r in ref if r != i) for i in range(n + m)])
        for qi, q in enumerate(qs):
            assert stats[qi, j] == pytest.approx(np.mean(d[prod] > np.quantile(d[ref], q)))
        if j == 0:
            np.testing.assert_allclose(observed, d)


def test_with_novelty_the_false_alarm_rate_stays_at_alpha():
    # the novelty statistics join the permutation test, so the p-value stays exact: without drift,
    # p < 0.05 in about 5% of checks (100 checks: more than 11 has probability about 0.3%)
    ps = [mmd_test(_mixture(100, 200 + s, CENTRES), _mixture(100, 400 + s, CENTRES), n_permutations=100,
                   random_state=s)["p_value"] for s in range(100)]
    assert sum(p < 0.05 for p in ps) <= 11
    assert 0.35 < np.median(ps) < 0.65


def test_mean_shift_detected():
    ref = _mixture(500, 6, CENTRES)
    prod = _mixture(500, 7, CENTRES) + 0.6  # every feature shifted
    assert mmd_test(ref, prod, n_permutations=100)["p_value"] < 0.01


def test_psi_hand_checked_and_levels():
    ref = np.array([0] * 50 + [1] * 50)
    prod = np.array([0] * 25 + [1] * 75)
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert psi_categorical(ref, prod, 2) == pytest.approx(expected, rel=1e-3)
    rng = np.random.default_rng(0)
    a = rng.beta(8, 2, 2000)
    assert psi(a, rng.beta(8, 2, 2000)) < 0.05
    assert psi(a, rng.beta(3, 3, 2000)) > 0.25
    assert [psi_level(v) for v in (0.05, 0.2, 0.4, None)] == ["stable", "moderate", "significant", None]


def test_confidence_psi_and_slices():
    rng = np.random.default_rng(8)
    n_ref, n_prod = 600, 600
    ref = _mixture(n_ref, 8, CENTRES)
    prod = _mixture(n_prod, 9, CENTRES)
    night_ref = rng.random(n_ref) < 0.2
    night_prod = rng.random(n_prod) < 0.5  # night traffic grew
    prod[night_prod] += 1.0  # and night images look different now
    P_ref = rng.dirichlet([8, 1, 1], n_ref)
    P_prod = rng.dirichlet([8, 1, 1], n_prod)
    P_prod[night_prod] = rng.dirichlet([2, 2, 2], int(night_prod.sum()))  # the model is unsure at night
    rep = detect_drift(ref, prod, ref_probs=P_ref, prod_probs=P_prod,
                       slices={"night": (night_ref, night_prod), "day": (~night_ref, ~night_prod)}, n_permutations=100)
    assert rep.drifted
    assert rep.confidence_psi > 0.25 and rep.confidence_level == "significant"
    assert rep.mean_confidence_prod < rep.mean_confidence_ref
    night, day = rep.slices["night"], rep.slices["day"]
    assert night["drifted"] and night["p_value"] < 0.01
    assert not day["drifted"] and day["p_value"] > 0.05
    assert night["share_prod"] > night["share_ref"] and night["share_psi"] > 0.1
    assert night["confidence_psi"] > 0.25 and day["confidence_psi"] < 0.1
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["slices"]["night"]["drifted"] is True


def test_invalid_inputs():
    ref = _mixture(50, 1, CENTRES)
    with pytest.raises(InvalidInput):
        detect_drift(ref, ref[:, :3])
    with pytest.raises(InvalidInput):
        detect_drift(ref, ref[:1])
    with pytest.raises(InvalidInput):
        detect_drift(ref, ref, ref_probs=np.ones((50, 2)) / 2)
    with pytest.raises(InvalidInput):
        detect_drift(ref, ref, slices={"x": (np.ones(3, bool), np.ones(50, bool))})
