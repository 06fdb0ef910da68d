"""Label checks of boxes, regions, point segmentation and cuboids (ml.quality_shapes) on the real fixtures.

The "predictions" are the true labels perturbed the way a good out-of-sample model would be (small jitter, high but
not perfect scores, a few low-score distractors); the given labels are the truth with a few deliberate mistakes.
The checks must rank the corrupted samples first and name the right kind of mistake."""
import copy
import subprocess
import sys

import numpy as np
import pytest

from ml.errors import InvalidInput, MissingDependency
from ml.quality_shapes import ISSUE_KINDS, ShapeFinding, interval_iou, label_issues


def _precision_at_k(findings: list[ShapeFinding], corrupted: set[int]) -> float:
    top = [f.index for f in findings[: len(corrupted)]]
    return len(set(top) & corrupted) / len(corrupted)


def _by_index(findings):
    return {f.index: f for f in findings}


def _check_ranked(findings, n):
    assert sorted(f.index for f in findings) == list(range(n))
    assert [f.rank for f in findings] == list(range(n))
    scores = [f.score for f in findings]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= f.quality <= 1.0 and abs(f.quality + f.score - 1.0) < 1e-9 for f in findings)


# ----------------------------------------------------------------------------------------------- detection

DET_LABELS = ("0", "1", "4", "7")


@pytest.fixture(scope="module")
def detection_case():
    from fixtures.detection import detection_scenes

    truth = [t for _, t in detection_scenes(40, seed=5, labels=DET_LABELS)]
    rng = np.random.default_rng(0)
    preds = []
    for t in truth:
        boxes = []
        for b in t["boxes"]:
            p = {"label": b["label"], "x": b["x"] + rng.normal(0, 0.04) * b["w"],
                 "y": b["y"] + rng.normal(0, 0.04) * b["h"],
                 "w": b["w"] * (1 + rng.normal(0, 0.04)), "h": b["h"] * (1 + rng.normal(0, 0.04)),
                 "score": float(rng.uniform(0.96, 0.999))}
            boxes.append(p)
        if rng.random() < 0.5:  # a low-score distractor somewhere
            boxes.append({"label": str(rng.choice(DET_LABELS)), "x": float(rng.uniform(0, 0.8)),
                          "y": float(rng.uniform(0, 0.8)), "w": 0.15, "h": 0.2, "score": float(rng.uniform(0.05, 0.3))})
        preds.append({"boxes": boxes})
    given = copy.deepcopy(truth)
    multi = [i for i, t in enumerate(truth) if len(t["boxes"]) >= 2]
    expected = {}
    for i in multi[:2]:  # a removed box
        given[i]["boxes"].pop(1)
        expected[i] = "overlooked"
    for i in multi[2:4]:  # a wrong class
        b = given[i]["boxes"][0]
        b["label"] = next(lab for lab in DET_LABELS if lab != b["label"])
        expected[i] = "swapped"
    for i in multi[4:6]:  # a box shifted by 60 % of its width
        b = given[i]["boxes"][0]
        b["x"] += 0.6 * b["w"]
        expected[i] = "badly_located"
    return preds, given, expected


def test_detection_ranks_corrupted_boxes_first(detection_case):
    preds, given, expected = detection_case
    findings = label_issues("detection", preds, given, DET_LABELS)
    _check_ranked(findings, len(given))
    assert _precision_at_k(findings, set(expected)) == 1.0
    by = _by_index(findings)
    for i, kind in expected.items():
        assert by[i].flagged and by[i].kinds[0] == kind, (i, kind, by[i].reason)
    clean = [f for f in findings if f.index not in expected]
    assert sum(f.flagged for f in clean) <= 2
    # the shapes concerned: the swapped box is the given one at its position, with the model's class
    i = next(i for i, k in expected.items() if k == "swapped")
    issue = by[i].issues[0]
    assert issue.label_index == 0 and issue.shape == given[i]["boxes"][0]
    assert issue.suggested_label != issue.label and issue.suggested_label == preds[i]["boxes"][0]["label"]
    i = next(i for i, k in expected.items() if k == "overlooked")
    assert by[i].issues[0].label_index is None and by[i].issues[0].predicted["label"] == preds[i]["boxes"][1]["label"]
    d = by[i].to_dict()
    assert d["kind"] == "label_issue" and d["kinds"][0] == "overlooked" and isinstance(d["quality"], float)


