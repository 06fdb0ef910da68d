"""The regression gate's paired comparison on constructed reports: no change, a clear drop, a drop on one slice
only, continuous per-sample scores; the tests themselves against hand-computed values and scipy."""
from __future__ import annotations

import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.learners.base import EvalReport
from ml.metrics.compare import compare_reports, paired_bootstrap_ci, sign_flip_test


def report(per_sample, *, task_type="classification", primary="accuracy", per_class=None, per_slice=None):
    s = np.asarray(per_sample, dtype=np.float64)
    return EvalReport(task_type=task_type, primary=primary, metrics={primary: float(s.mean()), "other": 0.5},
                      per_class=per_class or {}, per_slice=per_slice or {}, per_sample=s, n=len(s))


def test_no_change_does_not_regress():
    rng = np.random.default_rng(0)
    s = (rng.random(300) < 0.8).astype(float)
    cmp = compare_reports(report(s), report(s), slices={"night": np.arange(300) < 100})
    assert not cmp.regressed and cmp.reasons == []
    assert cmp.test.method == "mcnemar" and cmp.test.p_value == 1.0 and cmp.primary_delta == 0.0
    assert cmp.per_slice["night"].test.p_value == 1.0 and cmp.to_dict()["regressed"] is False


def test_noise_level_changes_do_not_regress():
    rng = np.random.default_rng(1)
    old = (rng.random(200) < 0.8).astype(float)
    new = old.copy()
    new[np.flatnonzero(old == 1)[:4]] = 0  # a handful of changes either way
    new[np.flatnonzero(old == 0)[:2]] = 1
    assert not compare_reports(report(old), report(new)).regressed


def test_a_drop_beyond_the_tolerance_blocks_even_when_not_significant():
    """Like the built-in classifiers' gate: 0.95 -> 0.77 on 28 samples (5 newly wrong, p = 0.06) is not deployed."""
    old = np.ones(28)
    old[:1] = 0
    new = old.copy()
    new[1:6] = 0
    cmp = compare_reports(report(old), report(new))
    assert cmp.test.p_value > 0.05 and cmp.regressed and "dropped" in cmp.reasons[0]
    # within the tolerance and not significant: deployed
    small = old.copy()
    small[1] = 0
    assert not compare_reports(report(old), report(small), tolerance=0.05).regressed


def test_clear_drop_regresses():
    rng = np.random.default_rng(2)
    old = (rng.random(300) < 0.9).astype(float)
    new = old.copy()
    new[np.flatnonzero(old == 1)[:40]] = 0  # 40 samples newly wrong
    cmp = compare_reports(report(old), report(new))
    assert cmp.regressed and cmp.test.method == "mcnemar" and cmp.test.b == 40 and cmp.test.c == 0
    assert cmp.test.p_value < 1e-6 and cmp.primary_delta == pytest.approx(-40 / 300)
    assert cmp.test.ci_high < 0 and "accuracy" in cmp.reasons[0]
    # the other way round it is an improvement, not a regression
    assert not compare_reports(report(new), report(old)).regressed


def test_drop_on_one_slice_only():
    rng = np.random.default_rng(3)
    n = 400
    night = np.arange(n) < 60
    old = (rng.random(n) < 0.85).astype(float)
    new = old.copy()
    new[night & (old == 1)] = 0  # the night slice collapses ...
    day_wrong = np.flatnonzero(~night & (old == 0))
    new[day_wrong[: int(night.sum() * 0.85) - 5]] = 1  # ... while the day slice improves: overall about flat
    slices = {"night": night, "day": ~night, "tiny": np.arange(n) >= n - 5}
    per_slice = {"night": {"n": 60, "accuracy": 0.85}, "day": {"n": 340, "accuracy": 0.85}}
    new_slices = {"night": {"n": 60, "accuracy": 0.0}, "day": {"n": 340, "accuracy": 0.98}}
    # overall -2 points: within a 3-point tolerance, and not significant; only the night slice blocks
    cmp = compare_reports(report(old, per_slice=per_slice), report(new, per_slice=new_slices), slices=slices,
                          tolerance=0.03)
    assert abs(cmp.primary_delta) <= 0.03 and cmp.test.p_value > 0.05  # overall: no significant change
    assert cmp.regressed and cmp.per_slice["night"].regressed and not cmp.per_slice["day"].regressed
    assert cmp.per_slice["night"].deltas["accuracy"] == pytest.approx(-0.85)
    assert cmp.per_slice["night"].p_adjusted < 0.05 and len(cmp.reasons) == 1 and "night" in cmp.reasons[0]
    # a slice under min_samples is reported but never blocks
    assert cmp.per_slice["tiny"].p_adjusted is None and not cmp.per_slice["tiny"].regressed


