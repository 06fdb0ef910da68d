"""PointNetSegmentationLearner: the contract round trip, export parity, and that it learns the lamp parts."""
import numpy as np
import pytest

from fixtures.shapes import PART_LABELS, part_items
from ml.errors import InvalidInput
from ml.learners import Dataset, get
from ml.learners.segmentation import PointNetSegmentationLearner
from ml.metrics import evaluate

TINY = dict(epochs=6, n_points=256, draws=1, batch_size=8, arch={"global_dim": 128, "embed_dim": 64}, device="cpu")


def _dataset(items):
    return Dataset(contents=[b for b, _ in items], targets=[t for _, t in items], labels=tuple(PART_LABELS))


@pytest.fixture(scope="module")
def fitted():
    # 10 % of the training points unlabeled (-1): they must be ignored, not break training
    return PointNetSegmentationLearner(random_state=0, **TINY).fit(_dataset(part_items(16, 0, unlabeled=0.1)))


@pytest.fixture(scope="module")
def held_out():
    return {"default": _dataset(part_items(10, 1, "default")), "sparse": _dataset(part_items(10, 2, "sparse"))}


def test_registered():
    assert get("pointcloud", "point_segmentation") is PointNetSegmentationLearner


def test_predict_contract(fitted, held_out):
    data = held_out["default"]
    pred = fitted.predict(data.contents[:4])
    assert len(pred) == 4
    for r, t, proba in zip(pred.results, data.targets[:4], pred.extra["point_proba"]):
        assert len(r["point_labels"]) == len(t["point_labels"]) == len(r["point_scores"]) == len(proba)
        assert set(r["point_labels"]) <= {0, 1, 2}
        assert all(1 / 3 - 1e-6 <= s <= 1.0 for s in r["point_scores"])
    assert pred.uncertainty.shape == (4,) and np.isfinite(pred.uncertainty).all()
    assert ((pred.uncertainty >= 0) & (pred.uncertainty <= 1)).all()
    assert pred.embedding.shape == (4, 64) and pred.embedding.dtype == np.float32
    assert fitted.predict([]).results == []


def test_persistence_round_trip(fitted, held_out):
    contents = held_out["default"].contents[:3]
    again = PointNetSegmentationLearner.from_bytes(fitted.to_bytes())
    a, b = fitted.predict(contents), again.predict(contents)
    assert a.results == b.results
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert again.get_params() == fitted.get_params()


def test_onnx_export_and_parity(fitted, held_out):
    contents = held_out["sparse"].contents[:4]
    export = fitted.export_onnx()
    assert export.manifest["task_type"] == "point_segmentation" and export.manifest["labels"] == PART_LABELS
    ref, got = fitted.predict(contents), export.runner.predict(contents)
    agree = np.mean([np.mean(np.asarray(x["point_labels"]) == y["point_labels"])
                     for x, y in zip(ref.results, got.results)])
    assert agree >= 0.999
    np.testing.assert_allclose(ref.embedding, got.embedding, atol=1e-4)
    check = fitted.parity(export, contents)
    assert check.passed, check.to_dict()
    assert check.max_abs_diff < 1e-4 and check.agreement == 1.0


def test_seeded_and_deterministic():
    data = _dataset(part_items(4, 3))
    small = dict(TINY, epochs=1)
    a = PointNetSegmentationLearner(random_state=7, **small).fit(data).predict(data.contents[:2])
    b = PointNetSegmentationLearner(random_state=7, **small).fit(data).predict(data.contents[:2])
    assert a.results == b.results
    np.testing.assert_array_equal(a.embedding, b.embedding)


def test_learns_parts_on_both_variants(fitted, held_out):
    figures = {}
    for name, data in held_out.items():
        report = fitted.evaluate(data)
        # trivial baseline: every labeled point gets the most frequent training class
        majority = int(np.bincount(np.concatenate([np.asarray(t["point_labels"]) for t in data.targets]) + 1)[1:]
                       .argmax())
        base = evaluate("point_segmentation",
                        [{"point_labels": [majority] * len(t["point_labels"])} for t in data.targets],
                        data.targets, data.labels).metrics["miou"]
        figures[name] = (round(report.metrics["miou"], 3), round(base, 3))
        assert report.per_sample.shape == (len(data),)
    assert all(m > b + 0.3 for m, b in figures.values()), f"mIoU vs majority baseline: {figures}"
    assert figures["default"][0] > 0.7, figures


def test_bad_targets_are_typed_errors():
    items = part_items(2, 0)
    wrong_length = [(items[0][0], {"point_labels": items[0][1]["point_labels"][:-1]}), items[1]]
    with pytest.raises(InvalidInput):
        PointNetSegmentationLearner(**TINY).fit(_dataset(wrong_length))
    out_of_range = [(items[0][0], {"point_labels": [3] * len(items[0][1]["point_labels"])}), items[1]]
    with pytest.raises(InvalidInput):
        PointNetSegmentationLearner(**TINY).fit(_dataset(out_of_range))
    unlabeled = [(b, {"point_labels": [-1] * len(t["point_labels"])}) for b, t in items]
    with pytest.raises(InvalidInput) as err:
        PointNetSegmentationLearner(**TINY).fit(_dataset(unlabeled))
    assert err.value.code == "not_enough_labels"
    with pytest.raises(InvalidInput):
        PointNetSegmentationLearner(**TINY).predict(items[0][0:1])
