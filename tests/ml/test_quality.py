import sys

import numpy as np
import pytest

from ml.errors import InvalidInput, MissingDependency
from ml.quality import Finding, find_label_issues, find_near_duplicates, find_outliers, out_of_sample_probs


@pytest.fixture(scope="module")
def noisy_digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    flip = rng.choice(len(y), size=len(y) // 10, replace=False)
    noisy = y.copy()
    noisy[flip] = (y[flip] + rng.integers(1, 10, len(flip))) % 10
    truth = np.zeros(len(y), bool)
    truth[flip] = True
    return X, y, noisy, truth


@pytest.fixture(scope="module")
def digit_findings(noisy_digits):
    X, _, noisy, _ = noisy_digits
    return find_label_issues(X, noisy, n_classes=10, random_state=0)


def test_finds_injected_label_noise_on_digits(noisy_digits, digit_findings):
    X, y, noisy, truth = noisy_digits
    issues = [f for f in digit_findings if f.kind == "label_issue"]
    idx = np.array([f.index for f in issues])
    tp = truth[idx].sum()
    precision, recall = tp / len(idx), tp / truth.sum()
    assert precision >= 0.8, precision
    assert recall >= 0.85, recall
    # suggestions recover the true digit for the real errors
    sug = np.array([f.suggested_label for f in issues])
    real = truth[idx]
    assert np.mean(sug[real] == y[idx[real]]) >= 0.9


def test_findings_are_ranked_and_explained(noisy_digits, digit_findings):
    _, _, noisy, _ = noisy_digits
    scores = [f.score for f in digit_findings]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert {f.kind for f in digit_findings} <= {"label_issue", "outlier", "near_duplicate"}
    first = next(f for f in digit_findings if f.kind == "label_issue")
    assert first.reason.startswith(f"labelled {noisy[first.index]}, model says {first.suggested_label} with p=")
    assert isinstance(first.to_dict()["score"], float)


def test_label_names_in_reason():
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (100, 4)), rng.normal(6, 1, (100, 4))]).astype(np.float32)
    y = np.repeat([0, 1], 100)
    wrong = [5, 17, 33, 150, 160]  # clear mistakes: they sit in the middle of the other class
    y[wrong] = 1 - y[wrong]
    findings = find_label_issues(X, y, n_classes=2, label_names=["cat", "dog"], outliers=False, duplicates=False)
    found = [f.index for f in findings]
    assert set(found) <= set(wrong) and len(found) >= 4
    cat_as_dog = next(f for f in findings if f.index in (5, 17, 33))
    assert cat_as_dog.reason.startswith("labelled dog, model says cat with p=")
    assert cat_as_dog.suggested_label == 0


def test_progress_is_reported_in_order_and_changes_nothing():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(0, 1, (60, 4)), rng.normal(5, 1, (60, 4))]).astype(np.float32)
    y = np.repeat([0, 1], 60)
    y[[3, 70]] = 1 - y[[3, 70]]
    calls = []
    with_progress = find_label_issues(X, y, n_classes=2, progress=lambda f, m: calls.append((f, m)))
    assert [f.to_dict() for f in with_progress] == [f.to_dict() for f in find_label_issues(X, y, n_classes=2)]
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) >= 5 + 3
    assert calls[0][1] == "cross-validated fold 1 of 5" and calls[-1][1] == f"{len(with_progress)} findings"


def test_out_of_sample_probs_shape_and_sanity(noisy_digits):
    X, y, _, _ = noisy_digits
    P = out_of_sample_probs(X[:600], y[:600], n_classes=10, cv_folds=3)
    assert P.shape == (600, 10) and P.dtype == np.float32
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-5)
    assert np.mean(P.argmax(1) == y[:600]) > 0.9


def test_outliers_and_near_duplicates():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    X[17] = 40.0  # far away from everything
    X[200] = X[100] * 1.0001  # near-duplicate of 100
    out = find_outliers(X)
    assert [f.index for f in out] == [17] and out[0].kind == "outlier"
    labels = np.zeros(300, np.int64)
    labels[200] = 1
    dups = find_near_duplicates(X, labels, label_names=["a", "b"])
    assert len(dups) == 1
    d = dups[0]
    assert (d.index, d.related, d.suggested_label) == (200, 100, 0)
    assert "labelled b vs a" in d.reason and d.score > 0.99
    # agreeing duplicates score lower (wasted budget, not a contradiction)
    agree = find_near_duplicates(X, np.zeros(300, np.int64))
    assert agree[0].score < 0.51 and agree[0].suggested_label is None


def test_missing_cleanlab_raises_missing_dependency(monkeypatch):
    for name in list(sys.modules):
        if name == "cleanlab" or name.startswith("cleanlab."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)
    X = np.zeros((10, 2), np.float32)
    with pytest.raises(MissingDependency) as exc:
        find_label_issues(X, np.zeros(10, np.int64), n_classes=2)
    assert exc.value.code == "missing_dependency"
    assert "looplab[quality]" in exc.value.details["install"]


def test_invalid_inputs():
    X = np.zeros((10, 2), np.float32)
    with pytest.raises(InvalidInput):
        find_label_issues(X, np.zeros(9, np.int64), n_classes=2)
    with pytest.raises(InvalidInput):
        find_label_issues(X, np.full(10, 3), n_classes=2)
    with pytest.raises(InvalidInput):
        find_label_issues(X[0], np.zeros(10, np.int64), n_classes=2)
    assert isinstance(Finding(1, "outlier", 0.5, "x"), Finding)
