"""The built-in linear probe on label-free embeddings (ml.learners.probe) and the first-model choice rule."""
import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.learners import Dataset, get
from ml.learners.probe import (AudioProbe, ImageProbe, PointCloudProbe, choose_model, cross_validate_choice,
                               probe_cv_accuracy)
from ml.learners.runners import onnx_runner

LABELS = tuple(str(i) for i in range(10))


@pytest.fixture(scope="module")
def stress():
    from fixtures.stress import stress_items

    return stress_items(12, seed=0)  # 120 images


def _dataset(items):
    return Dataset(contents=[b for b, _, _ in items], targets=[{"label": str(c)} for _, c, _ in items],
                   labels=LABELS)


def test_registered_for_every_modality_and_not_default():
    assert get("image", "classification", "probe") is ImageProbe
    assert get("audio", "classification", "probe") is AudioProbe
    assert get("pointcloud", "classification", "probe") is PointCloudProbe
    assert get("image", "classification").name == "cnn"


def test_fit_predict_export_roundtrip(stress):
    train, test = _dataset(stress[:80]), _dataset(stress[80:])
    probe = ImageProbe().fit(train)
    pred = probe.predict(test.contents)
    probs = pred.extra["probs"]
    assert probs.shape == (40, 10) and np.allclose(probs.sum(axis=1), 1.0)
    assert pred.embedding.shape == (40, 128) and np.all((pred.uncertainty >= 0) & (pred.uncertainty <= 1))
    report = probe.evaluate(test, pred)
    assert report.primary == "accuracy" and report.metrics["accuracy"] > 0.15  # chance is 0.10
    export = probe.export_onnx()
    assert export.manifest["preprocessing"]["features"] == "label_free" and export.manifest["learner"] == "probe"
    check = probe.parity(export, test.contents)
    assert check.passed and check.agreement == 1.0
    served = onnx_runner(export.model, export.manifest).predict(test.contents)
    assert [r["label"] for r in served.results] == [r["label"] for r in pred.results]
    again = ImageProbe.from_bytes(probe.to_bytes())
    assert np.array_equal(again.coef_, probe.coef_) and again.labels_ == LABELS
    with pytest.raises(InvalidInput):
        AudioProbe.from_bytes(probe.to_bytes())  # another modality's file is refused


def test_absent_labels_get_zero_probability(stress):
    two = [it for it in stress if it[1] in (3, 7)]
    probe = ImageProbe().fit(_dataset(two))
    probs = probe.predict([b for b, _, _ in two[:5]]).extra["probs"]
    assert np.all(probs[:, [0, 1, 2, 4, 5, 6, 8, 9]] < 1e-6)
    with pytest.raises(InvalidInput):
        ImageProbe().fit(_dataset([it for it in stress if it[1] == 3]))


def test_choice_rule_and_reason():
    c = choose_model(0.41, 0.22, 24, "3-fold cross-validation")
    assert c.chosen == "probe" and "0.41 (probe) vs 0.22 (network) on 24 samples" in c.why
    assert choose_model(0.30, 0.55, 40, "val split").chosen == "cnn"
    tie = choose_model(0.5, 0.5, 10, "val split")
    assert tie.chosen == "probe" and "tie" in tie.why


def test_cross_validated_choice_prefers_the_probe_on_nuisance_images(stress):
    import torch

    from ml import modalities
    from ml.features import label_free_embeddings
    from ml.training import TrainConfig

    torch.set_num_threads(1)
    items = stress[:40]
    X = modalities.get("image").load_batch([b for b, _, _ in items])
    E = label_free_embeddings("image", X)
    y = np.asarray([c for _, c, _ in items])
    acc, n = probe_cv_accuracy(E, y, 10, folds=3)
    choice = cross_validate_choice("image", X, E, y, 10, train_config=TrainConfig(epochs=5, seed=0))
    assert n == choice.n_scored == 40 and choice.method == "3-fold cross-validation"
    assert choice.chosen == "probe" and choice.probe_accuracy > choice.cnn_accuracy
    assert 0.0 <= acc <= 1.0
