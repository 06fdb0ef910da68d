import math

import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.metrics import evaluate
from ml.metrics.cuboids import average_precision

LABELS = ("car", "bike")


def cub(label, x, score=None, *, size=(2.0, 1.0, 1.0), yaw=0.0):
    c = {"label": label, "center": [x, 0.0, 0.5], "size": list(size), "yaw": yaw}
    if score is not None:
        c["score"] = score
    return c


def test_average_precision_hand_computed():
    # ranked hits T F T against 2 targets: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> 1/2*1 + 1/2*2/3
    assert average_precision([True, False, True], 2) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([True, True], 2) == 1.0
    assert average_precision([False, True], 1) == pytest.approx(0.5)
    assert average_precision([], 3) == 0.0
    assert math.isnan(average_precision([False], 0))


def test_ap_at_both_thresholds_and_per_sample_f1():
    targets = [{"cuboids": [cub("car", 0.0), cub("car", 10.0)]}, {"cuboids": [cub("bike", 0.0)]}]
    results = [
        # IoU 1 with the first car; IoU 1/3 with the second (shifted by half its length); a false car far away
        {"cuboids": [cub("car", 0.0, 0.9), cub("car", 11.0, 0.8), cub("car", 30.0, 0.7)]},
        # a bike turned by 90 degrees: IoU 1/3
        {"cuboids": [cub("bike", 0.0, 0.6, yaw=math.pi / 2)]},
    ]
    rep = evaluate("cuboids", results, targets, LABELS)
    assert rep.primary == "ap50"
    # car at 0.25: T T F of 2 -> 1; at 0.5: T F F -> 1/2
    assert rep.per_class["car"]["ap25"] == pytest.approx(1.0)
    assert rep.per_class["car"]["ap50"] == pytest.approx(0.5)
    assert rep.per_class["bike"]["ap25"] == pytest.approx(1.0)
    assert rep.per_class["bike"]["ap50"] == 0.0
    assert rep.metrics == pytest.approx({"ap25": 1.0, "ap50": 0.25})
    # per-sample F1 at 0.5: cloud 1: 1 match of 3 predicted and 2 targets -> 2/5; cloud 2: 0
    assert rep.per_sample.tolist() == pytest.approx([0.4, 0.0])
    loose = evaluate("cuboids", results, targets, LABELS, primary="ap25")
    assert loose.primary == "ap25" and loose.per_sample.tolist() == pytest.approx([0.8, 1.0])


def test_labels_must_match_and_duplicates_are_false_positives():
    targets = [{"cuboids": [cub("car", 0.0)]}]
    results = [{"cuboids": [cub("bike", 0.0, 0.9), cub("car", 0.0, 0.8), cub("car", 0.0, 0.7)]}]
    rep = evaluate("cuboids", results, targets, LABELS)
    assert rep.per_class["car"]["ap50"] == 1.0  # the duplicate ranks below the hit
    assert "bike" not in rep.per_class  # no bike target: no AP for bikes
    assert rep.per_sample.tolist() == pytest.approx([2 * 1 / 4])


def test_empty_clouds_slices_and_errors():
    targets = [{"cuboids": []}, {"cuboids": [cub("car", 0.0)]}]
    results = [{"cuboids": []}, {"cuboids": []}]
    rep = evaluate("cuboids", results, targets, LABELS, slices={"empty": np.array([True, False])})
    assert rep.per_sample.tolist() == [1.0, 0.0]
    assert rep.metrics["ap50"] == 0.0
    assert rep.per_slice["empty"] == {"ap25": 0.0, "ap50": 0.0, "n": 1.0}
    with pytest.raises(InvalidInput):
        evaluate("cuboids", [{"cuboids": [cub("truck", 0.0, 0.5)]}], [{"cuboids": []}], LABELS)
    with pytest.raises(InvalidInput):
        evaluate("cuboids", results, targets, LABELS, primary="ap70")