def test_per_class_with_masks():
    n = 200
    cls = np.repeat(["a", "b"], n // 2)
    old = np.ones(n)
    new = np.ones(n)
    new[:30] = 0  # class a loses 30 of its 100
    per_class = {"a": {"recall": 1.0, "support": 100}, "b": {"recall": 1.0, "support": 100}}
    cmp = compare_reports(report(old, per_class=per_class),
                          report(new, per_class={"a": {"recall": 0.7, "support": 100}, "b": per_class["b"]}),
                          classes={"a": cls == "a", "b": cls == "b"})
    assert cmp.per_class["a"].regressed and not cmp.per_class["b"].regressed
    assert cmp.per_class["a"].deltas == {"recall": pytest.approx(-0.3)}
    # without masks: the figures' deltas only, no test, no verdict from the class
    cmp2 = compare_reports(report(old, per_class=per_class),
                           report(old, per_class={"a": {"recall": 0.7, "support": 100}, "b": per_class["b"]}))
    assert cmp2.per_class["a"].test is None and not cmp2.regressed


def test_continuous_scores_use_permutation_and_bootstrap():
    rng = np.random.default_rng(4)
    old = rng.uniform(0.3, 1.0, 150)
    same = compare_reports(report(old, task_type="detection", primary="map50"),
                           report(np.clip(old + rng.normal(0, 0.02, 150), 0, 1), task_type="detection",
                                  primary="map50"))
    assert same.test.method == "permutation" and not same.regressed and abs(same.test.mean_delta) < 0.01
    worse = compare_reports(report(old, task_type="detection", primary="map50"),
                            report(np.clip(old - 0.1 + rng.normal(0, 0.05, 150), 0, 1), task_type="detection",
                                   primary="map50"))
    assert worse.test.method == "permutation" and worse.regressed and worse.test.p_value < 0.01
    assert worse.test.ci_high < 0 and not worse.test.exact


def test_sign_flip_exact_and_bootstrap_by_hand():
    rng = np.random.default_rng(0)
    # 3 non-zero differences all negative: of 8 sign patterns, 2 reach |sum| >= 3*0.5 -> p = 1/4
    p, exact = sign_flip_test(np.array([-0.5, -0.5, -0.5, 0, 0]), n_resamples=1000, rng=rng)
    assert exact and p == pytest.approx(0.25)
    p, exact = sign_flip_test(np.zeros(10), n_resamples=1000, rng=rng)
    assert p == 1.0
    lo, hi = paired_bootstrap_ci(np.full(50, -0.2), n_resamples=500, alpha=0.05, rng=rng)
    assert lo == pytest.approx(-0.2) and hi == pytest.approx(-0.2)


def test_permutation_agrees_with_scipy():
    from scipy import stats

    rng = np.random.default_rng(5)
    d = rng.normal(-0.05, 0.3, 40)
    p, _ = sign_flip_test(d, n_resamples=20000, rng=rng)
    ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=20000,
                                 alternative="two-sided", random_state=1).pvalue
    assert p == pytest.approx(ref, abs=0.02)


def test_deterministic_and_errors():
    rng = np.random.default_rng(6)
    a, b = rng.random(80), rng.random(80)
    c1 = compare_reports(report(a), report(b), random_state=7)
    c2 = compare_reports(report(a), report(b), random_state=7)
    assert c1.to_dict() == c2.to_dict()
    with pytest.raises(InvalidInput):
        compare_reports(report(a), report(b[:10]))
    with pytest.raises(InvalidInput):
        compare_reports(report(a), report(b, task_type="detection", primary="map50"))
    with pytest.raises(InvalidInput):
        compare_reports(report(a), report(b), method="mcnemar")  # continuous scores
    with pytest.raises(InvalidInput):
        compare_reports(report(a), report(b), slices={"x": np.ones(3, bool)})
