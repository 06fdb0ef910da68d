"""Single-label classification metrics behind :func:`ml.metrics.evaluate`: :func:`ml.evaluation.evaluate` on
the predicted results.

``metrics``: ``accuracy`` (primary), ``macro_f1``, ``ece`` (top-1 calibration error over the results' scores);
``per_class``: ``precision``, ``recall``, ``f1``, ``support``; ``per_slice``: ``n``, ``accuracy``, ``macro_f1``,
``ece`` (``None`` for an empty slice); ``per_sample``: 1.0 where the predicted label is right, else 0.0.

A result is ``{"label", "scores": {label: p}}``; the scores are renormalised to sum to 1 (an uploaded model's
rounded scores). A result without scores, or whose label is not the arg-max of its scores (a rule overrode the
model), counts as certain of its label (one-hot), so ``per_sample`` always follows ``label``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.learners.base import EvalReport

__all__ = ["evaluate_classification", "result_probs", "class_masks"]


def result_probs(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> np.ndarray:
    """``(N, C)`` probabilities from classification results (see the module docstring)."""
    lookup = {name: i for i, name in enumerate(labels)}
    P = np.zeros((len(results), len(labels)), dtype=np.float64)
    for i, r in enumerate(results):
        label = r.get("label") if isinstance(r, Mapping) else None
        if label not in lookup:
            raise InvalidInput(f"result {i} must have a 'label' among the labels, got {r!r}", code="invalid_input",
                               details={"index": i, "labels": list(labels)})
        scores = r.get("scores") or {}
        row = np.array([float(scores.get(name, 0.0)) for name in labels], dtype=np.float64)
        total = row.sum()
        if not np.all(np.isfinite(row)) or np.any(row < 0) or total <= 0 or row.argmax() != lookup[label]:
            row = np.zeros(len(labels))
            row[lookup[label]] = 1.0
        else:
            row = row / total
        P[i] = row
    return P


def class_masks(targets: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, np.ndarray]:
    """label → boolean mask of the samples of that true class (the per-class groups of
    :func:`ml.metrics.compare.compare_reports`)."""
    from ml.learners.classification import target_indices

    y = target_indices(targets, labels)
    return {name: y == c for c, name in enumerate(labels)}


def evaluate_classification(results: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                            labels: tuple[str, ...], slices: Mapping[str, np.ndarray], *,
                            n_bins: int | None = None) -> EvalReport:
    from ml.evaluation import DEFAULT_ECE_BINS, evaluate
    from ml.learners.classification import target_indices

    if len(results) == 0:
        raise InvalidInput("cannot evaluate on zero samples", code="empty_data")
    y = target_indices(targets, labels)
    P = result_probs(results, labels)
    rep = evaluate(y, P, labels, slices=slices, n_bins=n_bins or DEFAULT_ECE_BINS)
    per_slice = {name: {"n": int(d["n"]), "accuracy": d["accuracy"], "macro_f1": d["macro_f1"], "ece": d["ece"]}
                 for name, d in rep.slices.items()}
    per_class = {name: {"precision": d["precision"], "recall": d["recall"], "f1": d["f1"],
                        "support": int(d["support"])} for name, d in rep.per_class.items()}
    return EvalReport(task_type="classification", primary="accuracy",
                      metrics={"accuracy": rep.accuracy, "macro_f1": rep.macro_f1, "ece": rep.ece},
                      per_class=per_class, per_slice=per_slice,
                      per_sample=(P.argmax(axis=1) == y).astype(np.float64), n=int(len(y)))
