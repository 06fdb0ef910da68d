"""Label-quality findings: likely label errors, outliers and near-duplicates.

Label issues follow confident learning: out-of-sample class probabilities from cross-validated
classifiers on the embeddings (a standardised logistic regression averaged with a distance-weighted
kNN vote), then ``cleanlab.filter.find_label_issues``. cleanlab is AGPL-3.0 and optional
(``pip install 'looplab[quality]'``): it is imported only inside :func:`find_label_issues`, and its
absence raises :class:`ml.errors.MissingDependency`.

Outliers and near-duplicates use a kNN search over the embeddings with ml.index.EmbeddingIndex (faiss:
exact below 50,000 samples, IVF above), no cleanlab needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ml.errors import InvalidInput, require

__all__ = ["Finding", "KINDS", "find_label_issues", "out_of_sample_probs", "find_outliers", "find_near_duplicates"]

KINDS = ("label_issue", "outlier", "near_duplicate")
INSTALL_HINT = "pip install 'looplab[quality]'"


@dataclass(frozen=True)
class Finding:
    index: int  # position in the arrays passed in
    kind: str  # "label_issue" | "outlier" | "near_duplicate"
    score: float  # 0..1, higher = more likely a real problem; findings are ranked by it
    reason: str  # human-readable, e.g. "labelled 3, model says 8 with p=0.94"
    suggested_label: int | None = None  # class index to relabel with, when there is one
    related: int | None = None  # the other sample of a near-duplicate pair

    def to_dict(self) -> dict:
        return asdict(self)


def _cleanlab_filter():
    # AGPL: imported lazily on purpose, only when label issues are asked for
    return require("cleanlab.filter", "finding label issues needs cleanlab, an optional dependency (AGPL-3.0)",
                   install=INSTALL_HINT, package="cleanlab").find_label_issues


def _check(embeddings, labels, n_classes) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(embeddings)
    y = np.asarray(labels)
    if X.ndim != 2:
        raise InvalidInput("embeddings must be a 2-D array (N, D)", details={"shape": list(X.shape)})
    if y.ndim != 1 or len(y) != len(X):
        raise InvalidInput("labels must be 1-D with one entry per embedding", details={"labels": list(y.shape), "n": len(X)})
    if len(X) == 0:
        raise InvalidInput("no samples to check", code="empty_data")
    if not np.isfinite(X).all():
        raise InvalidInput("embeddings contain NaN or infinite values", code="empty_data")
    if not np.issubdtype(y.dtype, np.integer):
        raise InvalidInput("labels must be integer class indices", details={"dtype": str(y.dtype)})
    if y.min() < 0 or y.max() >= int(n_classes):
        raise InvalidInput("labels outside [0, n_classes)", details={"min": int(y.min()), "max": int(y.max()), "n_classes": int(n_classes)})
    return np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64)


def _folds(y: np.ndarray, cv_folds: int, random_state: int):
    from sklearn.model_selection import KFold, StratifiedKFold  # noqa: PLC0415

    counts = np.bincount(y)
    smallest = counts[counts > 0].min()
    k = int(min(cv_folds, len(y)))
    if smallest >= 2:
        return list(StratifiedKFold(n_splits=min(k, int(smallest)) if smallest < k else k, shuffle=True,
                                    random_state=random_state).split(np.zeros(len(y)), y))
    return list(KFold(n_splits=max(2, k), shuffle=True, random_state=random_state).split(np.zeros(len(y))))


def _knn_probs(X_train, y_train, X_test, n_classes, k, *, exclude_self=False) -> np.ndarray:
    from ml.index import exact_search  # noqa: PLC0415

    kk = min(k + int(exclude_self), len(X_train))
    pos, dist = exact_search(X_train, X_test, kk)
    if exclude_self:
        pos, dist = pos[:, 1:], dist[:, 1:]
    w = 1.0 / (dist.astype(np.float64) + 1e-6)
    w[pos < 0] = 0.0
    P = np.zeros((len(X_test), n_classes))
    rows = np.repeat(np.arange(len(X_test)), pos.shape[1])
    np.add.at(P, (rows, y_train[np.maximum(pos, 0)].ravel()), w.ravel())
    P += 1e-3  # a little smoothing: no class is impossible
    return P / P.sum(axis=1, keepdims=True)


def out_of_sample_probs(
    embeddings: np.ndarray, labels: np.ndarray, *, n_classes: int, cv_folds: int = 5, random_state: int = 0,
    C: float = 0.1, knn: int = 10, progress: Callable[[float, str], None] | None = None,
) -> np.ndarray:
    """Cross-validated class probabilities (N, n_classes) float32: each sample scored by models that never
    saw it. Average of a standardised multinomial logistic regression (regularisation ``C``) and a
    distance-weighted ``knn``-nearest-neighbour vote (faiss). ``progress(fraction 0..1, message)`` is
    called after each fold."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    X, y = _check(embeddings, labels, n_classes)
    P = np.zeros((len(y), n_classes))
    folds = list(_folds(y, cv_folds, random_state))
    for f, (train, test) in enumerate(folds):
        scaler = StandardScaler().fit(X[train])
        Xtr, Xte = scaler.transform(X[train]), scaler.transform(X[test])
        present = np.unique(y[train])
        if len(present) == 1:
            P_lr = np.zeros((len(test), n_classes))
            P_lr[:, present[0]] = 1.0
        else:
            lr = LogisticRegression(C=C, max_iter=2000, random_state=random_state).fit(Xtr, y[train])
            P_lr = np.zeros((len(test), n_classes))
            P_lr[:, lr.classes_] = lr.predict_proba(Xte)
        P_knn = _knn_probs(X[train], y[train], X[test], n_classes, knn)
        P[test] = 0.5 * P_lr + 0.5 * P_knn
        if progress is not None:
            progress((f + 1) / len(folds), f"cross-validated fold {f + 1} of {len(folds)}")
    P = np.clip(P, 1e-6, None)
    return (P / P.sum(axis=1, keepdims=True)).astype(np.float32)


