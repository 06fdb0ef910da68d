import io
import json

import numpy as np
import pytest
from sklearn import metrics

from ml.errors import InvalidInput
from ml.evaluation import (
    EvalReport,
    compare_models,
    confusion_png,
    evaluate,
    expected_calibration_error,
    mcnemar,
)

LABELS = ["car", "bike", "bus", "truck"]


def _noisy_probs(y, n_classes, acc, seed):
    """Probabilities whose argmax equals y on about ``acc`` of the samples."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_classes), size=len(y))
    wrong = rng.random(len(y)) > acc
    target = np.where(wrong, (y + rng.integers(1, n_classes, len(y))) % n_classes, y)
    P[np.arange(len(y)), target] += 1.5
    return P / P.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=400)
    P = _noisy_probs(y, 4, 0.8, seed=1)
    return y, P


def test_evaluate_matches_sklearn(data):
    y, P = data
    rep = evaluate(y, P, LABELS)
    pred = P.argmax(1)
    assert isinstance(rep, EvalReport)
    assert rep.n == 400
    assert rep.accuracy == pytest.approx(metrics.accuracy_score(y, pred))
    assert rep.macro_f1 == pytest.approx(metrics.f1_score(y, pred, average="macro"))
    assert rep.confusion == metrics.confusion_matrix(y, pred).tolist()
    p, r, f, s = metrics.precision_recall_fscore_support(y, pred)
    for i, name in enumerate(LABELS):
        assert rep.per_class[name]["precision"] == pytest.approx(p[i])
        assert rep.per_class[name]["recall"] == pytest.approx(r[i])
        assert rep.per_class[name]["f1"] == pytest.approx(f[i])
        assert rep.per_class[name]["support"] == s[i]
    assert rep.labels == LABELS


def test_absent_class_is_listed_with_zero_support():
    y = np.array([0, 0, 1, 1])
    P = np.eye(3)[[0, 0, 1, 0]]
    rep = evaluate(y, P, ["a", "b", "c"])
    assert rep.per_class["c"]["support"] == 0
    assert rep.confusion == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert rep.macro_f1 == pytest.approx(metrics.f1_score(y, P.argmax(1), average="macro"))


def test_ece_hand_checked():
    # bins of width 0.1: conf 0.9 lands in (0.8, 0.9], conf 0.6 in (0.5, 0.6]
    P = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])  # 0.9-bin: 1 of 2 right; 0.6-bin: 2 of 2 right
    # |0.5 - 0.9| * 2/4 + |1.0 - 0.6| * 2/4 = 0.2 + 0.2
    assert expected_calibration_error(y, P, n_bins=10) == pytest.approx(0.4)
    # perfectly calibrated: confidence 1 and always right
    assert expected_calibration_error(np.array([0, 1]), np.eye(2)) == pytest.approx(0.0)
    assert evaluate(y, P, ["a", "b"], n_bins=10).ece == pytest.approx(0.4)


def test_slices(data):
    y, P = data
    night = np.arange(len(y)) % 3 == 0
    rep = evaluate(y, P, LABELS, slices={"night": night, "empty": np.zeros(len(y), bool)})
    pred = P.argmax(1)
    assert rep.slices["night"]["n"] == int(night.sum())
    assert rep.slices["night"]["accuracy"] == pytest.approx(np.mean(pred[night] == y[night]))
    assert rep.slices["night"]["macro_f1"] == pytest.approx(metrics.f1_score(y[night], pred[night], average="macro"))
    assert rep.slices["empty"] == {"n": 0, "accuracy": None, "macro_f1": None, "ece": None}
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["slices"]["night"]["n"] == int(night.sum())
    assert d["per_class"]["car"]["support"] == int((y == 0).sum())


def test_invalid_inputs(data):
    y, P = data
    with pytest.raises(InvalidInput):
        evaluate(y, P, LABELS[:3])
    with pytest.raises(InvalidInput):
        evaluate(y[:10], P, LABELS)
    with pytest.raises(InvalidInput):
        evaluate(y + 4, P, LABELS)
    with pytest.raises(InvalidInput):
        evaluate(y, P, LABELS, slices={"bad": np.ones(3, bool)})
    with pytest.raises(InvalidInput) as exc:
        evaluate(y[:0], P[:0], LABELS)
    assert exc.value.code == "empty_data"


def test_confusion_png(data):
    from PIL import Image

    y, P = data
    png = confusion_png(evaluate(y, P, LABELS), title="round 3")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    assert img.size[0] > 200 and img.size[1] > 200


def test_mcnemar_exact_and_chi2():
    old = np.ones(10, bool)
    new = np.zeros(10, bool)
    t = mcnemar(new, old)
    assert (t["b"], t["c"], t["method"]) == (10, 0, "exact")
    assert t["p_value"] == pytest.approx(2 * 0.5**10)
    # balanced discordance: no evidence either way
    assert mcnemar(np.array([1, 0] * 5, bool), np.array([0, 1] * 5, bool))["p_value"] == pytest.approx(1.0)
    # large counts use chi-square with continuity correction
    old = np.r_[np.ones(40, bool), np.zeros(20, bool)]
    new = ~old
    t = mcnemar(new, old)
    assert t["method"] == "chi2_cc" and (t["b"], t["c"]) == (40, 20)
    assert t["statistic"] == pytest.approx((20 - 1) ** 2 / 60)


def test_compare_detects_planted_slice_regression():
    rng = np.random.default_rng(3)
    n = 600
    y = rng.integers(0, 4, size=n)
    night = rng.random(n) < 0.15
    P_old = _noisy_probs(y, 4, 0.85, seed=4)
    # the new model is a bit better overall, but wrong on 60% of night samples the old one got right
    P_new = P_old.copy()
    fix = (P_old.argmax(1) != y) & ~night & (rng.random(n) < 0.6)
    P_new[fix] = np.eye(4)[y[fix]] * 0.9 + 0.025
    break_ = night & (P_old.argmax(1) == y) & (rng.random(n) < 0.6)
    P_new[break_] = np.eye(4)[(y[break_] + 1) % 4] * 0.9 + 0.025
    cmp = compare_models(y, P_new, P_old, LABELS, slices={"night": night, "day": ~night})
    assert cmp.regressed
    assert any("night" in r for r in cmp.regressions)
    assert not any("'day'" in r for r in cmp.regressions)
    assert cmp.slices["night"]["accuracy_delta"] < -0.3
    assert cmp.slices["day"]["accuracy_delta"] > 0
    d = json.loads(json.dumps(cmp.to_dict()))
    assert d["regressed"] is True


def test_compare_planted_overall_and_class_regression():
    rng = np.random.default_rng(5)
    n = 500
    y = rng.integers(0, 4, size=n)
    P_old = _noisy_probs(y, 4, 0.9, seed=6)
    P_new = P_old.copy()
    bus = (y == 2) & (P_old.argmax(1) == y)
    P_new[bus] = np.eye(4)[np.full(bus.sum(), 3)] * 0.9 + 0.025  # every bus now predicted as truck
    cmp = compare_models(y, P_new, P_old, LABELS)
    assert cmp.regressed
    assert cmp.accuracy_delta < -0.1
    assert cmp.mcnemar["b"] == int(bus.sum()) and cmp.mcnemar["c"] == 0
    assert cmp.per_class["bus"]["recall_new"] == 0.0
    assert any("class 'bus'" in r for r in cmp.regressions)
    assert not any("class 'car'" in r for r in cmp.regressions)


def test_compare_no_regression_for_same_or_better_model(data):
    y, P = data
    same = compare_models(y, P, P, LABELS)
    assert not same.regressed and same.regressions == []
    assert same.mcnemar["p_value"] == 1.0
    better = P.copy()
    wrong = better.argmax(1) != y
    better[wrong] = np.eye(4)[y[wrong]]
    cmp = compare_models(y, better, P, LABELS)
    assert not cmp.regressed
    assert cmp.accuracy_delta > 0.1
