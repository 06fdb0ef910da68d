"""FrameRegionLearner (audio_regions, "frames"): the contract round trip, learning on the spoken-word region
fixture (two variants, against an energy-detector baseline), ONNX export and parity."""
from __future__ import annotations

import time

import numpy as np
import pytest

from fixtures.regions import REGION_LABELS, TEST_INSTANCES, region_clips
from ml import learners
from ml.errors import InvalidInput
from ml.learners.base import Dataset
from ml.learners.regions import (FrameRegionLearner, RegionOnnxRunner, clip_features, decode_regions,
                                 frame_targets)
from ml.metrics.regions import evaluate_regions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"epochs": 12, "batch_size": 8, "width": 32}


def _dataset(items, weights=None) -> Dataset:
    return Dataset(contents=[c for c, _ in items], targets=[t for _, t in items], labels=REGION_LABELS,
                   sample_weight=weights)


@pytest.fixture(scope="module")
def quiet():
    """Train on quiet clips (voices 0-19), tune thresholds on others, test on unseen voices (20-29)."""
    train = _dataset(region_clips(32, seed=0, variant="quiet"))
    val = _dataset(region_clips(12, seed=1, variant="quiet", instances=range(15, 20)))
    test = _dataset(region_clips(24, seed=2, variant="quiet", instances=TEST_INSTANCES))
    t0 = time.perf_counter()
    learner = FrameRegionLearner(**TINY, random_state=0).fit(train, validation=val)
    return learner, train, test, time.perf_counter() - t0


@pytest.fixture(scope="module")
def noisy():
    """The second variant: pink noise and hum 20 dB under the words, shorter gaps, other seeds."""
    train = _dataset(region_clips(32, seed=10, variant="noisy"))
    val = _dataset(region_clips(12, seed=11, variant="noisy", instances=range(15, 20)))
    test = _dataset(region_clips(24, seed=12, variant="noisy", instances=TEST_INSTANCES))
    learner = FrameRegionLearner(**TINY, random_state=0).fit(train, validation=val)
    return learner, train, test


def _energy_baseline(train: Dataset, test: Dataset) -> list[dict]:
    """A trivial detector: frames whose mean log-mel is above the midpoint between the clip's 10th percentile
    and its maximum form regions (>= 0.1 s), all labelled with the training set's most frequent label."""
    counts = {name: 0 for name in REGION_LABELS}
    for t in train.targets:
        for r in t["regions"]:
            counts[r["label"]] += 1
    majority = max(counts, key=counts.get)
    results = []
    for content in test.contents:
        e = clip_features(content)[0].mean(axis=0)
        on = e >= (np.percentile(e, 10) + e.max()) / 2
        probs = np.stack([~on, on], axis=1).astype(np.float64)
        results.append({"regions": decode_regions(probs, [majority], onset=[0.5], offset=[0.5], median_frames=5,
                                                  min_duration_s=0.1, merge_gap_s=0.1)})
    return results


def test_registry_resolves_the_learner():
    assert learners.get("audio", "audio_regions") is FrameRegionLearner
    assert FrameRegionLearner.name == "frames" and isinstance(FrameRegionLearner(), learners.Learner)


def test_contract_round_trip(quiet):
    learner, _, test, _ = quiet
    contents = list(test.contents[:6])
    pred = learner.predict(contents)
    assert len(pred) == 6 and pred.uncertainty.shape == (6,) and np.isfinite(pred.uncertainty).all()
    assert ((pred.uncertainty >= 0) & (pred.uncertainty <= 1)).all()
    assert pred.embedding.dtype == np.float32 and pred.embedding.shape == (6, 2 * TINY["width"])
    for res in pred.results:
        for r in res["regions"]:
            assert r["label"] in REGION_LABELS and 0 <= r["start"] < r["end"] and 0 <= r["score"] <= 1
    # scikit-learn conventions: params stored as given, learned attributes end in "_"
    assert learner.get_params()["epochs"] == TINY["epochs"] and learner.random_state == 0
    assert learner.labels_ == REGION_LABELS and len(learner.onset_) == 3 and learner.history_
    # persistence
    again = FrameRegionLearner.from_bytes(learner.to_bytes())
    pred2 = again.predict(contents)
    assert pred2.results == pred.results
    np.testing.assert_array_equal(pred2.uncertainty, pred.uncertainty)
    np.testing.assert_array_equal(pred2.embedding, pred.embedding)
    with pytest.raises(InvalidInput) as err:
        FrameRegionLearner.from_bytes(b"not a model")
    assert err.value.code == "corrupt_data"
    empty = learner.predict([])
    assert len(empty) == 0 and empty.embedding.shape == (0, 2 * TINY["width"]) and empty.uncertainty.shape == (0,)