def _name(names: Sequence[str] | None, c: int) -> str:
    return str(names[c]) if names is not None else str(c)


def _knn_excluding_self(X: np.ndarray, k: int, metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other samples of every sample: (positions (N, k), distances (N, k)).

    Uses ml.index.EmbeddingIndex: exact below its threshold (50,000 vectors), IVF with tuned nprobe above."""
    from ml.index import EmbeddingIndex  # noqa: PLC0415

    n = len(X)
    index = EmbeddingIndex(X.shape[1], metric=metric).add(np.arange(n, dtype=np.int64), X)
    kk = min(k + 1, n)
    pos = np.empty((n, kk - 1), np.int64)
    dist = np.empty((n, kk - 1), np.float32)
    step = 16_384
    for s in range(0, n, step):
        ids, d = index.search(X[s: s + step], kk)
        own = np.arange(s, s + len(ids))[:, None]
        not_self = ids != own
        # keep the first kk-1 hits that are not the sample itself
        order = np.argsort(~not_self, axis=1, kind="stable")[:, : kk - 1]
        pos[s: s + step] = np.take_along_axis(ids, order, axis=1)
        dist[s: s + step] = np.take_along_axis(d, order, axis=1)
    return pos, dist


def find_outliers(embeddings: np.ndarray, *, k: int = 10, z_threshold: float = 4.0, min_ratio: float = 1.5) -> list[Finding]:
    """Samples far from everything else: mean L2 distance to their ``k`` nearest neighbours, flagged when its
    robust z-score (median / MAD) exceeds ``z_threshold`` and it is at least ``min_ratio`` times the median.
    Score = 1 - median / distance."""
    X = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(X)
    if n <= k + 1:
        return []
    _, dist = _knn_excluding_self(X, k)
    d = dist.mean(axis=1).astype(np.float64)
    med = float(np.median(d))
    mad = float(np.median(np.abs(d - med))) * 1.4826 or 1e-12
    z = (d - med) / mad
    out = []
    for i in np.flatnonzero((z > z_threshold) & (d > min_ratio * med)):
        ratio = d[i] / med if med > 0 else np.inf
        out.append(Finding(
            index=int(i), kind="outlier", score=float(1.0 - 1.0 / ratio) if np.isfinite(ratio) else 1.0,
            reason=f"far from every other sample: mean distance to its {k} nearest neighbours is {ratio:.1f}x the typical one",
        ))
    return out


def find_near_duplicates(
    embeddings: np.ndarray, labels: np.ndarray | None = None, *, threshold: float = 0.995, k: int = 5,
    label_names: Sequence[str] | None = None,
) -> list[Finding]:
    """Pairs of samples with cosine similarity >= ``threshold``; one Finding per pair, on the later sample.

    Pairs whose labels disagree score their similarity; pairs that agree score half of it (wasted budget
    rather than a contradiction)."""
    X = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(X)
    if n < 2:
        return []
    pos, dist = _knn_excluding_self(X, k, metric="cosine")
    sim = 1.0 - dist
    out = []
    seen = set()
    rows, cols = np.nonzero((sim >= threshold) & (pos >= 0))
    for i, c in zip(rows.tolist(), cols.tolist()):
        j, s = int(pos[i, c]), min(1.0, float(sim[i, c]))
        if j != i:
            a, b = (min(i, j), max(i, j))
            if (a, b) in seen:
                continue
            seen.add((a, b))
            if labels is not None and labels[a] != labels[b]:
                reason = (f"near-duplicate of sample {a} (cosine {s:.3f}) but labelled "
                          f"{_name(label_names, int(labels[b]))} vs {_name(label_names, int(labels[a]))}")
                out.append(Finding(b, "near_duplicate", s, reason, suggested_label=int(labels[a]), related=a))
            else:
                out.append(Finding(b, "near_duplicate", s * 0.5, f"near-duplicate of sample {a} (cosine {s:.3f})",
                                   related=a))
    return out


def find_label_issues(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    cv_folds: int = 5,
    random_state: int = 0,
    label_names: Sequence[str] | None = None,
    outliers: bool = True,
    duplicates: bool = True,
    duplicate_threshold: float = 0.995,
    filter_by: str = "prune_by_noise_rate",
    progress: Callable[[float, str], None] | None = None,
) -> list[Finding]:
    """Ranked findings (highest score first) on labeled samples.

    label_issue: cleanlab's confident-learning filter on out-of-sample probabilities
        (:func:`out_of_sample_probs`); score = 1 - p(given label); suggested_label = the model's class.
    outlier: :func:`find_outliers`. near_duplicate: :func:`find_near_duplicates`.
    ``progress(fraction 0..1, message)``, when given, is called as the work advances (cross-validation
    is most of it).
    Raises :class:`ml.errors.MissingDependency` when cleanlab is not installed.
    """
    cl_find = _cleanlab_filter()
    report = progress or (lambda fraction, message: None)
    X, y = _check(embeddings, labels, n_classes)
    if label_names is not None and len(label_names) != int(n_classes):
        raise InvalidInput("label_names must have n_classes entries", details={"len": len(label_names), "n_classes": int(n_classes)})
    findings: list[Finding] = []
    present = np.unique(y)
    if len(present) >= 2 and len(y) >= 2 * max(2, min(cv_folds, len(y))):
        P = out_of_sample_probs(X, y, n_classes=int(n_classes), cv_folds=cv_folds, random_state=random_state,
                                progress=lambda f, m: report(0.8 * f, m))
        # cleanlab wants every class in labels to be present; work on the present ones only
        remap = np.full(int(n_classes), -1)
        remap[present] = np.arange(len(present))
        Pp = P[:, present]
        Pp = Pp / Pp.sum(axis=1, keepdims=True)
        issues = cl_find(remap[y], Pp, filter_by=filter_by, n_jobs=1)
        for i in np.flatnonzero(issues):
            given = int(y[i])
            suggested = int(P[i].argmax())
            p_given, p_sug = float(P[i, given]), float(P[i, suggested])
            reason = (f"labelled {_name(label_names, given)}, model says {_name(label_names, suggested)} "
                      f"with p={p_sug:.2f} (p={p_given:.2f} for the given label)")
            findings.append(Finding(int(i), "label_issue", float(1.0 - p_given), reason,
                                    suggested_label=suggested if suggested != given else None))
    if outliers:
        report(0.85, "looking for outliers")
        findings += find_outliers(X)
    if duplicates:
        report(0.92, "looking for near-duplicates")
        findings += find_near_duplicates(X, y, threshold=duplicate_threshold, label_names=label_names)
    report(1.0, f"{len(findings)} findings")
    order = sorted(range(len(findings)), key=lambda t: (-findings[t].score, KINDS.index(findings[t].kind), findings[t].index))
    return [findings[t] for t in order]
