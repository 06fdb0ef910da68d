"""Query strategies: which unlabeled samples are most worth labeling under a budget.

One entry point, :func:`select`, over plain arrays:

- ``embeddings`` (N, D) of the unlabeled pool (label-free features before the first model,
  the model's penultimate layer after),
- ``probs`` (N, C) model probabilities, or None before any model exists,
- ``labeled_counts`` (C,) how many labels each class has so far.

It returns a :class:`Selection` with pool positions in rank order. Scores are "higher = more worth
labeling" and never increase along the ranking (within the preferred group and within the rest).

The uncertainty measures are plain functions over probability arrays (:func:`least_confidence`,
:func:`margin`, :func:`entropy`); they compute the same quantities as modAL's
``classifier_uncertainty`` / ``classifier_margin`` / ``classifier_entropy`` (a test checks it), without
importing modAL at selection time, because modAL pulls in torch (~3 s) on import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ml.errors import InvalidInput

__all__ = [
    "STRATEGIES",
    "COLD_START_MIN_LABELS",
    "Selection",
    "select",
    "least_confidence",
    "margin",
    "entropy",
]

COLD_START_MIN_LABELS = 3

STRATEGIES: tuple[str, ...] = (
    "auto",
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "kmeans",
)

# strategies that need model probabilities
_NEEDS_PROBS = {"least_confidence", "margin", "entropy"}


@dataclass(frozen=True, eq=False)
class Selection:
    """Result of :func:`select`.

    indices: positions into the pool arrays, in rank order (rank 0 first), len <= budget.
    scores:  score per chosen sample (higher = more worth labeling), same order.
    strategy: the concrete strategy used, e.g. "auto/cold_start_kmeans" or "auto/margin_diverse".
    """

    indices: np.ndarray
    scores: np.ndarray
    strategy: str

    def __len__(self) -> int:
        return len(self.indices)

    def to_dict(self) -> dict:
        return {
            "indices": [int(i) for i in self.indices],
            "scores": [float(s) for s in self.scores],
            "strategy": self.strategy,
        }


# --------------------------------------------------------------------------- uncertainty measures


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - max_c p(c|x): (N,) float32, higher = more uncertain."""
    probs = np.asarray(probs)
    return (1.0 - probs.max(axis=1)).astype(np.float32)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): (N,) float32, higher = smaller margin = more uncertain."""
    probs = np.asarray(probs)
    if probs.shape[1] == 1:
        return np.ones(len(probs), np.float32)
    part = np.partition(probs, probs.shape[1] - 2, axis=1)
    return (1.0 - (part[:, -1] - part[:, -2])).astype(np.float32)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row, after renormalising the row: (N,) float32."""
    p = np.asarray(probs, dtype=np.float32)
    s = p.sum(axis=1, keepdims=True)
    p = p / np.where(s > 0, s, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
    return (-(p * logp).sum(axis=1)).astype(np.float32)


_UNCERTAINTY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}


# --------------------------------------------------------------------------- internals


@dataclass
class _Pool:
    embeddings: np.ndarray  # (N, D) float32
    probs: np.ndarray | None  # (N, C) float32
    n_classes: int | None
    labeled_counts: np.ndarray | None
    random_state: int
    rng: np.random.Generator
    options: dict
    _cache: dict

    @property
    def n(self) -> int:
        return len(self.embeddings)

    def utility(self, name: str) -> np.ndarray:
        """Per-sample uncertainty (N,), cached."""
        key = ("utility", name)
        if key not in self._cache:
            if self.probs is None:
                raise InvalidInput(
                    f"strategy {name!r} needs model probabilities; train a model first or use 'auto'/'random'",
                    code="model_required",
                    details={"strategy": name},
                )
            self._cache[key] = _UNCERTAINTY[name](self.probs)
        return self._cache[key]


_Result = tuple[np.ndarray, np.ndarray, str]  # (pool positions ranked, scores, concrete name)


def _empty(name: str) -> _Result:
    return np.empty(0, np.int64), np.empty(0, np.float32), name