def test_detection_quality_is_cleanlabs(detection_case):
    from cleanlab.object_detection.rank import get_label_quality_scores

    preds, given, _ = detection_case
    findings = label_issues("detection", preds, given, DET_LABELS, use_cleanlab_filter=False)
    index = {k: j for j, k in enumerate(DET_LABELS)}

    def xyxy(b):
        return [b["x"] * 100, b["y"] * 100, (b["x"] + b["w"]) * 100, (b["y"] + b["h"]) * 100]

    labels = [{"bboxes": np.array([xyxy(b) for b in t["boxes"]]).reshape(-1, 4),
               "labels": np.array([index[b["label"]] for b in t["boxes"]], dtype=int)} for t in given]
    predictions = [[np.array([xyxy(b) + [b["score"]] for b in p["boxes"] if b["label"] == k]).reshape(-1, 5)
                    for k in DET_LABELS] for p in preds]
    expected = get_label_quality_scores(labels, predictions, verbose=False)
    ours = np.array([f.quality for f in sorted(findings, key=lambda f: f.index)])
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------------- regions

@pytest.fixture(scope="module")
def regions_case():
    from fixtures.regions import REGION_LABELS, region_clips

    truth = [t for _, t in region_clips(30, seed=3)]
    rng = np.random.default_rng(1)
    preds = []
    for t in truth:
        regs = []
        for r in t["regions"]:
            d = r["end"] - r["start"]
            regs.append({"label": r["label"], "start": r["start"] + rng.normal(0, 0.03) * d,
                         "end": r["end"] + rng.normal(0, 0.03) * d, "score": float(rng.uniform(0.95, 0.999))})
        preds.append({"regions": regs})
    given = copy.deepcopy(truth)
    labels = tuple(REGION_LABELS)
    expected = {0: "overlooked", 1: "swapped", 2: "badly_located", 3: "spurious"}
    given[0]["regions"].pop(0)
    r = given[1]["regions"][1]
    r["label"] = next(lab for lab in labels if lab != r["label"])
    r = given[2]["regions"][0]
    shift = 0.6 * (r["end"] - r["start"])
    r["start"], r["end"] = r["start"] + shift, r["end"] + shift
    end = max(x["end"] for x in given[3]["regions"])
    given[3]["regions"].append({"label": labels[0], "start": end + 0.2, "end": end + 0.6})  # an extra one in silence
    return preds, given, expected, labels


def test_regions_rank_and_kinds(regions_case):
    preds, given, expected, labels = regions_case
    findings = label_issues("audio_regions", preds, given, labels)
    _check_ranked(findings, len(given))
    assert _precision_at_k(findings, set(expected)) == 1.0
    by = _by_index(findings)
    for i, kind in expected.items():
        assert by[i].flagged and by[i].kinds == (kind,), (i, kind, by[i].reason)
    assert not any(f.flagged for f in findings if f.index not in expected)
    assert by[1].issues[0].label_index == 1 and by[1].issues[0].suggested_label == preds[1]["regions"][1]["label"]
    assert by[0].issues[0].predicted["start"] == preds[0]["regions"][0]["start"]
    assert by[2].issues[0].quality == pytest.approx(interval_iou(given[2]["regions"][0], preds[2]["regions"][0]))