def test_export_runner_and_parity(quiet):
    learner, _, test, _ = quiet
    contents = list(test.contents[:8])
    export = learner.export_onnx()
    assert export.manifest["task_type"] == "audio_regions" and export.manifest["labels"] == list(REGION_LABELS)
    check = learner.parity(export, contents)
    assert check.passed and check.max_abs_diff < 1e-4 and check.agreement == 1.0, check.to_dict()
    torch_pred, ort_pred = learner.predict(contents), export.runner.predict(contents)
    assert ort_pred.results == torch_pred.results or check.agreement == 1.0
    np.testing.assert_allclose(ort_pred.uncertainty, torch_pred.uncertainty, atol=1e-4)
    np.testing.assert_allclose(ort_pred.embedding, torch_pred.embedding, atol=1e-3)
    # a dynamic time axis: a clip of another length runs through the same graph
    short = region_clips(1, seed=99, variant="quiet")[0][0]
    assert export.runner.predict([short]).embedding.shape == (1, 2 * TINY["width"])
    assert export.runner.predict([]).embedding.shape == (0, 2 * TINY["width"])
    with pytest.raises(InvalidInput):
        export.runner.predict([b"RIFF not audio"])
    with pytest.raises(InvalidInput) as err:  # the clip length limit travels in the manifest
        RegionOnnxRunner(export.model, {**export.manifest, "preprocessing": {
            **export.manifest["preprocessing"], "max_duration_s": 2.0}}).predict([short])
    assert err.value.code == "too_large"


def test_learns_on_both_variants_well_above_an_energy_baseline(quiet, noisy):
    figures = {}
    for name, (learner, train, test) in {"quiet": quiet[:3], "noisy": noisy}.items():
        report = learner.evaluate(test)
        base = evaluate_regions(_energy_baseline(train, test), test.targets, REGION_LABELS)
        figures[name] = (round(report.metrics["event_f1"], 3), round(base.metrics["event_f1"], 3))
        assert report.per_sample.shape == (len(test),) and report.per_class.keys() == set(REGION_LABELS)
    msg = f"event F1 (learner, energy baseline) per variant: {figures}; fit {quiet[3]:.1f} s"
    assert figures["quiet"][0] >= 0.8 and figures["quiet"][0] >= figures["quiet"][1] + 0.3, msg
    assert figures["noisy"][0] >= 0.6 and figures["noisy"][0] >= figures["noisy"][1] + 0.3, msg


def test_same_seed_same_predictions_and_weights_matter():
    train = _dataset(region_clips(8, seed=5, variant="quiet"))
    params = {"epochs": 2, "batch_size": 4, "width": 8, "tune_thresholds": False}
    a = FrameRegionLearner(**params, random_state=3).fit(train)
    b = FrameRegionLearner(**params, random_state=3).fit(train)
    pa, pb = a.predict(train.contents[:3]), b.predict(train.contents[:3])
    np.testing.assert_array_equal(pa.embedding, pb.embedding)
    assert pa.results == pb.results
    w = np.ones(len(train))
    w[:4] = 0.0
    c = FrameRegionLearner(**params, random_state=3).fit(_dataset(region_clips(8, seed=5), weights=w))
    assert not np.array_equal(c.predict(train.contents[:3]).embedding, pa.embedding)
    seen = []
    FrameRegionLearner(**params, random_state=3).fit(train, progress=lambda p, m: seen.append(p))
    assert seen[-1] == 100.0 and len(seen) == 2


