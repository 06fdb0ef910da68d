"""Audio regions: event-based precision, recall and F1 with onset/offset tolerance (DCASE / sed_eval).

A predicted region (``{"label", "start", "end", "score"?}``, seconds) matches a reference region of the same label
when both

- onsets are within ``t_collar`` (default 0.2 s): ``|start_pred - start_ref| <= t_collar``, and
- offsets are within ``max(t_collar, percentage_of_length * (end_ref - start_ref))`` (default 20 % of the
  reference event's length) — sed_eval's ``EventBasedMetrics(t_collar, percentage_of_length)`` conditions.

Matching is one-to-one per clip and per class, and *optimal* (a maximum bipartite matching, as sed_eval's
``event_matching_type="optimal"``), so the count of true positives does not depend on the order of the events.
Per class: ``tp``, ``n_ref``, ``n_sys`` summed over clips; precision ``tp / n_sys``, recall ``tp / n_ref``,
F1 ``2 tp / (n_ref + n_sys)``.

Figures (``EvalReport.metrics``): ``event_f1`` (the primary: micro F1 over all classes, sed_eval's "overall"),
``event_precision``, ``event_recall``, ``event_f1_macro`` (mean of the per-class F1 over the classes that occur in
the reference or the predictions; sed_eval's class-wise average), ``onset_f1`` (micro F1 with the onset condition
only), ``n_ref``, ``n_sys``, ``tp``. Where a denominator is zero a figure is 0 (precision with no predictions,
recall with no references) and a class with neither is left out of the macro mean; an evaluation with no events at
all scores F1 = 1 (nothing to find, nothing claimed).

``per_sample`` is each clip's micro F1 (1 for a clip with no reference and no predicted region), ``per_slice`` the
same figures on each slice's clips, plus ``n``.

Imports numpy only.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.learners.base import EvalReport

__all__ = ["T_COLLAR", "PERCENTAGE_OF_LENGTH", "evaluate_regions", "parse_regions", "match_events",
           "clip_counts"]

T_COLLAR = 0.2
PERCENTAGE_OF_LENGTH = 0.2


def parse_regions(result: Mapping[str, Any], labels: Sequence[str], *, where: str) -> list[tuple[int, float, float]]:
    """``[(label index, start, end), ...]`` of one result or target; typed errors for a bad shape."""
    if not isinstance(result, Mapping) or not isinstance(result.get("regions", []), (list, tuple)):
        raise InvalidInput(f"{where}: expected {{'regions': [...]}}", code="invalid_input", details={"at": where})
    index = {name: i for i, name in enumerate(labels)}
    out = []
    for j, r in enumerate(result.get("regions", [])):
        at = f"{where}.regions[{j}]"
        try:
            label, start, end = r["label"], float(r["start"]), float(r["end"])
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"{at}: a region needs label, start and end", code="invalid_input",
                               details={"at": at}) from None
        if label not in index:
            raise InvalidInput(f"{at}: unknown label {label!r}", code="invalid_input",
                               details={"at": at, "label": label, "labels": list(labels)})
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise InvalidInput(f"{at}: start and end must be finite with start <= end", code="invalid_input",
                               details={"at": at, "start": start, "end": end})
        out.append((index[label], start, end))
    return out


def _max_matching(adj: list[list[int]], n_right: int) -> int:
    """Size of a maximum bipartite matching (Kuhn's augmenting paths); ``adj[i]`` the right nodes of left i."""
    match_right = [-1] * n_right

    def augment(i: int, seen: list[bool]) -> bool:
        for j in adj[i]:
            if not seen[j]:
                seen[j] = True
                if match_right[j] < 0 or augment(match_right[j], seen):
                    match_right[j] = i
                    return True
        return False

    return sum(augment(i, [False] * n_right) for i in range(len(adj)))


def match_events(ref: Sequence[tuple[float, float]], est: Sequence[tuple[float, float]], *,
                 t_collar: float = T_COLLAR, percentage_of_length: float = PERCENTAGE_OF_LENGTH,
                 evaluate_offset: bool = True) -> int:
    """True positives between reference and estimated ``(start, end)`` events of one class in one clip: the size
    of a maximum one-to-one matching under the onset (and offset) conditions."""
    adj = []
    for r_on, r_off in ref:
        off_tol = max(t_collar, percentage_of_length * (r_off - r_on))
        adj.append([j for j, (e_on, e_off) in enumerate(est)
                    if abs(e_on - r_on) <= t_collar and (not evaluate_offset or abs(e_off - r_off) <= off_tol)])
    return _max_matching(adj, len(est))


def clip_counts(ref: list[tuple[int, float, float]], est: list[tuple[int, float, float]], n_classes: int, *,
                t_collar: float, percentage_of_length: float, evaluate_offset: bool = True) -> np.ndarray:
    """``(n_classes, 3)`` int counts ``[tp, n_ref, n_sys]`` for one clip."""
    counts = np.zeros((n_classes, 3), dtype=np.int64)
    for c in range(n_classes):
        r = [(s, e) for k, s, e in ref if k == c]
        p = [(s, e) for k, s, e in est if k == c]
        if r and p:
            counts[c, 0] = match_events(r, p, t_collar=t_collar, percentage_of_length=percentage_of_length,
                                        evaluate_offset=evaluate_offset)
        counts[c, 1], counts[c, 2] = len(r), len(p)
    return counts


def _prf(tp: float, n_ref: float, n_sys: float) -> tuple[float, float, float]:
    precision = tp / n_sys if n_sys else 0.0
    recall = tp / n_ref if n_ref else 0.0
    f1 = 2.0 * tp / (n_ref + n_sys) if (n_ref + n_sys) else 1.0
    return float(precision), float(recall), float(f1)


def _figures(counts: np.ndarray, onset_counts: np.ndarray) -> dict[str, float]:
    """Headline figures from summed ``(C, 3)`` counts (full and onset-only matching)."""
    tp, n_ref, n_sys = (float(x) for x in counts.sum(axis=0))
    p, r, f = _prf(tp, n_ref, n_sys)
    present = (counts[:, 1] + counts[:, 2]) > 0
    macro = float(np.mean([_prf(*counts[c])[2] for c in np.flatnonzero(present)])) if present.any() else 1.0
    onset_f = _prf(*(float(x) for x in onset_counts.sum(axis=0)))[2]
    return {"event_f1": f, "event_precision": p, "event_recall": r, "event_f1_macro": macro, "onset_f1": onset_f,
            "n_ref": n_ref, "n_sys": n_sys, "tp": tp}


def evaluate_regions(results: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                     labels: Sequence[str], slices: Mapping[str, np.ndarray] | None = None, *,
                     t_collar: float = T_COLLAR, percentage_of_length: float = PERCENTAGE_OF_LENGTH) -> EvalReport:
    """Event-based metrics of predicted regions against reference regions (see the module doc)."""
    labels = tuple(labels)
    n = len(targets)
    if len(results) != n:
        raise InvalidInput(f"{len(results)} results but {n} targets", code="invalid_input")
    if not labels:
        raise InvalidInput("labels must not be empty", code="invalid_input")
    if not (t_collar >= 0 and percentage_of_length >= 0):
        raise InvalidInput("t_collar and percentage_of_length must be >= 0", code="invalid_input",
                           details={"t_collar": t_collar, "percentage_of_length": percentage_of_length})
    C = len(labels)
    full = np.zeros((n, C, 3), dtype=np.int64)
    onset = np.zeros((n, C, 3), dtype=np.int64)
    for i, (res, tgt) in enumerate(zip(results, targets)):
        ref = parse_regions(tgt, labels, where=f"targets[{i}]")
        est = parse_regions(res, labels, where=f"results[{i}]")
        full[i] = clip_counts(ref, est, C, t_collar=t_collar, percentage_of_length=percentage_of_length)
        onset[i] = clip_counts(ref, est, C, t_collar=t_collar, percentage_of_length=percentage_of_length,
                               evaluate_offset=False)
    per_sample = np.array([_prf(*(float(x) for x in full[i].sum(axis=0)))[2] for i in range(n)], dtype=np.float64)
    total = full.sum(axis=0)
    per_class = {}
    for c, name in enumerate(labels):
        p, r, f = _prf(*(float(x) for x in total[c]))
        per_class[name] = {"precision": p, "recall": r, "f1": f, "tp": float(total[c, 0]),
                           "n_ref": float(total[c, 1]), "n_sys": float(total[c, 2])}
    per_slice = {}
    for name, mask in (slices or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise InvalidInput(f"slice {name!r} must be a boolean mask of length {n}", code="invalid_input")
        per_slice[name] = {**_figures(full[mask].sum(axis=0), onset[mask].sum(axis=0)), "n": float(mask.sum())}
    return EvalReport(task_type="audio_regions", primary="event_f1",
                      metrics=_figures(total, onset.sum(axis=0)), per_class=per_class, per_slice=per_slice,
                      per_sample=per_sample, n=n)
