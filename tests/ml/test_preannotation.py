"""ml.preannotation: what an annotator kept of a pre-annotation, per task type."""
import math

import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.preannotation import compare_preannotation, interval_iou, match_shapes, polygon_iou


def _counts(c):
    return (c.n_predicted, c.kept, c.edited, c.deleted, c.added)


def test_detection_kept_moved_relabelled_deleted_added():
    predicted = {"model": 7, "boxes": [
        {"label": "a", "x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2, "score": 0.9},   # kept as is
        {"label": "a", "x": 0.5, "y": 0.5, "w": 0.2, "h": 0.2, "score": 0.8},   # moved a little
        {"label": "b", "x": 0.1, "y": 0.6, "w": 0.2, "h": 0.2, "score": 0.7},   # relabelled in place
        {"label": "b", "x": 0.8, "y": 0.1, "w": 0.1, "h": 0.1, "score": 0.6}]}  # deleted
    result = {"boxes": [
        {"label": "a", "x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2},
        {"label": "a", "x": 0.55, "y": 0.5, "w": 0.2, "h": 0.2},
        {"label": "c", "x": 0.1, "y": 0.6, "w": 0.2, "h": 0.2},
        {"label": "c", "x": 0.4, "y": 0.05, "w": 0.05, "h": 0.05}], "polygons": []}  # added
    c = compare_preannotation("detection", predicted, result)
    assert _counts(c) == (4, 1, 2, 1, 1)
    assert c.as_dict() == {"kind": "shapes", "n_predicted": 4, "kept": 1, "edited": 2, "deleted": 1, "added": 1}


def test_detection_polygons_and_the_three_passes():
    tri = [[0.1, 0.1], [0.5, 0.1], [0.3, 0.5]]
    assert polygon_iou(tri, tri) == 1.0
    shifted = [[x + 0.01, y] for x, y in tri]
    assert 0.9 < polygon_iou(tri, shifted) < 0.99
    # a concave polygon (an L) against its bounding square: 3 of 4 quarters
    ell = [[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]]
    assert polygon_iou(ell, [[0, 0], [2, 0], [2, 2], [0, 2]]) == pytest.approx(0.75, abs=0.01)
    corner = [[0.6, 0.6], [0.9, 0.6], [0.9, 0.9]]
    predicted = {"polygons": [{"label": "a", "points": tri}, {"label": "a", "points": corner}]}
    result = {"boxes": [], "polygons": [{"label": "a", "points": shifted},
                                        {"label": "a", "points": [[0.85, 0.85], [0.99, 0.85], [0.99, 0.99]]}]}
    # the first moved by 1% (IoU < 0.95: edited); the second moved far but still overlapping with its label: edited
    assert _counts(compare_preannotation("detection", predicted, result)) == (2, 0, 2, 0, 0)
    # same overlap with another label is deleted + added, not edited
    result["polygons"][1]["label"] = "b"
    assert _counts(compare_preannotation("detection", predicted, result)) == (2, 0, 1, 1, 1)


def test_match_shapes_is_one_to_one_and_prefers_the_best_pair():
    iou = np.array([[0.97, 0.5], [0.96, 0.0]])
    same = np.ones((2, 2), dtype=bool)
    # p0 and p1 both want r0: p0 (the better pair) keeps it; p1 is deleted, r1 added (its only overlap, p0, is taken)
    assert match_shapes(iou, same) == (1, 0, 1, 1)
    assert match_shapes(np.zeros((0, 3)), np.zeros((0, 3), dtype=bool)) == (0, 0, 0, 3)
    with pytest.raises(InvalidInput):
        match_shapes(np.zeros((2, 2)), np.zeros((2, 3), dtype=bool))


def test_audio_regions_by_temporal_iou_and_clip_label():
    assert interval_iou({"start": 0, "end": 2}, {"start": 1, "end": 3}) == pytest.approx(1 / 3)
    predicted = {"model": 3, "label": "yes", "regions": [
        {"label": "yes", "start": 0.1, "end": 0.5}, {"label": "no", "start": 0.6, "end": 0.9},
        {"label": "no", "start": 1.2, "end": 1.4}]}
    result = {"label": "no", "regions": [
        {"label": "yes", "start": 0.1, "end": 0.5},       # kept
        {"label": "yes", "start": 0.6, "end": 0.9}]}      # relabelled: edited; the third deleted
    c = compare_preannotation("audio_regions", predicted, result)
    assert _counts(c) == (3, 1, 1, 1, 0) and c.label_kept is False
    assert "label_kept" not in compare_preannotation("audio_regions", {"regions": []}, {"regions": []}).as_dict()


def test_cuboids_by_3d_iou():
    box = {"label": "car", "center": [0.0, 0.0, 1.0], "size": [4.0, 2.0, 1.5], "yaw": 0.3}
    turned = {**box, "yaw": 0.3 + math.pi}  # the same box
    resized = {**box, "size": [4.5, 2.0, 1.5]}
    far = {**box, "center": [20.0, 0.0, 1.0]}
    c = compare_preannotation("cuboids", {"cuboids": [box, box, box]}, {"cuboids": [turned, resized]})
    assert _counts(c) == (3, 1, 1, 1, 0)
    assert _counts(compare_preannotation("cuboids", {"cuboids": [box]}, {"cuboids": [far]})) == (1, 0, 0, 1, 1)


def test_point_segmentation_and_classification():
    predicted = {"point_labels": [0, 0, 1, 1, -1, -1, 2]}
    result = {"point_labels": [0, 1, 1, -1, 2, -1, 2]}
    c = compare_preannotation("point_segmentation", predicted, result)
    assert c.kind == "points" and _counts(c) == (5, 3, 1, 1, 1)
    with pytest.raises(InvalidInput) as err:
        compare_preannotation("point_segmentation", predicted, {"point_labels": [0]})
    assert err.value.code == "invalid_preannotation"
    kept = compare_preannotation("classification", {"label": "7", "confidence": 0.4}, {"label": "7"})
    assert kept.kind == "label" and _counts(kept) == (1, 1, 0, 0, 0)
    assert _counts(compare_preannotation("classification", {"label": "7"}, {"label": "1"})) == (1, 0, 1, 0, 0)
    with pytest.raises(InvalidInput) as err:
        compare_preannotation("video", {}, {})
    assert err.value.code == "invalid_task_type"


def test_many_shapes_stay_fast_and_match_the_pairwise_iou():
    import time

    from ml.preannotation import box_iou

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.9, size=(2000, 2))
    boxes = [{"label": "a", "x": x, "y": y, "w": 0.05, "h": 0.05} for x, y in xy]
    moved = [{**b, "x": b["x"] + 0.001} for b in boxes[:1500]]
    t0 = time.perf_counter()
    c = compare_preannotation("detection", {"boxes": boxes}, {"boxes": moved})
    assert time.perf_counter() - t0 < 5
    assert c.n_predicted == 2000 and c.kept + c.edited == 1500 and c.deleted == 500 and c.added == 0
    assert box_iou(boxes[0], moved[0]) == pytest.approx(0.049 / 0.051)  # the vectorised IoU agrees: kept
    regions = [{"label": "a", "start": float(t), "end": float(t) + 0.5} for t in range(0, 3000, 1)]
    assert compare_preannotation("audio_regions", {"regions": regions}, {"regions": regions}).kept == 3000
    cubes = [{"label": "a", "center": [float(3 * i), 0.0, 0.0], "size": [1.0, 1.0, 1.0], "yaw": 0.1 * i}
             for i in range(500)]
    t0 = time.perf_counter()
    assert compare_preannotation("cuboids", {"cuboids": cubes}, {"cuboids": cubes}).kept == 500
    assert time.perf_counter() - t0 < 5
