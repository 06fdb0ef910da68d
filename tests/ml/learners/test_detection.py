"""CenterNetDetector: the learner contract round trip, that it learns on the digit scenes (two variants), ONNX
export with parity, and the shared decoding."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from fixtures.detection import VARIANTS, detection_scenes
from ml import learners
from ml.errors import InvalidInput, MLError
from ml.learners import Dataset, Predictions
from ml.learners.detection import CenterNetDetector, decode, flip_instability, targets_to_boxes
from ml.metrics.detection import evaluate_detection

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ("0", "1", "4", "7")
# small enough for the 2-core test machine; the defaults (96 px, width 32, 40 epochs) are the demo's
FAST = dict(image_size=64, width=16, epochs=15, batch_size=16, lr=5e-3, device="cpu", random_state=0)


def _data(n: int, *, seed: int, variant: str = "main", weights=None) -> Dataset:
    scenes = detection_scenes(n, seed=seed, variant=variant, labels=LABELS)
    return Dataset(contents=[c for c, _ in scenes], targets=[t for _, t in scenes], labels=LABELS,
                   sample_weight=weights)


def _trivial_results(train: Dataset, n: int) -> list[dict]:
    """A trivial detector: every label at the 16 cells of a 4x4 grid, with the training boxes' mean size."""
    sizes = np.array([[b["w"], b["h"]] for t in train.targets for b in t["boxes"]])
    w, h = sizes.mean(0)
    grid = [(x, y) for x in np.linspace(0, 1 - w, 4) for y in np.linspace(0, 1 - h, 4)]
    boxes = [{"label": lab, "x": float(x), "y": float(y), "w": float(w), "h": float(h), "score": 0.5}
             for lab in LABELS for x, y in grid]
    return [{"boxes": boxes} for _ in range(n)]


def _learn(variant: str, seed: int):
    train, test = _data(120, seed=seed, variant=variant), _data(60, seed=seed + 100, variant=variant)
    t0 = time.perf_counter()
    model = CenterNetDetector(**FAST).fit(train)
    seconds = time.perf_counter() - t0
    untrained = CenterNetDetector(**{**FAST, "epochs": 1, "lr": 1e-12}).fit(train)
    return model, train, test, seconds, untrained


@pytest.fixture(scope="module")
def main_run():
    return _learn("main", seed=0)


def _check_learns(run, variant: str, floor: float) -> None:
    model, train, test, seconds, untrained = run
    report = model.evaluate(test)
    trivial = evaluate_detection(_trivial_results(train, len(test)), test.targets, LABELS).metrics
    blank = untrained.evaluate(test).metrics
    baseline = max(trivial["map50"], blank["map50"])
    msg = (f"{variant}: mAP@0.5 {report.metrics['map50']:.3f} (mAP {report.metrics['map']:.3f}, F1 "
           f"{report.metrics['f1']:.3f}) vs trivial grid {trivial['map50']:.3f}, untrained {blank['map50']:.3f}; "
           f"fit {seconds:.1f}s on {len(train)} images")
    print(msg)
    assert report.metrics["map50"] >= floor, msg
    assert report.metrics["map50"] >= baseline + 0.25, msg
    assert report.per_sample.shape == (len(test),) and np.all((report.per_sample >= 0) & (report.per_sample <= 1))
    assert set(report.per_class) == set(LABELS)


def test_learns_on_the_main_variant(main_run):
    _check_learns(main_run, "main", floor=0.5)


def test_learns_on_the_shifted_variant():
    # other scales (smaller digits), dark ink on light stripes, lower contrast, another seed
    _check_learns(_learn("shifted", seed=1), "shifted", floor=0.3)


def test_contract_round_trip(main_run):
    model, _, test, _, _ = main_run
    assert learners.get("image", "detection") is CenterNetDetector
    assert isinstance(model, learners.Learner)
    contents = list(test.contents[:12])
    pred = model.predict(contents)
    assert isinstance(pred, Predictions) and len(pred) == 12
    assert pred.uncertainty.shape == (12,) and np.all(np.isfinite(pred.uncertainty))
    assert np.all((pred.uncertainty >= 0) & (pred.uncertainty <= 1))
    assert pred.embedding.dtype == np.float32 and pred.embedding.shape == (12, 32)
    for key in ("u_box", "u_peak", "u_flip"):
        assert pred.extra[key].shape == (12,)
    np.testing.assert_allclose(pred.uncertainty, (pred.extra["u_box"] + pred.extra["u_peak"]
                                                  + pred.extra["u_flip"]) / 3)
    for r in pred.results:
        for b in r["boxes"]:
            assert set(b) == {"label", "x", "y", "w", "h", "score"} and b["label"] in LABELS
            assert 0 <= b["x"] <= 1 and 0 <= b["y"] <= 1 and b["x"] + b["w"] <= 1 + 1e-9
            assert b["score"] >= model.score_threshold
    # saved and loaded: the same predictions
    again = CenterNetDetector.from_bytes(model.to_bytes()).predict(contents)
    assert again.results == pred.results
    np.testing.assert_array_equal(again.embedding, pred.embedding)
    np.testing.assert_array_equal(again.uncertainty, pred.uncertainty)