def test_frame_targets_and_decoding_agree():
    target = {"regions": [{"label": "three", "start": 0.5, "end": 1.0}, {"label": "one", "start": 1.5, "end": 1.6}]}
    y = frame_targets(target, REGION_LABELS, 300)
    assert (y[50:101] == 2).all() and y[49] == 0 and y[101] == 0 and (y[150:161] == 1).all()
    probs = np.eye(4)[y]
    regions = decode_regions(probs, REGION_LABELS, onset=[0.5] * 3, offset=[0.3] * 3, median_frames=1,
                             min_duration_s=0.05, merge_gap_s=0.1)
    assert [(r["label"], r["start"], r["end"], r["score"]) for r in regions] == [
        ("three", 0.495, 1.005, 1.0), ("one", 1.495, 1.605, 1.0)]
    # minimum duration drops the short one; hysteresis keeps a dip above the offset threshold in one region
    assert [r["label"] for r in decode_regions(probs, REGION_LABELS, onset=[0.5] * 3, offset=[0.3] * 3,
                                               min_duration_s=0.2)] == ["three"]
    p = np.zeros((100, 2))
    p[:, 1] = 0.0
    p[20:60, 1] = [0.9] * 10 + [0.35] * 20 + [0.9] * 10
    p[:, 0] = 1 - p[:, 1]
    assert len(decode_regions(p, ["x"], onset=[0.5], offset=[0.3], median_frames=1)) == 1
    assert len(decode_regions(p, ["x"], onset=[0.5], offset=[0.4], median_frames=1, merge_gap_s=0.0,
                              min_duration_s=0.05)) == 2


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(InvalidInput) as err:
        FrameRegionLearner().fit(Dataset([b"x"], [{"regions": []}], REGION_LABELS))
    assert err.value.code == "not_enough_labels"
    with pytest.raises(InvalidInput):
        FrameRegionLearner(onset_threshold=0.2, offset_threshold=0.5).fit(_dataset(region_clips(2)))
    with pytest.raises(InvalidInput):
        FrameRegionLearner().predict([b"x"])  # not fitted
    no_regions = Dataset([c for c, _ in region_clips(2)], [{"regions": []}] * 2, REGION_LABELS)
    with pytest.raises(InvalidInput) as err:
        FrameRegionLearner(epochs=1).fit(no_regions)
    assert err.value.code == "not_enough_labels"


def test_fixture_is_deterministic_and_regions_lie_inside_the_clips():
    import io

    import soundfile as sf

    noisy = region_clips(2, seed=7, variant="noisy")
    a = region_clips(4, seed=7, variant="quiet")
    assert region_clips(2, seed=7, variant="quiet") == a[:2]  # the same bytes again; a shorter list is a prefix
    assert region_clips(2, seed=8, variant="quiet")[0][0] != a[0][0] and noisy[0][0] != a[0][0]
    for wav, target in a:
        y, sr = sf.read(io.BytesIO(wav))
        assert sr == 16_000 and y.ndim == 1 and 4.0 <= len(y) / sr <= 8.0
        regions = target["regions"]
        assert 2 <= len(regions) <= 4
        for r, nxt in zip(regions, regions[1:] + [None]):
            assert r["label"] in REGION_LABELS and 0 < r["start"] < r["end"] <= len(y) / sr
            assert nxt is None or r["end"] < nxt["start"]
            inside = y[int(r["start"] * sr):int(r["end"] * sr)]
            background = y[:int(regions[0]["start"] * sr)]
            assert np.mean(inside ** 2) > 100 * np.mean(background ** 2)  # the quiet variant: > 20 dB
    with pytest.raises(ValueError):
        region_clips(1, variant="loud")
