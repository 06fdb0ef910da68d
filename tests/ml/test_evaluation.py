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
    assert rep.slices["empty"] == {"n": 0, "accuracy": None, "macro_f1": None, "ece": None, "per_class_recall": {}}
    recall = metrics.recall_score(y[night], pred[night], average=None, labels=[0, 1, 2, 3])
    assert rep.slices["night"]["per_class_recall"] == pytest.approx(dict(zip(LABELS, recall)))
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
        evaluate(y, np.log(P), LABELS)
    assert exc.value.code == "invalid_probs"
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


# --------------------------------------------------------------------------- rules


def _onehot(idx, n_classes=3):
    return np.eye(n_classes)[idx] * 0.8 + 0.2 / n_classes


def _rules_case():
    """Night: 60 trucks, 40 cars. Day: 100 samples, both models 90% right.

    The old model calls night trucks 'car' and night cars 'bus'; the team wrote a rule
    "at night, 'car' means 'truck'". The new model calls night cars 'car' (right) and night trucks 'bus'.
    """
    labels = ["car", "truck", "bus"]
    y_night = np.r_[np.full(60, 1), np.full(40, 0)]
    rng = np.random.default_rng(0)
    y_day = rng.integers(0, 3, 100)
    day_pred = np.where(np.arange(100) < 90, y_day, (y_day + 1) % 3)
    y = np.r_[y_night, y_day]
    old_night = np.r_[np.full(60, 0), np.full(40, 2)]
    new_night = np.r_[np.full(60, 2), np.full(40, 0)]
    P_old = _onehot(np.r_[old_night, day_pred])
    P_new = _onehot(np.r_[new_night, day_pred])
    meta = [{"time_of_day": "night"}] * 100 + [{"time_of_day": "day"}] * 100

    def rule(md, pred):
        return "truck" if md.get("time_of_day") == "night" and pred == "car" else None

    return y, P_new, P_old, labels, meta, rule


def test_rules_hurt_an_improved_model_is_flagged():
    from ml.evaluation import evaluate_with_rules, slices_from_metadata

    y, P_new, P_old, labels, meta, rule = _rules_case()
    slices = slices_from_metadata(meta, {"night": {"time_of_day": "night"}})
    res = evaluate_with_rules(y, P_new, labels, meta, rule, probs_old=P_old, slices=slices)
    # the model alone improved: 0.45 -> 0.65
    assert res.old_model.accuracy == pytest.approx(0.45)
    assert res.model.accuracy == pytest.approx(0.65)
    # with the rule: old 0.75, new 0.45
    assert res.old_with_rules.accuracy == pytest.approx(0.75)
    assert res.with_rules.accuracy == pytest.approx(0.45)
    assert res.rules_hurt_improvement
    assert res.rules_hurt
    assert res.n_overridden == 40 and res.overrides_broke == 40 and res.overrides_fixed == 0
    assert res.with_rules.slices["night"]["accuracy"] == 0.0
    assert any("model + rules got worse" in f for f in res.flags)
    assert any("slice 'night'" in f for f in res.flags)
    assert json.loads(json.dumps(res.to_dict()))["rules_hurt_improvement"] is True


def test_rules_that_help_are_not_flagged():
    from ml.evaluation import evaluate_with_rules

    y, P_new, P_old, labels, meta, rule = _rules_case()
    # evaluated on the old model alone, the rule fixes 60 and breaks nothing
    res = evaluate_with_rules(y, P_old, labels, meta, rule)
    assert res.overrides_fixed == 60 and res.overrides_broke == 0
    assert not res.rules_hurt and not res.rules_hurt_improvement and res.flags == []
    assert res.with_rules.accuracy > res.model.accuracy
    # a new model that improves and keeps benefiting from the rule: no flag
    P_better = P_old.copy()
    P_better[160:200] = _onehot(y[160:200])  # fixes some day mistakes
    res = evaluate_with_rules(y, P_better, labels, meta, rule, probs_old=P_old)
    assert not res.rules_hurt_improvement


def test_rule_errors_are_reported():
    from ml.evaluation import evaluate_with_rules

    y, P_new, _, labels, meta, _ = _rules_case()
    with pytest.raises(InvalidInput) as exc:
        evaluate_with_rules(y, P_new, labels, meta, lambda md, pred: "plane")
    assert exc.value.code == "invalid_rule_output"
    with pytest.raises(InvalidInput) as exc:
        evaluate_with_rules(y, P_new, labels, meta, lambda md, pred: md["speed"])
    assert exc.value.code == "rule_error" and exc.value.details["index"] == 0
    with pytest.raises(InvalidInput):
        evaluate_with_rules(y, P_new, labels, meta[:5], lambda md, pred: None)