def test_export_runner_and_parity(main_run):
    model, _, test, _, _ = main_run
    contents = list(test.contents[:16])
    export = model.export_onnx()
    assert export.model[:2] and export.manifest["labels"] == list(LABELS)
    assert export.manifest["decoding"]["method"] == "centernet"
    ours, theirs = model.predict(contents), export.runner.predict(contents)
    assert export.runner.labels == LABELS
    assert [[b["label"] for b in r["boxes"]] for r in theirs.results] == \
        [[b["label"] for b in r["boxes"]] for r in ours.results]
    np.testing.assert_allclose(theirs.embedding, ours.embedding, atol=1e-4)
    np.testing.assert_allclose(theirs.uncertainty, ours.uncertainty, atol=1e-3)
    check = model.parity(export, contents)
    print(check.to_dict())
    assert check.passed, check.to_dict()
    assert check.n == 16 and check.max_abs_diff < 1e-3 and check.agreement == 1.0


def test_uncertainty_is_higher_on_unfamiliar_scenes(main_run):
    model, _, test, _, _ = main_run
    familiar = model.predict(list(test.contents[:30])).uncertainty.mean()
    other = _data(30, seed=7, variant="shifted").contents  # dark digits on light stripes: never seen
    unfamiliar = model.predict(list(other)).uncertainty.mean()
    assert unfamiliar > familiar, (familiar, unfamiliar)


def test_seeded_deterministic_and_sample_weights():
    tiny = dict(image_size=32, width=8, epochs=2, batch_size=4, device="cpu")
    data = _data(8, seed=3)
    a = CenterNetDetector(**tiny, random_state=5).fit(data)
    b = CenterNetDetector(**tiny, random_state=5).fit(data)
    pa, pb = a.predict(data.contents), b.predict(data.contents)
    assert pa.results == pb.results
    np.testing.assert_array_equal(pa.uncertainty, pb.uncertainty)
    assert a.history_ == [dict(r, seconds=r2["seconds"]) for r, r2 in zip(b.history_, a.history_)]
    # sample weights weigh images: zero weight drops an image, other weights change the fit
    w = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    c = CenterNetDetector(**tiny, random_state=5).fit(_data(8, seed=3, weights=w))
    d = CenterNetDetector(**tiny, random_state=5).fit(data.subset([0, 1, 2, 3]))
    assert c.history_[-1]["train_loss"] == pytest.approx(d.history_[-1]["train_loss"], rel=1e-5)
    assert c.history_[-1]["train_loss"] != pytest.approx(a.history_[-1]["train_loss"], rel=1e-5)
    # progress and validation: one call per epoch; the best validation epoch is kept
    calls = []
    e = CenterNetDetector(**tiny).fit(data, validation=_data(4, seed=9), progress=lambda p, m: calls.append(p))
    assert calls == [50.0, 100.0] and e.best_epoch_ in (1, 2)
    assert all(r["val_loss"] is not None for r in e.history_)


