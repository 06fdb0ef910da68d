"""SegmentFitCuboidLearner: the contract round trip, export parity, and that it finds the fixture's objects."""
import numpy as np
import pytest

from fixtures.cuboids import CUBOID_LABELS, cuboid_scenes
from ml.errors import InvalidInput
from ml.learners import Dataset, get
from ml.learners.cuboids import SegmentFitCuboidLearner, cuboid_point_labels
from ml.metrics import evaluate

TINY = dict(epochs=10, n_points=512, draws=2, batch_size=4, arch={"global_dim": 128, "embed_dim": 64}, device="cpu")


def _dataset(items):
    return Dataset(contents=[b for b, _ in items], targets=[t for _, t in items], labels=tuple(CUBOID_LABELS))


@pytest.fixture(scope="module")
def train():
    return _dataset(cuboid_scenes(12, 0, "default"))


@pytest.fixture(scope="module")
def fitted(train):
    return SegmentFitCuboidLearner(random_state=0, **TINY).fit(train)


@pytest.fixture(scope="module")
def held_out():
    return {"default": _dataset(cuboid_scenes(8, 1, "default")), "clutter": _dataset(cuboid_scenes(8, 2, "clutter"))}


def test_registered():
    assert get("pointcloud", "cuboids") is SegmentFitCuboidLearner


def test_point_labels_from_cuboids():
    pts = np.array([[0, 0, 0.5], [0.9, 0, 0.5], [1.1, 0, 0.5], [0, 0, 1.2]])
    target = {"cuboids": [{"label": "cylinder", "center": [0, 0, 0.5], "size": [2, 1, 1], "yaw": 0.0}]}
    assert cuboid_point_labels(pts, target, CUBOID_LABELS, 0).tolist() == [2, 2, 0, 0]
    with pytest.raises(InvalidInput):
        cuboid_point_labels(pts, {"cuboids": [{"label": "car", "center": [0, 0, 0], "size": [1, 1, 1]}]},
                            CUBOID_LABELS, 0)


def test_predict_contract(fitted, held_out):
    pred = fitted.predict(held_out["default"].contents[:3])
    assert len(pred) == 3
    for r in pred.results:
        for c in r["cuboids"]:
            assert c["label"] in CUBOID_LABELS and 0 <= c["score"] <= 1 and 0 <= c["yaw"] < np.pi
            assert len(c["center"]) == 3 and len(c["size"]) == 3 and c["size"][0] >= c["size"][1]
        scores = [c["score"] for c in r["cuboids"]]
        assert scores == sorted(scores, reverse=True)
    assert pred.uncertainty.shape == (3,) and np.isfinite(pred.uncertainty).all()
    assert pred.embedding.shape == (3, 64) and pred.embedding.dtype == np.float32


def test_persistence_export_and_parity(fitted, held_out):
    contents = held_out["clutter"].contents[:3]
    again = SegmentFitCuboidLearner.from_bytes(fitted.to_bytes())
    ref = fitted.predict(contents)
    assert again.predict(contents).results == ref.results
    export = fitted.export_onnx()
    assert export.manifest["params"]["classifier"] == fitted.decoding_["classifier"]
    got = export.runner.predict(contents)
    assert [len(r["cuboids"]) for r in got.results] == [len(r["cuboids"]) for r in ref.results]
    check = fitted.parity(export, contents)
    assert check.passed, check.to_dict()


def test_seeded_and_deterministic(train):
    small = dict(TINY, epochs=1)
    data = train.subset([0, 1])
    a = SegmentFitCuboidLearner(random_state=3, **small).fit(data).predict(data.contents)
    b = SegmentFitCuboidLearner(random_state=3, **small).fit(data).predict(data.contents)
    assert a.results == b.results
    np.testing.assert_array_equal(a.embedding, b.embedding)


def test_finds_objects_on_both_variants(fitted, held_out, train):
    # trivial baseline: the ground-truth boxes themselves, all given the most frequent training label
    counts = {k: sum(c["label"] == k for t in train.targets for c in t["cuboids"]) for k in CUBOID_LABELS}
    majority = max(counts, key=counts.get)
    figures = {}
    for name, data in held_out.items():
        report = fitted.evaluate(data)
        base = evaluate("cuboids", [{"cuboids": [dict(c, label=majority, score=1.0) for c in t["cuboids"]]}
                                    for t in data.targets], data.targets, data.labels).metrics
        figures[name] = {"ap25": round(report.metrics["ap25"], 3), "ap50": round(report.metrics["ap50"], 3),
                         "baseline": round(base["ap50"], 3)}
        assert report.primary == "ap50" and report.per_sample.shape == (len(data),)
    assert all(f["ap50"] > f["baseline"] + 0.15 for f in figures.values()), f"AP vs majority-label boxes: {figures}"
    assert figures["default"]["ap50"] > 0.7, figures