def test_low_score_predictions_do_not_count_as_overlooked(regions_case):
    preds, given, _, labels = regions_case
    timid = [{"regions": [dict(r, score=0.6) for r in p["regions"]]} for p in preds]
    by = _by_index(label_issues("audio_regions", timid, given, labels))
    assert "overlooked" not in by[0].kinds and "swapped" not in by[1].kinds
    by = _by_index(label_issues("audio_regions", timid, given, labels, high_probability_threshold=0.55))
    assert by[0].kinds == ("overlooked",) and by[1].kinds == ("swapped",)


def test_unmatched_labels_are_weak_evidence_when_the_model_misses_many(regions_case):
    preds, given, expected, labels = regions_case
    by = _by_index(label_issues("audio_regions", preds, given, labels))
    assert by[3].issues[0].kind == "spurious" and by[3].issues[0].quality < 0.5
    # a model that misses one region in six: a region it does not see is most likely its own miss
    rng = np.random.default_rng(4)
    weak = [{"regions": [r for r in p["regions"] if rng.random() > 1 / 6]} for p in preds]
    findings = label_issues("audio_regions", weak, given, labels)
    assert not any("spurious" in f.kinds for f in findings)
    assert _by_index(findings)[3].quality < 1.0


# ------------------------------------------------------------------------------------------------- cuboids

@pytest.fixture(scope="module")
def cuboids_case():
    from fixtures.cuboids import CUBOID_LABELS, cuboid_scenes

    truth = [t for _, t in cuboid_scenes(20, 4)]
    rng = np.random.default_rng(2)
    preds = []
    for t in truth:
        cs = []
        for c in t["cuboids"]:
            size = np.asarray(c["size"])
            cs.append({"label": c["label"], "center": list(np.asarray(c["center"]) + rng.normal(0, 0.03, 3) * size),
                       "size": list(size * (1 + rng.normal(0, 0.03, 3))), "yaw": c["yaw"] + rng.normal(0, 0.03),
                       "score": float(rng.uniform(0.95, 0.999))})
        preds.append({"cuboids": cs})
    given = copy.deepcopy(truth)
    labels = tuple(CUBOID_LABELS)
    expected = {5: "swapped", 9: "overlooked", 14: "badly_located"}
    c = given[5]["cuboids"][2]
    c["label"] = next(lab for lab in labels if lab != c["label"])
    given[9]["cuboids"].pop(1)
    c = given[14]["cuboids"][0]
    c["center"] = [c["center"][0] + 0.5 * c["size"][0] * np.cos(c["yaw"]),
                   c["center"][1] + 0.5 * c["size"][0] * np.sin(c["yaw"]), c["center"][2]]
    return preds, given, expected, labels


def test_cuboids_rank_and_kinds(cuboids_case):
    preds, given, expected, labels = cuboids_case
    findings = label_issues("cuboids", preds, given, labels)
    _check_ranked(findings, len(given))
    assert _precision_at_k(findings, set(expected)) == 1.0
    by = _by_index(findings)
    for i, kind in expected.items():
        assert by[i].flagged and by[i].kinds == (kind,), (i, kind, by[i].reason)
    assert not any(f.flagged for f in findings if f.index not in expected)
    assert by[5].issues[0].label_index == 2 and by[5].issues[0].suggested_label == preds[5]["cuboids"][2]["label"]


# ------------------------------------------------------------------------------------------ point segmentation

@pytest.fixture(scope="module")
def segmentation_case():
    from fixtures.shapes import PART_LABELS, part_items

    truth = [t for _, t in part_items(24, 7)]
    labels = tuple(PART_LABELS)
    K = len(labels)
    rng = np.random.default_rng(3)
    proba = []
    for t in truth:
        y = np.asarray(t["point_labels"])
        true = np.where(y >= 0, y, rng.integers(0, K, len(y)))
        P = rng.dirichlet(np.ones(K), len(y)) * 0.15
        P[np.arange(len(y)), true] += 0.85
        unsure = rng.random(len(y)) < 0.05  # part boundaries: the model hesitates
        P[unsure] = rng.dirichlet(np.ones(K) * 2, unsure.sum())
        proba.append(P / P.sum(axis=1, keepdims=True))
    given = copy.deepcopy(truth)
    expected = {}
    for i, (src, dst, n) in {2: (1, 2, 40), 8: (2, 0, 60), 15: (0, 1, 25)}.items():
        y = np.asarray(given[i]["point_labels"])
        idx = np.flatnonzero(y == src)[:n]
        y[idx] = dst
        given[i]["point_labels"] = y.tolist()
        expected[i] = (labels[src], labels[dst], set(idx.tolist()))
    results = [{"point_labels": P.argmax(axis=1).tolist(), "point_scores": P.max(axis=1).tolist()} for P in proba]
    return results, given, proba, expected, labels