def test_targets_polygons_as_boxes_and_errors():
    rows = targets_to_boxes({"boxes": [{"label": "1", "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}],
                             "polygons": [{"label": "7", "points": [[0.5, 0.5], [0.9, 0.6], [0.7, 0.95]]}]},
                            LABELS)
    np.testing.assert_allclose(rows, [[1, 0.1, 0.2, 0.3, 0.4], [3, 0.5, 0.5, 0.4, 0.45]])
    clipped = targets_to_boxes({"boxes": [{"label": "0", "x": 0.8, "y": -0.1, "w": 0.4, "h": 0.3}]}, LABELS)
    np.testing.assert_allclose(clipped, [[0, 0.8, 0.0, 0.2, 0.2]])
    with pytest.raises(InvalidInput):
        targets_to_boxes({"boxes": [{"label": "9", "x": 0, "y": 0, "w": 0.1, "h": 0.1}]}, LABELS)
    with pytest.raises(InvalidInput):
        targets_to_boxes({"boxes": [{"label": "0", "x": "a", "y": 0, "w": 0.1, "h": 0.1}]}, LABELS)
    with pytest.raises(InvalidInput):
        CenterNetDetector().predict([b"x"])  # not fitted
    with pytest.raises(InvalidInput) as err:
        CenterNetDetector(image_size=50).fit(_data(4, seed=0))
    assert err.value.code == "invalid_input"
    with pytest.raises(InvalidInput) as err:
        CenterNetDetector(device="cpu").fit(_data(1, seed=0))
    assert err.value.code == "not_enough_labels"
    model = CenterNetDetector(image_size=32, width=8, epochs=1, batch_size=4, device="cpu").fit(_data(4, seed=0))
    with pytest.raises(MLError) as err:
        model.predict([b"not an image"])
    assert err.value.code in ("unsupported_format", "corrupt_data")


def test_decode_peaks_nms_and_flip_instability():
    c, h, w = 2, 16, 16
    hm = np.full((c, h, w), -10.0, dtype=np.float32)
    wh = np.zeros((2, h, w), dtype=np.float32)
    off = np.zeros((2, h, w), dtype=np.float32)
    hm[0, 4, 4], hm[0, 4, 5] = 3.0, 2.0     # a peak and its neighbour: the 3x3 max-pool keeps only the peak
    hm[1, 4, 4] = 1.0                       # the same cell, another class: class-wise NMS keeps both
    hm[0, 12, 10] = 0.0                     # score 0.5
    wh[:, 4, 4], off[:, 4, 4] = (4.0, 2.0), (0.5, 0.5)
    wh[:, 12, 10] = (2.0, 2.0)
    dets = decode(hm, wh, off, score_threshold=0.3)
    assert [d["cls"] for d in dets] == [0, 1, 0]
    np.testing.assert_allclose(dets[0]["box"], [(4.5 - 2) / 16, (4.5 - 1) / 16, 4 / 16, 2 / 16])
    np.testing.assert_allclose(dets[2]["box"], [9 / 16, 11 / 16, 2 / 16, 2 / 16])
    assert dets[0]["score"] == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-6)
    assert len(decode(hm, wh, off, score_threshold=0.6)) == 2
    assert len(decode(hm, wh, off, score_threshold=0.3, max_detections=1)) == 1
    # overlapping boxes of one class: NMS keeps the best
    hm2 = np.full((1, h, w), -10.0, dtype=np.float32)
    hm2[0, 4, 4], hm2[0, 4, 6] = 3.0, 2.0
    wh2 = np.full((2, h, w), 10.0, dtype=np.float32)  # IoU 8/12 > 0.5
    assert len(decode(hm2, wh2, np.zeros_like(wh2), score_threshold=0.3)) == 1
    # flip instability: a mirrored prediction that maps back exactly is stable; a missing one is not
    d = {"cls": 0, "box": np.array([0.1, 0.2, 0.3, 0.2]), "score": 0.9}
    mirrored = {"cls": 0, "box": np.array([1 - 0.1 - 0.3, 0.2, 0.3, 0.2]), "score": 0.8}
    assert flip_instability([d], [mirrored]) == pytest.approx(0.0)
    assert flip_instability([d], []) == pytest.approx(1.0)
    assert flip_instability([], []) == pytest.approx(0.0)
    assert flip_instability([d], [{**mirrored, "cls": 1}]) == pytest.approx(1.0)


def test_fixture_scenes_are_deterministic_png_with_ink_boxes():
    a = detection_scenes(6, seed=0)
    assert a == detection_scenes(6, seed=0)
    assert a != detection_scenes(6, seed=1)
    assert set(VARIANTS) == {"main", "shifted"}
    for png, target in a + detection_scenes(6, seed=0, variant="shifted", labels=("3",)):
        im = Image.open(io.BytesIO(png))
        assert im.format == "PNG" and im.size == (96, 96) and im.mode == "RGB"
        assert 1 <= len(target["boxes"]) <= 4
        for b in target["boxes"]:
            assert b["label"] in {str(i) for i in range(10)}
            assert 0 <= b["x"] and b["x"] + b["w"] <= 1 and 0 <= b["y"] and b["y"] + b["h"] <= 1
            assert all(isinstance(b[k], float) for k in ("x", "y", "w", "h"))
    assert {b["label"] for _, t in detection_scenes(10, seed=2, labels=("3",)) for b in t["boxes"]} == {"3"}
    with pytest.raises(ValueError):
        detection_scenes(1, variant="nope")
