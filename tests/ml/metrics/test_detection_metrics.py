"""COCO detection metrics (pycocotools) against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.metrics import evaluate
from ml.metrics.detection import evaluate_detection, image_f1

LABELS = ("cat", "dog")


def box(label, x, y, w, h, score=None):
    b = {"label": label, "x": x, "y": y, "w": w, "h": h}
    if score is not None:
        b["score"] = score
    return b


def test_perfect_predictions_score_one():
    targets = [{"boxes": [box("cat", 0.1, 0.1, 0.3, 0.3), box("dog", 0.5, 0.5, 0.4, 0.2)]},
               {"boxes": [box("dog", 0.2, 0.6, 0.3, 0.3)]}]
    results = [{"boxes": [{**b, "score": 0.9} for b in t["boxes"]]} for t in targets]
    r = evaluate_detection(results, targets, LABELS)
    assert r.task_type == "detection" and r.primary == "map50" and r.n == 2
    assert r.metrics["map50"] == pytest.approx(1.0)
    assert r.metrics["map"] == pytest.approx(1.0)
    assert r.metrics["f1"] == pytest.approx(1.0)
    assert r.per_class["cat"] == {"ap50": pytest.approx(1.0), "ap": pytest.approx(1.0), "n_gt": 1}
    assert r.per_class["dog"]["n_gt"] == 2
    np.testing.assert_allclose(r.per_sample, [1.0, 1.0])


def test_shifted_box_counts_at_the_iou_thresholds_it_passes():
    # GT [0, 0, .4, .4]; the prediction shifted right by dx has IoU a / (0.32 - a), a = 0.4 (0.4 - dx).
    # IoU 0.68 passes the thresholds .50 .55 .60 .65 (4 of COCO's 10): AP@.5 = 1, AP@[.5:.95] = 0.4, AP@.75 = 0.
    a = 0.68 * 0.32 / 1.68
    dx = 0.4 - a / 0.4
    r = evaluate_detection([{"boxes": [box("cat", dx, 0.0, 0.4, 0.4, 0.8)]}],
                           [{"boxes": [box("cat", 0.0, 0.0, 0.4, 0.4)]}], LABELS)
    assert r.metrics["map50"] == pytest.approx(1.0)
    assert r.metrics["map"] == pytest.approx(0.4)
    assert r.metrics["map75"] == pytest.approx(0.0)
    assert list(r.per_class) == ["cat"]  # dog has no ground truth: no AP, left out of the mean
    # shifted further, IoU 0.4 < 0.5: a false positive and a miss
    a = 0.4 * 0.32 / 1.4
    r = evaluate_detection([{"boxes": [box("cat", 0.4 - a / 0.4, 0.0, 0.4, 0.4, 0.8)]}],
                           [{"boxes": [box("cat", 0.0, 0.0, 0.4, 0.4)]}], LABELS)
    assert r.metrics["map50"] == pytest.approx(0.0)
    assert r.per_sample[0] == 0.0


def test_missed_box_halves_recall():
    # two cats, one found: precision 1 up to recall 0.5 -> 51 of COCO's 101 recall points -> AP 51/101
    targets = [{"boxes": [box("cat", 0.0, 0.0, 0.3, 0.3), box("cat", 0.6, 0.6, 0.3, 0.3)]}]
    results = [{"boxes": [box("cat", 0.0, 0.0, 0.3, 0.3, 0.9)]}]
    r = evaluate_detection(results, targets, LABELS)
    assert r.metrics["map50"] == pytest.approx(51 / 101)
    assert r.per_sample[0] == pytest.approx(2 * 1 / (1 + 2))


def test_wrong_class_scores_zero():
    r = evaluate_detection([{"boxes": [box("dog", 0.1, 0.1, 0.3, 0.3, 0.9)]}],
                           [{"boxes": [box("cat", 0.1, 0.1, 0.3, 0.3)]}], LABELS)
    assert r.metrics["map50"] == 0.0 and r.metrics["map"] == 0.0
    assert r.per_class == {"cat": {"ap50": 0.0, "ap": 0.0, "n_gt": 1}}
    assert r.per_sample[0] == 0.0


def test_a_low_scored_false_positive_below_a_true_positive_keeps_ap():
    # ranking matters for AP: a wrong box scored below the right one leaves AP at 1; scored above it, AP drops
    target = [{"boxes": [box("cat", 0.1, 0.1, 0.3, 0.3)]}]
    good_first = [{"boxes": [box("cat", 0.1, 0.1, 0.3, 0.3, 0.9), box("cat", 0.6, 0.6, 0.2, 0.2, 0.2)]}]
    bad_first = [{"boxes": [box("cat", 0.1, 0.1, 0.3, 0.3, 0.2), box("cat", 0.6, 0.6, 0.2, 0.2, 0.9)]}]
    assert evaluate_detection(good_first, target, LABELS).metrics["map50"] == pytest.approx(1.0)
    assert evaluate_detection(bad_first, target, LABELS).metrics["map50"] == pytest.approx(0.5)
    # per-image F1 counts boxes at or above the score threshold (0.3): good_first keeps only the right box
    assert evaluate_detection(good_first, target, LABELS).per_sample[0] == pytest.approx(1.0)
    assert evaluate_detection(bad_first, target, LABELS).per_sample[0] == pytest.approx(0.0)


def test_polygons_count_as_their_boxes_and_empty_cases():
    targets = [{"polygons": [{"label": "dog", "points": [[0.2, 0.2], [0.6, 0.2], [0.4, 0.7]]}]},
               {"boxes": []}]
    results = [{"boxes": [box("dog", 0.2, 0.2, 0.4, 0.5, 0.7)]}, {"boxes": []}]
    r = evaluate_detection(results, targets, LABELS)
    assert r.metrics["map50"] == pytest.approx(1.0) and r.metrics["map"] == pytest.approx(1.0)
    np.testing.assert_allclose(r.per_sample, [1.0, 1.0])  # nothing to find and nothing found: F1 1
    nothing = evaluate_detection([{"boxes": []}, {"boxes": []}], targets, LABELS)
    assert nothing.metrics["map50"] == 0.0 and nothing.per_class["dog"]["ap50"] == 0.0
    no_gt = evaluate_detection([{"boxes": [box("cat", 0, 0, 0.1, 0.1, 0.9)]}], [{"boxes": []}], LABELS)
    assert no_gt.metrics["map50"] == 0.0 and no_gt.per_class == {} and no_gt.per_sample[0] == 0.0


def test_per_slice_is_the_metric_on_the_subset_and_dispatch():
    targets = [{"boxes": [box("cat", 0.1, 0.1, 0.3, 0.3)]}, {"boxes": [box("dog", 0.5, 0.5, 0.3, 0.3)]}]
    results = [{"boxes": [box("cat", 0.1, 0.1, 0.3, 0.3, 0.9)]}, {"boxes": [box("cat", 0.5, 0.5, 0.3, 0.3, 0.9)]}]
    slices = {"night": np.array([True, False]), "day": np.array([False, True])}
    r = evaluate("detection", results, targets, list(LABELS), slices)
    assert r.metrics["map50"] == pytest.approx(0.5)  # cat 1.0, dog 0.0
    assert r.per_slice["night"] == {"map50": pytest.approx(1.0), "map": pytest.approx(1.0),
                                    "map75": pytest.approx(1.0), "f1": 1.0, "n": 1}
    assert r.per_slice["day"]["map50"] == 0.0 and r.per_slice["day"]["n"] == 1
    d = r.to_dict()
    assert d["per_sample"] == [1.0, 0.0] and d["primary"] == "map50"


def test_image_f1_greedy_matching():
    gt = [(0, [0.0, 0.0, 0.2, 0.2]), (0, [0.5, 0.5, 0.2, 0.2])]
    preds = [(0, [0.0, 0.0, 0.2, 0.2], 0.9), (0, [0.01, 0.0, 0.2, 0.2], 0.8), (0, [0.5, 0.5, 0.2, 0.2], 0.1)]
    # the duplicate is a false positive; the third is below the score threshold
    assert image_f1(preds, gt) == pytest.approx(2 * 1 / (2 + 2))
    assert image_f1(preds, gt, score_threshold=0.0) == pytest.approx(2 * 2 / (3 + 2))


def test_bad_inputs_are_typed_errors():
    with pytest.raises(InvalidInput):
        evaluate_detection([{"boxes": [box("bird", 0, 0, 0.1, 0.1, 0.5)]}], [{"boxes": []}], LABELS)
    with pytest.raises(InvalidInput):
        evaluate_detection([{"boxes": []}], [{"boxes": [box("bird", 0, 0, 0.1, 0.1)]}], LABELS)
    with pytest.raises(InvalidInput):
        evaluate_detection([{"boxes": []}], [{"boxes": []}], LABELS, {"s": np.array([True, False])})