def test_point_segmentation_finds_relabeled_points(segmentation_case):
    results, given, proba, expected, labels = segmentation_case
    findings = label_issues("point_segmentation", results, given, labels, point_proba=proba)
    _check_ranked(findings, len(given))
    assert _precision_at_k(findings, set(expected)) == 1.0
    by = _by_index(findings)
    for i, (src, dst, idx) in expected.items():
        f = by[i]
        assert f.flagged and f.kinds == ("mislabeled_points",)
        issue = f.issues[0]
        # given the wrong class dst, the model says the true class src
        assert (issue.label, issue.suggested_label) == (dst, src)
        found = set(issue.points)
        # confident learning flags the relabeled points the model is surest about (p(true) over its class's mean
        # self-confidence): about 60 % of them here, all of them real
        assert len(found & idx) / len(idx) >= 0.5 and len(found & idx) / len(found) >= 0.95
    worst_clean = min(f.quality for f in findings if f.index not in expected)
    assert max(by[i].quality for i in expected) < worst_clean
    # a few scattered boundary points are the model's doubt, not a mistake
    assert not any(f.flagged for f in findings if f.index not in expected)


def test_point_segmentation_without_point_proba(segmentation_case):
    results, given, _, expected, labels = segmentation_case
    findings = label_issues("point_segmentation", results, given, labels)
    assert _precision_at_k(findings, set(expected)) == 1.0
    by = _by_index(findings)
    for i, (src, dst, idx) in expected.items():
        assert by[i].kinds == ("mislabeled_points",)
        issue = by[i].issues[0]
        assert (issue.label, issue.suggested_label) == (dst, src) and set(issue.points) <= idx
    assert not any(f.flagged for f in findings if f.index not in expected)


# ------------------------------------------------------------------------------------------- contract

def test_invalid_inputs():
    ok = {"regions": [{"label": "one", "start": 0.0, "end": 1.0, "score": 0.99}]}
    with pytest.raises(InvalidInput):
        label_issues("classification", [ok], [ok], ("one",))
    with pytest.raises(InvalidInput):
        label_issues("audio_regions", [ok], [ok, ok], ("one",))
    with pytest.raises(InvalidInput):
        label_issues("audio_regions", [ok], [ok], ("two",))
    with pytest.raises(InvalidInput):
        label_issues("audio_regions", [ok], [{"boxes": []}], ("one",))
    with pytest.raises(InvalidInput):
        label_issues("point_segmentation", [{"point_labels": [0, 1]}], [{"point_labels": [0, 1, 1]}], ("a", "b"))
    with pytest.raises(InvalidInput):
        label_issues("point_segmentation", [{"point_labels": [0, 1]}], [{"point_labels": [0, 1]}], ("a", "b"),
                     point_proba=[np.ones((2, 3)) / 3])
    assert set(ISSUE_KINDS) == {"detection", "audio_regions", "point_segmentation", "cuboids"}


def test_empty_labels_and_predictions_are_clean():
    f = label_issues("cuboids", [{"cuboids": []}], [{"cuboids": []}], ("box",))
    assert len(f) == 1 and f[0].quality == 1.0 and not f[0].flagged