def _rank_by(scores: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``cand`` by ``scores`` (full-pool array), ranked; ties broken by position."""
    k = min(int(k), len(cand))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    s = scores[cand]
    if k < len(cand):
        part = np.argpartition(-s, k - 1)[:k]
    else:
        part = np.arange(len(cand))
    order = np.lexsort((cand[part], -s[part]))
    chosen = part[order]
    return cand[chosen].astype(np.int64), s[chosen].astype(np.float32)


def _sort_desc(idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((idx, -scores))
    return idx[order].astype(np.int64), scores[order].astype(np.float32)


# --------------------------------------------------------------------------- strategies
# Each strategy: (pool, candidate positions (M,), k) -> (ranked positions (<=k,), scores, name)


def _random(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    k = min(k, len(cand))
    # a uniform priority key per candidate; the k highest keys are a uniform sample without replacement
    keys = pool.rng.random(len(cand)).astype(np.float32)
    full = np.zeros(pool.n, np.float32)
    full[cand] = keys
    idx, sc = _rank_by(full, cand, k)
    return idx, sc, "random"


def _uncertainty(name: str):
    def run(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
        idx, sc = _rank_by(pool.utility(name), cand, k)
        return idx, sc, name

    return run


def _cold_start_kmeans(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """k-means with ``k`` clusters on the candidates' embeddings; the member nearest each centre.

    Fit on a seeded subsample for big pools (``cold_start_max_train`` option, default
    max(20_000, 32 * k)); picks come from the clustered points. Score = the share of the clustered
    points that the pick's cluster holds, divided by (1 + its rank inside the cluster), so the biggest
    modes of the data come first. Clusters with no member leave room that is filled by the
    second-nearest members of the largest clusters, and so on.
    """
    from ml.index import kmeans  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return _empty("kmeans")
    max_train = int(pool.options.get("cold_start_max_train", max(20_000, 32 * k)))
    pts = cand
    if len(cand) > max_train:
        pts = np.sort(pool.rng.choice(cand, size=max_train, replace=False))
    X = pool.embeddings[pts]
    n_iter = int(pool.options.get("kmeans_iter", 20))
    _, labels, dist = kmeans(X, k, random_state=pool.random_state, n_iter=n_iter)
    n_clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_clusters)
    # rank of each point inside its cluster by distance to the centre
    order = np.lexsort((dist, labels))
    lab_sorted = labels[order]
    starts = np.searchsorted(lab_sorted, np.arange(n_clusters))
    rank_in = np.empty(len(pts), np.int64)
    rank_in[order] = np.arange(len(pts)) - starts[lab_sorted]
    score = (sizes[labels] / len(pts)) / (1.0 + rank_in)
    take = np.lexsort((pts, -sizes[labels], rank_in))[:k]
    idx, sc = _sort_desc(pts[take], score[take].astype(np.float32))
    return idx, sc, "kmeans"


def _margin_diverse(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """Margin with batch diversity (close to Cluster-Margin, Citovsky et al. 2021).

    Take the ``diversity_factor * k`` (default 10) smallest-margin candidates, cluster their embeddings
    into ``k`` clusters with k-means and keep the most uncertain member of each cluster; empty clusters
    are filled with the next most uncertain candidates. The batch is returned ranked by uncertainty.
    """
    from ml.index import kmeans  # noqa: PLC0415

    u = pool.utility("margin")
    k = min(k, len(cand))
    if k <= 0:
        return _empty("margin_diverse")
    factor = float(pool.options.get("diversity_factor", 10))
    m = min(len(cand), max(k, int(np.ceil(factor * k))))
    top, top_u = _rank_by(u, cand, m)
    if m <= k or k == 1:
        return top[:k], top_u[:k], "margin_diverse"
    _, labels, _ = kmeans(pool.embeddings[top], k, random_state=pool.random_state, n_iter=int(pool.options.get("kmeans_iter", 20)))
    # top is sorted by uncertainty desc, so the first occurrence of each label is its most uncertain member
    _, first = np.unique(labels, return_index=True)
    chosen = np.zeros(len(top), bool)
    chosen[first] = True
    if chosen.sum() < k:
        rest = np.flatnonzero(~chosen)[: k - int(chosen.sum())]
        chosen[rest] = True
    idx, sc = _sort_desc(top[chosen], top_u[chosen])
    return idx, sc, "margin_diverse"


def _auto(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """Cold start (k-means on embeddings) until every class has >= 3 labels and a model exists,
    then margin with batch diversity."""
    min_labels = int(pool.options.get("cold_start_min_labels", COLD_START_MIN_LABELS))
    cold = pool.probs is None
    if not cold and pool.labeled_counts is not None:
        cold = bool(np.min(pool.labeled_counts) < min_labels) if len(pool.labeled_counts) else True
    if cold:
        idx, sc, _ = _cold_start_kmeans(pool, cand, k)
        return idx, sc, "auto/cold_start_kmeans"
    idx, sc, _ = _margin_diverse(pool, cand, k)
    return idx, sc, "auto/margin_diverse"


_STRATEGY_FUNCS: dict[str, Callable[[_Pool, np.ndarray, int], _Result]] = {
    "auto": _auto,
    "random": _random,
    "least_confidence": _uncertainty("least_confidence"),
    "margin": _uncertainty("margin"),
    "entropy": _uncertainty("entropy"),
    "kmeans": _cold_start_kmeans,
}


# --------------------------------------------------------------------------- validation


def _validate(strategy, budget, embeddings, probs, labeled_counts, n_classes, prefer):
    if strategy not in _STRATEGY_FUNCS:
        raise InvalidInput(
            f"unknown selection strategy {strategy!r}",
            code="unknown_strategy",
            details={"strategy": str(strategy), "choices": list(STRATEGIES)},
        )
    try:
        budget = int(budget)
    except (TypeError, ValueError):
        raise InvalidInput("budget must be an integer", details={"budget": repr(budget)}) from None
    if budget < 0:
        raise InvalidInput("budget must be >= 0", details={"budget": budget})
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise InvalidInput("embeddings must be a 2-D array (N, D)", details={"shape": list(emb.shape)})
    if emb.dtype != np.float32:
        emb = emb.astype(np.float32)
    n = len(emb)
    if n and not np.isfinite(emb).all():
        raise InvalidInput("embeddings contain NaN or infinite values", code="empty_data")
    if probs is not None:
        probs = np.asarray(probs)
        if probs.ndim != 2 or len(probs) != n:
            raise InvalidInput(
                "probs must be a 2-D array (N, C) with one row per pool sample",
                details={"shape": list(probs.shape), "n_pool": n},
            )
        if probs.dtype != np.float32:
            probs = probs.astype(np.float32)
        if n and not np.isfinite(probs).all():
            raise InvalidInput("probs contain NaN or infinite values", code="empty_data")
        if n_classes is not None and probs.shape[1] != int(n_classes):
            raise InvalidInput(
                "probs has a different number of classes than n_classes",
                details={"probs_classes": probs.shape[1], "n_classes": int(n_classes)},
            )
        if n_classes is None:
            n_classes = probs.shape[1]
    if labeled_counts is not None:
        labeled_counts = np.asarray(labeled_counts).astype(np.int64).ravel()
        if n_classes is not None and len(labeled_counts) != int(n_classes):
            raise InvalidInput(
                "labeled_counts must have one entry per class",
                details={"len": len(labeled_counts), "n_classes": int(n_classes)},
            )
        if n_classes is None:
            n_classes = len(labeled_counts)
    if prefer is not None:
        prefer = np.asarray(prefer)
        if prefer.shape != (n,):
            raise InvalidInput("prefer must be a boolean mask of shape (N,)", details={"shape": list(prefer.shape), "n_pool": n})
        prefer = prefer.astype(bool)
    if strategy in _NEEDS_PROBS and probs is None:
        raise InvalidInput(
            f"strategy {strategy!r} needs model probabilities; train a model first or use 'auto'/'random'",
            code="model_required",
            details={"strategy": strategy},
        )
    return budget, emb, probs, labeled_counts, (int(n_classes) if n_classes is not None else None), prefer


# --------------------------------------------------------------------------- entry point


def select(
    strategy: str,
    *,
    budget: int,
    embeddings: np.ndarray,
    probs: np.ndarray | None = None,
    labeled_counts: np.ndarray | None = None,
    n_classes: int | None = None,
    prefer: np.ndarray | None = None,
    random_state: int = 0,
    **options,
) -> Selection:
    """Choose up to ``budget`` pool samples to label.

    strategy: one of :data:`STRATEGIES`.
    prefer: bool mask (N,) of samples to take first; they are ranked among themselves by the strategy,
        and the rest of the budget is filled from the other samples.
    options: strategy knobs (``diversity_factor``, ``cold_start_max_train``, ``kmeans_iter``,
        ``cold_start_min_labels``).

    Raises ``InvalidInput(code="model_required")`` for an uncertainty strategy without ``probs``,
    ``InvalidInput(code="unknown_strategy")`` for a name not in :data:`STRATEGIES`.
    """
    budget, emb, probs, labeled_counts, n_classes, prefer = _validate(
        strategy, budget, embeddings, probs, labeled_counts, n_classes, prefer
    )
    pool = _Pool(
        embeddings=emb,
        probs=probs,
        n_classes=n_classes,
        labeled_counts=labeled_counts,
        random_state=int(random_state),
        rng=np.random.default_rng(random_state),
        options=dict(options),
        _cache={},
    )
    fn = _STRATEGY_FUNCS[strategy]
    n = len(emb)
    groups = [np.arange(n, dtype=np.int64)] if prefer is None else [np.flatnonzero(prefer), np.flatnonzero(~prefer)]
    out_idx: list[np.ndarray] = []
    out_sc: list[np.ndarray] = []
    names: list[str] = []
    left = budget
    for cand in groups:
        if left <= 0 or len(cand) == 0:
            continue
        idx, sc, name = fn(pool, cand, left)
        out_idx.append(idx)
        out_sc.append(sc)
        names.append(name)
        left -= len(idx)
    if not out_idx:
        name = strategy if strategy != "auto" else _auto_name(pool)
        return Selection(np.empty(0, np.int64), np.empty(0, np.float32), name)
    indices = np.concatenate(out_idx).astype(np.int64)
    scores = np.concatenate(out_sc).astype(np.float32)
    return Selection(indices=indices, scores=scores, strategy=names[0])


def _auto_name(pool: _Pool) -> str:
    min_labels = int(pool.options.get("cold_start_min_labels", COLD_START_MIN_LABELS))
    cold = pool.probs is None or (pool.labeled_counts is not None and (len(pool.labeled_counts) == 0 or pool.labeled_counts.min() < min_labels))
    return "auto/cold_start_kmeans" if cold else "auto/margin_diverse"
