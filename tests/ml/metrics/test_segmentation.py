import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.metrics import evaluate

LABELS = ("a", "b", "c")


def _r(labels):
    return {"point_labels": list(labels), "point_scores": [1.0] * len(labels)}


def test_hand_computed_iou_and_miou():
    # target a a b b c -1 ; predicted a b b b a c (the -1 point is ignored whatever is predicted)
    rep = evaluate("point_segmentation", [_r([0, 1, 1, 1, 0, 2])], [{"point_labels": [0, 0, 1, 1, 2, -1]}], LABELS)
    # a: tp 1, fp 1 (the c point), fn 1 -> 1/3; b: tp 2, fp 1 -> 2/3; c: tp 0, fn 1 -> 0
    assert rep.per_class["a"]["iou"] == pytest.approx(1 / 3)
    assert rep.per_class["b"]["iou"] == pytest.approx(2 / 3)
    assert rep.per_class["c"]["iou"] == 0.0 and rep.per_class["c"]["support"] == 1
    assert rep.metrics["miou"] == pytest.approx(1 / 3)
    assert rep.metrics["accuracy"] == pytest.approx(3 / 5)
    assert rep.primary == "miou" and rep.n == 1
    assert rep.per_sample.tolist() == pytest.approx([1 / 3])


def test_pooled_over_clouds_per_sample_and_slices():
    results = [_r([0, 0, 1]), _r([1, 1]), _r([2])]
    targets = [{"point_labels": [0, 0, 1]}, {"point_labels": [1, 0]}, {"point_labels": [-1]}]
    rep = evaluate("point_segmentation", results, targets, LABELS,
                   slices={"first": np.array([True, False, False]), "second": np.array([False, True, True])})
    # pooled: a tp 2 fn 1 -> 2/3; b tp 2 fp 1 -> 2/3; c absent everywhere on labeled points -> left out
    assert set(rep.per_class) == {"a", "b"}
    assert rep.metrics["miou"] == pytest.approx(2 / 3)
    # cloud 2: a 0/1, b 1/2 -> 0.25; cloud 3 has no labeled point -> 1
    assert rep.per_sample.tolist() == pytest.approx([1.0, 0.25, 1.0])
    assert rep.per_slice["first"] == {"miou": 1.0, "accuracy": 1.0, "n": 1.0}
    assert rep.per_slice["second"]["miou"] == pytest.approx(0.25) and rep.per_slice["second"]["n"] == 2


def test_matches_scikit_learn_jaccard():
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(0)
    targets, results, ys, ps = [], [], [], []
    for _ in range(6):
        y = rng.integers(-1, 3, size=200)
        p = np.where(rng.random(200) < 0.6, np.maximum(y, 0), rng.integers(0, 3, size=200))
        targets.append({"point_labels": y.tolist()})
        results.append(_r(p.tolist()))
        ys.append(y[y >= 0])
        ps.append(p[y >= 0])
    rep = evaluate("point_segmentation", results, targets, LABELS)
    ref = jaccard_score(np.concatenate(ys), np.concatenate(ps), average=None, labels=[0, 1, 2])
    assert [rep.per_class[k]["iou"] for k in LABELS] == pytest.approx(ref.tolist())
    assert rep.metrics["miou"] == pytest.approx(ref.mean())


def test_bad_results_are_typed_errors():
    with pytest.raises(InvalidInput):
        evaluate("point_segmentation", [_r([0, 1])], [{"point_labels": [0, 1, 2]}], LABELS)
    with pytest.raises(InvalidInput):
        evaluate("point_segmentation", [_r([0, 5])], [{"point_labels": [0, 1]}], LABELS)
