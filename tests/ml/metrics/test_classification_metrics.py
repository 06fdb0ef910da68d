"""evaluate_classification against hand-computed figures and an independent numpy implementation."""
from __future__ import annotations

import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.metrics import evaluate
from ml.metrics.classification import class_masks, result_probs

LABELS = ("cat", "dog", "eel")


def res(label, **scores):
    return {"label": label, "scores": scores} if scores else {"label": label}


def test_hand_computed_case():
    # truth: cat cat dog dog eel; predicted: cat dog dog dog cat
    targets = [{"label": x} for x in ("cat", "cat", "dog", "dog", "eel")]
    results = [res("cat", cat=0.9, dog=0.1), res("dog", cat=0.4, dog=0.6), res("dog", dog=1.0),
               res("dog", dog=0.8, eel=0.2), res("cat", cat=0.5, eel=0.3, dog=0.2)]
    rep = evaluate("classification", results, targets, LABELS, {"first_two": np.array([1, 1, 0, 0, 0], bool)})
    assert rep.task_type == "classification" and rep.primary == "accuracy" and rep.n == 5
    assert rep.metrics["accuracy"] == pytest.approx(3 / 5)
    # cat: P=1/2 R=1/2 F=1/2; dog: P=2/3 R=1 F=0.8; eel: 0 -> macro over present/predicted classes = 1.3/3
    assert rep.per_class["cat"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert rep.per_class["dog"]["precision"] == pytest.approx(2 / 3) and rep.per_class["dog"]["f1"] == pytest.approx(0.8)
    assert rep.per_class["eel"]["f1"] == 0.0 and rep.per_class["eel"]["support"] == 1
    assert rep.metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    np.testing.assert_array_equal(rep.per_sample, [1, 0, 1, 1, 0])
    assert rep.per_slice["first_two"] == {"n": 2, "accuracy": 0.5, "macro_f1": pytest.approx(1 / 3),
                                          "ece": pytest.approx(abs(1 - 0.9) / 2 + abs(0 - 0.6) / 2)}
    assert rep.to_dict()["per_sample"] == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_against_an_independent_implementation():
    rng = np.random.default_rng(0)
    n, C = 400, 3
    y = rng.integers(0, C, n)
    logits = rng.normal(size=(n, C)) + 1.5 * np.eye(C)[y]
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    results = [{"label": LABELS[k], "scores": dict(zip(LABELS, p))} for k, p in zip(P.argmax(1), P)]
    rep = evaluate("classification", results, [{"label": LABELS[k]} for k in y], LABELS)
    pred = P.argmax(1)
    f1s = []
    for c in range(C):
        tp = np.sum((pred == c) & (y == c))
        prec, rec = tp / max(np.sum(pred == c), 1), tp / max(np.sum(y == c), 1)
        f1s.append(0 if tp == 0 else 2 * prec * rec / (prec + rec))
        assert rep.per_class[LABELS[c]]["recall"] == pytest.approx(rec)
    assert rep.metrics["accuracy"] == pytest.approx(np.mean(pred == y))
    assert rep.metrics["macro_f1"] == pytest.approx(np.mean(f1s))


def test_scores_renormalised_and_overridden_labels_are_one_hot():
    P = result_probs([res("cat", cat=2.0, dog=2.0 / 3), res("dog", cat=0.9, dog=0.1), res("eel")], LABELS)
    np.testing.assert_allclose(P, [[0.75, 0.25, 0], [0, 1, 0], [0, 0, 1]])


def test_errors_and_class_masks():
    with pytest.raises(InvalidInput):
        evaluate("classification", [res("cow")], [{"label": "cat"}], LABELS)
    with pytest.raises(InvalidInput):
        evaluate("classification", [res("cat")], [{"label": "cow"}], LABELS)
    with pytest.raises(InvalidInput) as e:
        evaluate("classification", [], [], LABELS)
    assert e.value.code == "empty_data"
    m = class_masks([{"label": "dog"}, {"label": "cat"}, {"label": "dog"}], LABELS)
    np.testing.assert_array_equal(m["dog"], [True, False, True])
    assert not m["eel"].any()