def test_missing_cleanlab_raises_missing_dependency(monkeypatch):
    for name in list(sys.modules):
        if name == "cleanlab" or name.startswith("cleanlab."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    box = {"boxes": [{"label": "a", "x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2, "score": 0.99}]}
    with pytest.raises(MissingDependency) as exc:
        label_issues("detection", [box], [box], ("a",))
    assert "looplab[quality]" in exc.value.details["install"]
    with pytest.raises(MissingDependency):
        label_issues("point_segmentation", [{"point_labels": [0]}], [{"point_labels": [0]}], ("a",))
    # regions and cuboids need numpy only
    reg = {"regions": [{"label": "a", "start": 0.0, "end": 1.0, "score": 0.99}]}
    assert label_issues("audio_regions", [reg], [reg], ("a",))[0].quality == pytest.approx(1.0)


def test_importing_does_not_import_cleanlab():
    code = "import sys, ml.quality_shapes; print('cleanlab' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _daemon_worker(queue, preds, given):
    queue.put([(f.index, f.kinds, f.flagged) for f in label_issues("detection", preds, given, DET_LABELS)])


def test_detection_in_a_daemonic_process(detection_case):
    """Celery's prefork workers are daemonic: cleanlab's find_label_issues (a multiprocessing.Pool) cannot run
    there, and the check falls back to the per-box threshold with the same ranking and kinds."""
    import multiprocessing as mp

    preds, given, expected = detection_case
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_daemon_worker, args=(queue, preds, given), daemon=True)
    proc.start()
    rows = queue.get(timeout=60)
    proc.join(timeout=10)
    here = label_issues("detection", preds, given, DET_LABELS, use_cleanlab_filter=False)
    assert [r[0] for r in rows] == [f.index for f in here]
    for idx, kinds, flagged in rows:
        if idx in expected:
            assert flagged and kinds[0] == expected[idx]


# ------------------------------------------------------------------------------- with a real (tiny) learner

@pytest.mark.slow
def test_point_segmentation_with_a_cross_validated_pointnet(one_torch_thread):
    """Out-of-sample predictions of a PointNet trained for a few epochs (2-fold) on 40 lamps, 4 of them with
    half of one part relabeled as another: the 4 rank near the top and their top issue names the swap."""
    from fixtures.shapes import PART_LABELS, part_items
    from ml.learners import Dataset
    from ml.learners.segmentation import PointNetSegmentationLearner

    items = part_items(40, 11)
    labels = tuple(PART_LABELS)
    targets = [copy.deepcopy(t) for _, t in items]
    rng = np.random.default_rng(0)
    swaps = {}
    for i in (3, 12, 21, 30):
        y = np.asarray(targets[i]["point_labels"])
        src = int(rng.integers(0, 3))
        dst = (src + 1) % 3
        idx = np.flatnonzero(y == src)
        y[idx[: max(20, len(idx) // 2)]] = dst
        targets[i]["point_labels"] = y.tolist()
        swaps[i] = (labels[dst], labels[src])
    data = Dataset(contents=[c for c, _ in items], targets=targets, labels=labels)
    results, proba = [None] * 40, [None] * 40
    for k in range(2):
        train, test = np.flatnonzero(np.arange(40) % 2 != k), np.flatnonzero(np.arange(40) % 2 == k)
        learner = PointNetSegmentationLearner(epochs=6, n_points=256, draws=1, batch_size=8, device="cpu",
                                              arch={"global_dim": 128, "embed_dim": 64}).fit(data.subset(train))
        pred = learner.predict([data.contents[i] for i in test])
        for j, i in enumerate(test):
            results[i], proba[i] = pred.results[j], pred.extra["point_proba"][j]
    findings = label_issues("point_segmentation", results, targets, labels, point_proba=proba)
    top = [f.index for f in findings[:8]]
    assert set(swaps) <= set(top), top
    assert _precision_at_k(findings, set(swaps)) >= 0.5
    by = _by_index(findings)
    for i, (given_as, truly) in swaps.items():
        worst = max(by[i].issues, key=lambda s: len(s.points))
        assert (worst.label, worst.suggested_label) == (given_as, truly), (i, by[i].reason)
