"""Learner plug-ins through the ``looplab.learners`` entry points, and the example plug-in
(plugins/looplab-sklearn-probe) through the whole contract on digits."""
from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import ml.learners as registry
from fixtures.classification import DIGIT_LABELS, digits_split, nuisance_digits
from ml.learners import Dataset, get
from ml.learners import plugins as plugin_mod
from ml.learners.classification import ClassificationRunner, ImageClassifier, preprocess

ROOT = Path(__file__).resolve().parents[3]
PROBE_DIR = ROOT / "plugins" / "looplab-sklearn-probe"
LABELS = tuple(DIGIT_LABELS)


def dataset(pairs, labels=LABELS, **kw) -> Dataset:
    return Dataset(contents=[c for c, _ in pairs], targets=[{"label": labels[y]} for _, y in pairs], labels=labels,
                   **kw)


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts from the built-ins and leaves them as they were."""
    monkeypatch.setattr(registry, "_REGISTRY", {k: list(v) for k, v in registry._REGISTRY.items()})
    monkeypatch.setattr(plugin_mod, "_loaded", None)
    yield


@pytest.fixture
def probe_installed(tmp_path, monkeypatch):
    """The example plug-in's entry point: the installed distribution when `make install` put it in the venv,
    else the same entry point declared by a dist-info on sys.path (what pip would write)."""
    try:
        metadata.distribution("looplab-sklearn-probe")
        return
    except metadata.PackageNotFoundError:
        pass
    info = tmp_path / "looplab_sklearn_probe-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: looplab-sklearn-probe\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[looplab.learners]\nsklearn-probe = looplab_sklearn_probe:SklearnProbe\n")
    monkeypatch.syspath_prepend(str(PROBE_DIR))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_example_plugin_is_found_through_its_entry_point(probe_installed):
    loaded = plugin_mod.load_plugins()
    assert any(p["name"] == "sklearn-probe" for p in loaded), (loaded, plugin_mod.plugin_errors())
    cls = get("image", "classification", "sklearn-probe")
    assert cls.__name__ == "SklearnProbe" and cls.__module__ == "looplab_sklearn_probe"
    assert "sklearn-probe" in registry.available("image", "classification")
    assert get("image", "classification") is ImageClassifier  # a plug-in is not the default unless it says so
    assert plugin_mod.load_plugins() == loaded  # once per process


def test_probe_through_the_whole_contract(probe_installed):
    plugin_mod.load_plugins()
    Probe = get("image", "classification", "sklearn-probe")
    train, test = digits_split(10, 30, seed=0)
    data, test_data = dataset(train), dataset(test)
    seen = []
    probe = Probe(random_state=0)
    assert probe.fit(data, progress=lambda p, m: seen.append(p)) is probe and seen[-1] == 100.0
    pred = probe.predict(test_data.contents)
    assert pred.embedding.shape == (300, 128) and pred.embedding.dtype == np.float32
    assert pred.uncertainty.shape == (300,) and np.all(np.isfinite(pred.uncertainty))
    assert set(pred.results[0]["scores"]) == set(LABELS)
    # the probabilities are scikit-learn's own
    from sklearn.linear_model import LogisticRegression

    E = preprocess(data.contents, probe.preprocessing)
    y = np.array([LABELS.index(t["label"]) for t in data.targets])
    ref = LogisticRegression(C=probe.C, max_iter=probe.max_iter).fit(E, y).predict_proba(
        preprocess(test_data.contents, probe.preprocessing))
    np.testing.assert_allclose(pred.extra["probs"], ref, atol=1e-5)
    rep = probe.evaluate(test_data, pred)
    assert rep.metrics["accuracy"] > 0.8, f"probe accuracy {rep.metrics['accuracy']:.3f} with 100 labels"
    again = Probe.from_bytes(probe.to_bytes())
    assert again.predict(test_data.contents[:20]).results == probe.predict(test_data.contents[:20]).results
    export = probe.export_onnx()
    check = probe.parity(export, test_data.contents[:50])
    assert check.passed and check.max_abs_diff < 1e-5, check
    onnx_pred = ClassificationRunner(export.model, export.manifest).predict(test_data.contents[:50])
    assert [r["label"] for r in onnx_pred.results] == [r["label"] for r in pred.results[:50]]


def test_probe_handles_missing_classes_and_weights(probe_installed):
    plugin_mod.load_plugins()
    Probe = get("image", "classification", "sklearn-probe")
    train, test = digits_split(3, 5, seed=2)
    two = [(c, y) for c, y in train if y in (3, 7)]  # binary: only two of the ten labels have samples
    probe = Probe().fit(dataset(two, sample_weight=np.linspace(0.5, 2.0, len(two))))
    pred = probe.predict([c for c, y in test if y in (3, 7)])
    assert {r["label"] for r in pred.results} <= {"3", "7"}
    assert all(r["scores"]["0"] == 0.0 for r in pred.results)
    assert probe.parity(probe.export_onnx(), [c for c, _ in test[:10]]).passed
    with pytest.raises(Exception) as e:
        Probe().fit(dataset([p for p in train if p[1] == 3]))
    assert getattr(e.value, "code", None) == "not_enough_labels"


def test_probe_holds_under_nuisance(probe_installed):
    plugin_mod.load_plugins()
    Probe = get("image", "classification", "sklearn-probe")
    train, test = digits_split(10, 30, seed=1)
    acc = Probe().fit(dataset(nuisance_digits(train, seed=2))).evaluate(
        dataset(nuisance_digits(test, seed=3))).metrics["accuracy"]
    assert acc > 0.6, f"probe accuracy under nuisance {acc:.3f} with 100 labels (chance 0.10)"


class _Fake:
    name = "fake"
    modality = "image"
    task_type = "classification"

    def fit(self, data, **kw): return self  # noqa: E704
    def predict(self, contents): ...  # noqa: E704
    def evaluate(self, data, predictions=None): ...  # noqa: E704
    def export_onnx(self): ...  # noqa: E704
    def parity(self, export, contents): ...  # noqa: E704
    def to_bytes(self): ...  # noqa: E704
    @classmethod
    def from_bytes(cls, data): ...  # noqa: E704


def test_default_extra_clashes_and_broken_plugins_are_handled(monkeypatch):
    module = types.ModuleType("looplab_fake_plugin")
    module.Fake = _Fake
    module.NotALearner = type("NotALearner", (), {"name": "x", "modality": "image", "task_type": "classification"})
    module.BadTask = type("BadTask", (_Fake,), {"name": "bad", "task_type": "tracking"})
    monkeypatch.setitem(sys.modules, "looplab_fake_plugin", module)
    eps = [metadata.EntryPoint("fake", "looplab_fake_plugin:Fake [default]", plugin_mod.GROUP),
           metadata.EntryPoint("cnn", "ml.learners.classification:AudioClassifier", plugin_mod.GROUP),
           metadata.EntryPoint("missing", "looplab_no_such_module:Learner", plugin_mod.GROUP),
           metadata.EntryPoint("x", "looplab_fake_plugin:NotALearner", plugin_mod.GROUP),
           metadata.EntryPoint("bad", "looplab_fake_plugin:BadTask", plugin_mod.GROUP)]
    monkeypatch.setattr(plugin_mod, "_entry_points", lambda group: eps)
    loaded = plugin_mod.load_plugins()
    assert [p["name"] for p in loaded] == ["fake"] and loaded[0]["default"]
    assert get("image", "classification") is _Fake  # its entry point asked to be the default
    assert get("image", "classification", "cnn") is ImageClassifier
    assert get("audio", "classification", "cnn").__name__ == "AudioClassifier"  # the built-in, not replaced
    errors = {e["entry_point"].split(" =")[0]: e["error"] for e in plugin_mod.plugin_errors()}
    assert set(errors) == {"cnn", "missing", "x", "bad"}
    assert "built-in" in errors["cnn"] and "ModuleNotFoundError" in errors["missing"]
    assert "not a learner" in errors["x"] and "task type" in errors["bad"]
