"""The classification learners behind the contract: round trip, persistence, ONNX export and parity, and that
the image CNN learns digits (clean and under nuisance variation)."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures.classification import DIGIT_LABELS, digits_split, nuisance_digits
from ml.errors import InvalidInput
from ml.learners import Dataset, EvalReport, OnnxExport, Predictions, get
from ml.learners.classification import (AudioClassifier, ClassificationRunner, ImageClassifier,
                                        PointCloudClassifier, decode_probs)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"widths": [16, 32, 64]}
LABELS = tuple(DIGIT_LABELS)


def dataset(pairs, labels=LABELS, **kw) -> Dataset:
    return Dataset(contents=[c for c, _ in pairs], targets=[{"label": labels[y]} for _, y in pairs], labels=labels,
                   **kw)


@pytest.fixture(scope="module")
def digits():
    return digits_split(10, 30, seed=0)  # 100 train, 300 test


@pytest.fixture(scope="module")
def fitted(digits):
    train, _ = digits
    return ImageClassifier(epochs=30, arch=SMALL, random_state=0).fit(dataset(train))


def test_registry_gives_the_classifiers():
    assert get("image", "classification") is ImageClassifier
    assert get("audio", "classification", "cnn") is AudioClassifier
    assert get("pointcloud", "classification") is PointCloudClassifier


def test_params_are_stored_and_fit_returns_self(digits):
    m = ImageClassifier(epochs=1, arch=SMALL, random_state=3)
    assert m.get_params()["random_state"] == 3 and not hasattr(m, "model_")
    train, _ = digits
    seen = []
    assert m.fit(dataset(train[:20]), progress=lambda p, msg: seen.append(p)) is m
    assert hasattr(m, "model_") and m.labels_ == LABELS and seen and seen[-1] == 100.0


def test_round_trip_shapes(fitted, digits):
    _, test = digits
    pred = fitted.predict([c for c, _ in test[:16]])
    assert isinstance(pred, Predictions) and len(pred) == 16
    r = pred.results[0]
    assert r["label"] in LABELS and set(r["scores"]) == set(LABELS)
    assert abs(sum(r["scores"].values()) - 1.0) < 1e-5 and r["scores"][r["label"]] == max(r["scores"].values())
    assert pred.uncertainty.shape == (16,) and np.all(np.isfinite(pred.uncertainty))
    assert np.all((pred.uncertainty >= 0) & (pred.uncertainty <= 1))
    assert pred.embedding.dtype == np.float32 and pred.embedding.shape == (16, 128)


def test_same_seed_same_predictions(digits):
    train, test = digits
    contents = [c for c, _ in test[:20]]
    a = ImageClassifier(epochs=2, arch=SMALL, random_state=1).fit(dataset(train[:40])).predict(contents)
    b = ImageClassifier(epochs=2, arch=SMALL, random_state=1).fit(dataset(train[:40])).predict(contents)
    assert a.results == b.results
    np.testing.assert_array_equal(a.embedding, b.embedding)


def test_to_bytes_from_bytes_same_predictions(fitted, digits):
    _, test = digits
    contents = [c for c, _ in test[:20]]
    again = ImageClassifier.from_bytes(fitted.to_bytes())
    assert again.get_params() == fitted.get_params() and again.labels_ == fitted.labels_
    assert again.predict(contents).results == fitted.predict(contents).results
    with pytest.raises(InvalidInput) as e:
        AudioClassifier.from_bytes(fitted.to_bytes())
    assert e.value.code == "unsupported_model_format"
    with pytest.raises(InvalidInput) as e:
        ImageClassifier.from_bytes(b"not a model")
    assert e.value.code == "corrupt_model"


def test_export_runner_and_parity(fitted, digits):
    _, test = digits
    contents = [c for c, _ in test[:40]]
    export = fitted.export_onnx()
    assert isinstance(export, OnnxExport) and export.model[:2] and export.manifest["labels"] == list(LABELS)
    assert export.manifest["opset"] == 17 and export.manifest["preprocessing"]["loader"] == {"size": 32}
    check = fitted.parity(export, contents)
    assert check.passed and check.agreement == 1.0 and check.max_abs_diff < 1e-4, check
    torch_pred = fitted.predict(contents)
    # a runner rebuilt from the stored bytes and manifest alone (what the serving process does)
    onnx_pred = ClassificationRunner(export.model, export.manifest).predict(contents)
    assert [r["label"] for r in onnx_pred.results] == [r["label"] for r in torch_pred.results]
    np.testing.assert_allclose(onnx_pred.uncertainty, torch_pred.uncertainty, atol=1e-4)
    np.testing.assert_allclose(onnx_pred.embedding, torch_pred.embedding, atol=1e-4)


def test_learns_digits_clean_and_under_nuisance(fitted, digits):
    """100 labels (10 per class), 300 test digits: far above chance (0.10) on the clean digits and on a second
    variant (another split seed, rotations, blur, tint, a dark low-contrast quarter)."""
    _, test = digits
    clean = fitted.evaluate(dataset(test))
    assert isinstance(clean, EvalReport) and clean.primary == "accuracy" and clean.n == 300
    train2, test2 = digits_split(10, 30, seed=1)
    noisy = ImageClassifier(epochs=30, arch=SMALL, random_state=1).fit(dataset(nuisance_digits(train2, seed=2)))
    noisy_acc = noisy.evaluate(dataset(nuisance_digits(test2, seed=3))).metrics["accuracy"]
    acc = clean.metrics["accuracy"]
    assert acc > 0.7 and noisy_acc > 0.45, f"accuracy clean={acc:.3f} nuisance={noisy_acc:.3f} (chance 0.10)"


def test_evaluate_with_slices_and_given_predictions(fitted, digits):
    _, test = digits
    data = dataset(test[:50], slices={"first": np.arange(50) < 20})
    pred = fitted.predict(data.contents)
    rep = fitted.evaluate(data, pred)
    assert rep.per_slice["first"]["n"] == 20 and rep.per_sample.shape == (50,)
    assert rep.metrics["accuracy"] == pytest.approx(rep.per_sample.mean())
    assert set(rep.per_class) == set(LABELS)


def test_decode_probs_is_the_one_decoding():
    res, unc = decode_probs(np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]]), ("a", "b", "c"))
    assert [r["label"] for r in res] == ["a", "a", "a"]
    np.testing.assert_allclose(unc, [-(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3), 1, 0],
                               atol=1e-6)


def test_typed_errors(digits):
    train, _ = digits
    m = ImageClassifier(epochs=1, arch=SMALL)
    with pytest.raises(InvalidInput) as e:
        m.fit(dataset(train[:1]))
    assert e.value.code == "not_enough_labels"
    bad = Dataset(contents=[c for c, _ in train[:4]], targets=[{"label": "eleven"}] * 4, labels=LABELS)
    with pytest.raises(InvalidInput) as e:
        m.fit(bad)
    assert e.value.code == "invalid_input"
    with pytest.raises(InvalidInput) as e:
        m.fit(dataset([(b"not an image", 0), *train[:3]]))
    assert e.value.code == "unsupported_format" and e.value.details["index"] == 0
    with pytest.raises(InvalidInput):
        m.predict([train[0][0]])  # not fitted


def test_audio_and_pointcloud_round_trip():
    """The other two modalities through the whole contract on tiny configs (the learning figures are in
    test_classification_learns.py, marked slow)."""
    from fixtures.shapes import SHAPE_LABELS, shapes
    from fixtures.speech import SPOKEN_LABELS, spoken_digits

    cases = [(AudioClassifier, spoken_digits(2, seed=0), tuple(SPOKEN_LABELS), {"widths": [8, 16, 16, 16]}),
             (PointCloudClassifier, shapes(2, seed=0, n_points=256), tuple(SHAPE_LABELS), None)]
    for cls, pairs, labels, arch in cases:
        data = dataset(pairs, labels)
        m = cls(epochs=1, arch=arch, random_state=0).fit(data)
        pred = m.predict(data.contents)
        assert pred.embedding.shape == (len(pairs), 128) and pred.uncertainty.shape == (len(pairs),)
        assert cls.from_bytes(m.to_bytes()).predict(data.contents).results == pred.results
        export = m.export_onnx()
        assert m.parity(export, data.contents).passed
        assert [r["label"] for r in export.runner.predict(data.contents).results] == \
            [r["label"] for r in pred.results]
        assert m.evaluate(data, pred).n == len(pairs)


def test_importing_the_classification_modules_stays_light():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, ml.learners.classification, ml.learners.plugins, ml.metrics.classification, "
            "ml.metrics.compare\n"
            "heavy = [m for m in ('torch', 'onnxruntime', 'onnx', 'sklearn', 'scipy', 'open3d', 'librosa') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    root = Path(__file__).resolve().parents[3]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
