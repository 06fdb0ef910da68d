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

import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput

__all__ = [
    "STRATEGIES",
    "MODEL_FREE_STRATEGIES",
    "COLD_START_MIN_LABELS",
    "Selection",
    "select",
    "least_confidence",
    "margin",
    "entropy",
    "bald",
    "slice_mask",
    "PREDICATE_OPERATORS",
]

COLD_START_MIN_LABELS = 3

STRATEGIES: tuple[str, ...] = (
    "auto",
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "kmeans",
    "typicality",
    "kcenter",
    "stratified_random",
    "cluster_margin",
    "bald",
)

# strategies that work before any model exists (on embeddings only)
MODEL_FREE_STRATEGIES: tuple[str, ...] = ("auto", "random", "kmeans", "typicality", "kcenter", "stratified_random")

# strategies that need model probabilities (bald needs MC-dropout samples, option mc_probs)
_NEEDS_PROBS = {"least_confidence", "margin", "entropy", "cluster_margin"}

# integer knobs and their smallest allowed value
_INT_KNOBS = {"cold_start_max_train": 1, "kmeans_iter": 0, "kmeans_restarts": 1, "cold_start_min_labels": 0,
              "n_clusters": 1, "typicality_k": 1, "min_cluster_size": 1, "kcenter_max_pool": 1, "kmedoids_max": 0}

_KNOWN_OPTIONS = {
    # strategy knobs
    "diversity_factor", "cold_start_max_train", "kmeans_iter", "kmeans_restarts", "cold_start_min_labels",
    "n_clusters", "kmedoids_max",
    "typicality_k", "min_cluster_size", "kcenter_max_pool", "strata", "mc_probs",
    # batch constraints
    "class_quotas", "class_caps", "slices", "slice_quotas", "slice_caps",
    "cost", "max_total_cost", "labeled_embeddings", "dedup_threshold",
}


@dataclass(frozen=True, eq=False)
class Selection:
    """Result of :func:`select`.

    indices: positions into the pool arrays, in rank order (rank 0 first), len <= budget.
    scores:  score per chosen sample (higher = more worth labeling), same order; non-increasing
             within the preferred samples and within the others.
    strategy: the concrete strategy used, e.g. "auto/cold_start_kmeans" or "auto/margin_diverse".
    info:    what the batch constraints did (JSON-ready): excluded near-duplicates, quota shortfalls,
             total cost, ...
    """

    indices: np.ndarray
    scores: np.ndarray
    strategy: str
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def to_dict(self) -> dict:
        return {
            "indices": [int(i) for i in self.indices],
            "scores": [float(s) for s in self.scores],
            "strategy": self.strategy,
            "info": dict(self.info),
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


def _row_entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=axis)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row, after renormalising the row: (N,) float32."""
    p = np.asarray(probs, dtype=np.float32)
    s = p.sum(axis=1, keepdims=True)
    p = p / np.where(s > 0, s, 1.0)
    return _row_entropy(p, axis=1).astype(np.float32)


def bald(mc_probs: np.ndarray) -> np.ndarray:
    """BALD mutual information from T stochastic forward passes (e.g. MC dropout), nats: (N,) float32.

    ``mc_probs`` has shape (T, N, C). I(y; w | x) = H(mean_t p_t) - mean_t H(p_t): high where the
    passes disagree with each other (epistemic uncertainty), low where they agree, even on a flat
    prediction (aleatoric uncertainty).
    """
    mc = np.asarray(mc_probs, dtype=np.float32)
    mean = mc.mean(axis=0)
    mi = _row_entropy(mean, axis=1) - _row_entropy(mc, axis=2).mean(axis=0)
    return np.maximum(mi, 0.0).astype(np.float32)


_UNCERTAINTY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}


# --------------------------------------------------------------------------- slices


_OPERATORS = {
    "eq": lambda v, c: v == c,
    "ne": lambda v, c: v != c,
    "in": lambda v, c: v in c,
    "not_in": lambda v, c: v not in c,
    "gt": lambda v, c: v is not None and v > c,
    "gte": lambda v, c: v is not None and v >= c,
    "lt": lambda v, c: v is not None and v < c,
    "lte": lambda v, c: v is not None and v <= c,
}
PREDICATE_OPERATORS: tuple[str, ...] = tuple(_OPERATORS)  # what a slice predicate's dict conditions may use


def _match(value: Any, cond: Any) -> bool:
    if isinstance(cond, Mapping):
        ops = _OPERATORS
        for op, c in cond.items():
            if op not in ops:
                raise InvalidInput(f"unknown predicate operator {op!r}", details={"operators": sorted(ops)})
            try:
                if not ops[op](value, c):
                    return False
            except TypeError:
                return False
        return True
    if isinstance(cond, (list, tuple, set, frozenset)):
        return value in cond
    return value == cond


_MISSING = object()


def slice_mask(metadata: Sequence[Mapping], predicate: Mapping) -> np.ndarray:
    """Boolean mask (N,) of the samples whose metadata satisfy every condition of ``predicate``.

    ``{"time_of_day": "night"}`` is equality; a list/tuple/set value means "one of";
    a dict value holds operators: ``{"speed": {"gte": 50, "lt": 90}}`` (eq, ne, in, not_in, gt, gte, lt, lte).
    A missing key never matches (except for ``ne`` / ``not_in``).
    """
    if not isinstance(predicate, Mapping):
        raise InvalidInput("predicate must be a dict of metadata key -> condition")
    out = np.zeros(len(metadata), bool)
    for i, row in enumerate(metadata):
        row = row or {}
        ok = True
        for key, cond in predicate.items():
            value = row.get(key, _MISSING)
            if value is _MISSING:
                if isinstance(cond, Mapping) and set(cond) <= {"ne", "not_in"}:
                    continue
                ok = False
                break
            if not _match(value, cond):
                ok = False
                break
        out[i] = ok
    return out


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
    cost: np.ndarray | None
    mc_probs: np.ndarray | None
    labeled_embeddings: np.ndarray | None
    _cache: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.embeddings)

    def utility(self, name: str) -> np.ndarray:
        """Per-sample uncertainty (N,), divided by the labeling cost when a ``cost`` array is given. Cached."""
        key = ("utility", name)
        if key not in self._cache:
            if name == "bald":
                if self.mc_probs is None:
                    raise InvalidInput(
                        "strategy 'bald' needs MC-dropout probabilities (option mc_probs, shape (T, N, C))",
                        code="model_required",
                        details={"strategy": "bald", "option": "mc_probs"},
                    )
                u = bald(self.mc_probs)
            else:
                if self.probs is None:
                    raise InvalidInput(
                        f"strategy {name!r} needs model probabilities; train a model first or use 'auto'/'random'",
                        code="model_required",
                        details={"strategy": name},
                    )
                u = _UNCERTAINTY[name](self.probs)
            if self.cost is not None:
                u = (u / self.cost).astype(np.float32)
            self._cache[key] = u
        return self._cache[key]

    def kmeans_iter(self, n: int = 0, k: int = 0) -> int:
        """Lloyd iterations: 20 for small problems, 10 once n * k passes 5e6 (the last ones barely move)."""
        if "kmeans_iter" in self.options:
            return int(self.options["kmeans_iter"])
        return 20 if n * k <= 5e6 else 10

    def kmeans_restarts(self, n: int = 0, k: int = 0) -> int:
        """k-means restarts (best inertia wins): 10 while n * k <= 2e6, else 1. Small clusterings are the
        first rounds of a project, where one unlucky k-means split (two picks in one class, none in
        another) costs the most and restarts cost least; measured by ``bench.label_efficiency``."""
        if "kmeans_restarts" in self.options:
            return max(1, int(self.options["kmeans_restarts"]))
        return 10 if n * k <= 2e6 else 1

    def kmedoids_max(self) -> int:
        """Largest clustered set whose k-means picks are refined by k-medoid swaps (option ``kmedoids_max``,
        default 5000; 0 turns it off). The swaps cost O(passes * n^2 * d), about 1.7 s for 100 picks from
        5,000 points on 2 cores. A bigger clustered set is refined on a seeded sample of this many points
        (holding the picks) while picks * kmedoids_max <= 2e6 (up to 400 picks at the default); beyond
        that the k-means picks are kept."""
        return int(self.options.get("kmedoids_max", 5000))

    def max_train(self, k: int) -> int:
        """Points used to fit k-means in cold start: 16 per cluster, at least 10_000."""
        return int(self.options.get("cold_start_max_train", max(10_000, 16 * k)))

    def covered_embeddings(self) -> np.ndarray | None:
        """Labeled embeddings plus the samples already taken into this batch (for coverage strategies)."""
        taken = self._cache.get("taken")
        parts = []
        if self.labeled_embeddings is not None and len(self.labeled_embeddings):
            parts.append(self.labeled_embeddings)
        if taken is not None and taken.any():
            parts.append(self.embeddings[taken])
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def subsample(self, cand: np.ndarray, size: int) -> np.ndarray:
        if len(cand) <= size:
            return cand
        return np.sort(self.rng.choice(cand, size=size, replace=False))


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


def _rank_in_cluster(labels: np.ndarray, key: np.ndarray, n_clusters: int) -> np.ndarray:
    """Rank (0 = smallest key) of every point inside its cluster."""
    order = np.lexsort((key, labels))
    lab_sorted = labels[order]
    starts = np.searchsorted(lab_sorted, np.arange(n_clusters))
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - starts[lab_sorted]
    return rank


# --------------------------------------------------------------------------- strategies
# Each strategy: (pool, candidate positions (M,), k) -> (ranked positions (<=k,), scores, name)


def _random(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    k = min(k, len(cand))
    # a uniform priority key per candidate; the k highest keys are a uniform sample without replacement
    keys = pool.rng.random(len(cand)).astype(np.float32)
    order = np.argsort(-keys, kind="stable")[:k]
    return cand[order].astype(np.int64), keys[order], "random"


def _stratified_random(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """Random sample with each stratum represented in proportion to its share of the candidates.

    Strata come from option ``strata`` (N,) (any labels: metadata values, sources, ...); without it,
    from the model's predicted class; without a model, from k-means clusters of the embeddings.
    Allocation is by largest remainder, so every stratum with share >= 1/k gets a sample.
    """
    k = min(k, len(cand))
    if k <= 0:
        return _empty("stratified_random")
    strata = pool.options.get("strata")
    if strata is not None:
        groups = np.unique(np.asarray(strata)[cand], return_inverse=True)[1].ravel()
        source = "strata"
    elif pool.probs is not None:
        groups = pool.probs[cand].argmax(axis=1)
        source = "predicted_class"
    else:
        from ml.index import kmeans  # noqa: PLC0415

        n_c = int(min(len(cand), max(2, min(k, 20))))
        _, groups, _ = kmeans(pool.embeddings[cand], n_c, random_state=pool.random_state,
                              n_iter=pool.kmeans_iter(min(len(cand), pool.max_train(n_c)), n_c), max_train=pool.max_train(n_c))
        source = "kmeans"
    groups = np.unique(groups, return_inverse=True)[1].ravel()
    sizes = np.bincount(groups)
    raw = k * sizes / len(cand)
    alloc = np.floor(raw).astype(np.int64)
    rem = raw - alloc
    extra = k - int(alloc.sum())
    if extra > 0:
        alloc[np.lexsort((-sizes, -rem))[:extra]] += 1
    keys = pool.rng.random(len(cand)).astype(np.float32)
    rank = _rank_in_cluster(groups, -keys, len(sizes))
    take = rank < alloc[groups]
    idx, sc = _sort_desc(cand[take], keys[take])
    return idx[:k], sc[:k], f"stratified_random/{source}"


def _uncertainty(name: str):
    def run(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
        idx, sc = _rank_by(pool.utility(name), cand, k)
        return idx, sc, name

    return run


def _cold_start_kmeans(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """k-means with ``k`` clusters on the candidates' embeddings; the member nearest each centre, then
    refined as k-medoids.

    Fit on a seeded subsample for big pools (``cold_start_max_train`` option, default
    max(10_000, 16 * k)); picks come from the clustered points. Clusters with no member leave room that
    is filled by the second-nearest members of the largest clusters, and so on.
    While the clustered set has at most ``kmedoids_max`` points (default 5000), the picks are then
    improved by k-medoid swaps (:func:`ml.index.kmedoids_refine`: lower summed squared distance from every
    point to its nearest pick), and score = the share of the points nearest each pick. A bigger clustered
    set is refined on a seeded sample of ``kmedoids_max`` points that holds the picks (while picks *
    kmedoids_max <= 2e6), and the refined picks are kept only if they lower the cost over every clustered
    point. Otherwise the score is the share of the points in the pick's cluster divided by (1 + its rank
    inside the cluster).
    Either way the biggest modes of the data come first.
    """
    from ml.index import assign_nearest, kmeans, kmedoids_refine  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return _empty("kmeans")
    pts = pool.subsample(cand, pool.max_train(k))
    X = pool.embeddings[pts]
    _, labels, dist = kmeans(X, k, random_state=pool.random_state,
                             n_iter=pool.kmeans_iter(len(pts), k), n_init=pool.kmeans_restarts(len(pts), k))
    n_clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_clusters)
    rank_in = _rank_in_cluster(labels, dist, n_clusters)
    score = (sizes[labels] / len(pts)) / (1.0 + rank_in)
    take = np.lexsort((pts, -sizes[labels], rank_in))[:k]
    kmax = pool.kmedoids_max()
    if k < len(pts) and (len(pts) <= kmax or (k < kmax and k * kmax <= 2e6)):
        # the picks are samples, so what matters is how well the picked *samples* represent the rest:
        # swap picks for other samples while that lowers the summed squared distance to the nearest pick
        if len(pts) <= kmax:
            take, _ = kmedoids_refine(X, take)
            nearest = assign_nearest(X, X[take])[0]
        else:  # a bigger pool: the swaps run on a seeded sample of kmax points that holds the picks, and
            # are kept only if they lower the cost over every clustered point (a sample can mislead)
            rng = np.random.default_rng([pool.random_state, 17])
            rest = np.setdiff1d(np.arange(len(pts)), take)
            sub = np.concatenate([take, np.sort(rng.choice(rest, size=kmax - k, replace=False))])
            local, _ = kmedoids_refine(X[sub], np.arange(k))
            nearest, d = assign_nearest(X, X[take])
            near_new, d_new = assign_nearest(X, X[sub[local]])
            if float(d_new.sum(dtype=np.float64)) < float(d.sum(dtype=np.float64)):
                take, nearest = sub[local], near_new
        cell = np.bincount(nearest, minlength=len(take))
        idx, sc = _sort_desc(pts[take], (cell / len(pts)).astype(np.float32))
        return idx, sc, "kmeans"
    idx, sc = _sort_desc(pts[take], score[take].astype(np.float32))
    return idx, sc, "kmeans"


def _typicality(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """TypiClust (Hacohen et al. 2022): the most typical sample of each of the largest uncovered clusters.

    k-means into k + (number of labeled samples) clusters (capped by the candidates); clusters that
    already hold a labeled sample (option ``labeled_embeddings``, or a sample already in this batch)
    are skipped while uncovered ones remain; in each chosen cluster take the sample with the highest typicality
    1 / mean distance to its ``typicality_k`` (default 20) nearest neighbours in the cluster.
    Score = typicality.
    """
    from ml.index import assign_nearest, kmeans  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return _empty("typicality")
    covered_emb = pool.covered_embeddings()
    n_lab = 0 if covered_emb is None else len(covered_emb)
    extra = min(n_lab, 4 * k)  # TypiClust uses |L| + B clusters; capped so a big labeled set stays cheap
    pts = pool.subsample(cand, pool.max_train(k + extra))
    n_clusters = int(min(len(pts), k + extra))
    centroids, labels, _ = kmeans(pool.embeddings[pts], n_clusters, random_state=pool.random_state,
                                  n_iter=pool.kmeans_iter(len(pts), n_clusters),
                                  n_init=pool.kmeans_restarts(len(pts), n_clusters))
    n_clusters = len(centroids)
    sizes = np.bincount(labels, minlength=n_clusters)
    if n_lab:
        lab_c, _ = assign_nearest(covered_emb, centroids)
    knn = int(pool.options.get("typicality_k", 20))
    X = pool.embeddings[pts]
    typ = np.zeros(len(pts), np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_clusters + 1))
    for c in range(n_clusters):
        members = order[bounds[c]: bounds[c + 1]]
        m = len(members)
        if m < 2:
            continue
        M = X[members]
        sq = np.einsum("ij,ij->i", M, M)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (M @ M.T), 0.0)
        np.fill_diagonal(d2, np.inf)
        kk = min(knn, m - 1)
        near = np.partition(d2, kk - 1, axis=1)[:, :kk]
        typ[members] = 1.0 / (np.sqrt(near).mean(axis=1) + 1e-8)
    # TypiClust's loop: the cluster with the fewest samples already (labeled, in batch, picked), then the
    # largest; clusters under min_cluster_size (default 5) only once every larger one is used up.
    min_size = int(pool.options.get("min_cluster_size", 5))
    held = np.bincount(lab_c, minlength=n_clusters) if n_lab else np.zeros(n_clusters, np.int64)
    members_by_typ = np.lexsort((-typ, labels))  # grouped by cluster, most typical first
    starts = np.searchsorted(labels[members_by_typ], np.arange(n_clusters + 1))
    heap = [(int(sizes[c] < min_size), int(held[c]), -int(sizes[c]), c) for c in range(n_clusters) if sizes[c] > 0]
    heapq.heapify(heap)
    nxt = starts[:-1].copy()
    picks = []
    while heap and len(picks) < k:
        tiny, cnt, negsize, c = heapq.heappop(heap)
        picks.append(members_by_typ[nxt[c]])
        nxt[c] += 1
        if nxt[c] < starts[c + 1]:
            heapq.heappush(heap, (tiny, cnt + 1, negsize, c))
    picks = np.asarray(picks, np.int64)
    idx, sc = _sort_desc(pts[picks], typ[picks])
    return idx, sc, "typicality"


def _kcenter(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """Greedy k-center / coreset (Sener & Savarese 2018): each pick is the candidate farthest from the
    labeled set (option ``labeled_embeddings``) and from the picks so far (earlier picks of this batch
    included). Score = that distance.
    Pools above ``kcenter_max_pool`` (default 100_000) are subsampled first."""
    from ml.index import kcenter_greedy  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return _empty("kcenter")
    pts = pool.subsample(cand, int(pool.options.get("kcenter_max_pool", 100_000)))
    picks, dist = kcenter_greedy(pool.embeddings, k, pool.covered_embeddings(), candidates=pts)
    idx, sc = _sort_desc(picks, dist)
    return idx, sc, "kcenter"


def _diverse_top(pool: _Pool, cand: np.ndarray, k: int, utility: np.ndarray, name: str) -> _Result:
    """Take the ``diversity_factor * k`` (default 10) most useful candidates, k-means them into k clusters,
    keep the most useful member of each cluster; empty clusters are filled with the next most useful."""
    from ml.index import kmeans  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return _empty(name)
    factor = float(pool.options.get("diversity_factor", 10))
    m = min(len(cand), max(k, int(np.ceil(factor * k))))
    top, top_u = _rank_by(utility, cand, m)
    if m <= k or k == 1:
        return top[:k], top_u[:k], name
    _, labels, _ = kmeans(pool.embeddings[top], k, random_state=pool.random_state, n_iter=pool.kmeans_iter(len(top), k))
    # top is sorted by utility desc, so the first occurrence of each label is its most useful member
    _, first = np.unique(labels, return_index=True)
    chosen = np.zeros(len(top), bool)
    chosen[first] = True
    if chosen.sum() < k:
        rest = np.flatnonzero(~chosen)[: k - int(chosen.sum())]
        chosen[rest] = True
    idx, sc = _sort_desc(top[chosen], top_u[chosen])
    return idx, sc, name


def _margin_diverse(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """Margin with batch diversity (close to Cluster-Margin, Citovsky et al. 2021), ranked by uncertainty."""
    return _diverse_top(pool, cand, k, pool.utility("margin"), "margin_diverse")


def _bald(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    idx, sc = _rank_by(pool.utility("bald"), cand, k)
    return idx, sc, "bald"


def _cluster_margin(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """Cluster-Margin (Citovsky et al. 2021).

    1. Cluster the pool's embeddings once (k-means fitted on a subsample; ``n_clusters`` option,
       default max(k, 2 * sqrt(N)) capped by N) — the paper uses HAC; k-means scales to 1M.
    2. Take the ``diversity_factor * k`` (default 10) smallest-margin candidates.
    3. Group them by cluster, sort the clusters by how many of them they hold (smallest first), and go
       round-robin over the clusters taking the most uncertain remaining member each time, until k.
    The batch is reported ranked by uncertainty (score = margin uncertainty).
    """
    from ml.index import assign_nearest, kmeans  # noqa: PLC0415

    u = pool.utility("margin")
    k = min(k, len(cand))
    if k <= 0:
        return _empty("cluster_margin")
    factor = float(pool.options.get("diversity_factor", 10))
    m = min(len(cand), max(k, int(np.ceil(factor * k))))
    top, top_u = _rank_by(u, cand, m)
    if m <= k:
        return top, top_u, "cluster_margin"
    n_clusters = int(pool.options.get("n_clusters", max(k, int(2 * np.sqrt(pool.n)))))
    n_clusters = max(1, min(n_clusters, pool.n))
    key = ("pool_clusters", n_clusters)
    if key not in pool._cache:
        fit_on = pool.subsample(np.arange(pool.n), max(10_000, 16 * n_clusters))
        centroids, _, _ = kmeans(pool.embeddings[fit_on], n_clusters, random_state=pool.random_state,
                                 n_iter=pool.kmeans_iter(len(fit_on), n_clusters), assign=False)
        pool._cache[key] = centroids
    labels, _ = assign_nearest(pool.embeddings[top], pool._cache[key])
    cl, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    # position of each candidate inside its cluster (top is sorted by uncertainty, so rank 0 = most uncertain)
    rank = _rank_in_cluster(inv, np.arange(len(top)), len(cl))
    cluster_order = np.empty(len(cl), np.int64)
    cluster_order[np.lexsort((cl, counts))] = np.arange(len(cl))  # smallest clusters first
    take = np.lexsort((cluster_order[inv], rank))[:k]  # round r visits every cluster before round r+1
    idx, sc = _sort_desc(top[take], top_u[take])
    return idx, sc, "cluster_margin"


def _is_cold(pool: _Pool) -> bool:
    min_labels = int(pool.options.get("cold_start_min_labels", COLD_START_MIN_LABELS))
    if pool.probs is None:
        return True
    if pool.labeled_counts is None:
        return False
    return len(pool.labeled_counts) == 0 or int(np.min(pool.labeled_counts)) < min_labels


def _auto(pool: _Pool, cand: np.ndarray, k: int) -> _Result:
    """Cold start until a model exists and every class has >= 3 labels, then margin with batch diversity.

    The cold start is k-means centres on the embeddings while nothing is labeled; once labels exist
    (option ``labeled_embeddings``) it is coverage-aware (typicality in the clusters no label covers
    yet), so it stops re-picking the typical points of modes that are already labeled. Measured by
    ``python -m bench.label_efficiency`` (the "coverage" prototype there).
    """
    if _is_cold(pool):
        if pool.covered_embeddings() is not None:
            idx, sc, _ = _typicality(pool, cand, k)
            return idx, sc, "auto/cold_start_typicality"
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
    "typicality": _typicality,
    "kcenter": _kcenter,
    "stratified_random": _stratified_random,
    "cluster_margin": _cluster_margin,
    "bald": _bald,
}
assert set(_STRATEGY_FUNCS) == set(STRATEGIES)


# --------------------------------------------------------------------------- batch constraints


@dataclass
class _Constraint:
    name: str
    mask: np.ndarray  # (N,) bool
    minimum: int  # quota: take at least this many (if available) before the free fill
    maximum: int | None  # cap: never more than this many in the batch
    count: int = 0


def _counts_from(spec, keys: Sequence, what: str) -> dict:
    """Normalise a quota/cap spec (dict key -> int, or a sequence aligned with ``keys``) to a dict."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        out = {}
        for key, v in spec.items():
            if key not in keys:
                raise InvalidInput(f"{what}: unknown key {key!r}", details={"key": str(key), "known": [str(k) for k in keys]})
            out[key] = int(v)
    else:
        arr = np.asarray(spec).ravel()
        if len(arr) != len(keys):
            raise InvalidInput(f"{what} must have one entry per class", details={"len": len(arr), "expected": len(keys)})
        out = {key: int(v) for key, v in zip(keys, arr)}
    if any(v < 0 for v in out.values()):
        raise InvalidInput(f"{what} must be >= 0")
    return out


def _build_constraints(pool: _Pool) -> list[_Constraint]:
    opts = pool.options
    out: list[_Constraint] = []
    if opts.get("class_quotas") is not None or opts.get("class_caps") is not None:
        if pool.probs is None:
            raise InvalidInput(
                "class quotas/caps are by predicted class and need model probabilities",
                code="model_required",
                details={"option": "class_quotas" if opts.get("class_quotas") is not None else "class_caps"},
            )
        C = pool.probs.shape[1]
        keys = list(range(C))
        quotas = _counts_from(opts.get("class_quotas"), keys, "class_quotas")
        caps = _counts_from(opts.get("class_caps"), keys, "class_caps")
        pred = pool.probs.argmax(axis=1)
        for c in keys:
            if c in quotas or c in caps:
                out.append(_Constraint(f"class:{c}", pred == c, quotas.get(c, 0), caps.get(c)))
    slices = opts.get("slices") or {}
    if (opts.get("slice_quotas") or opts.get("slice_caps")) and not slices:
        raise InvalidInput("slice_quotas/slice_caps need option slices={name: bool mask (N,)}")
    names = list(slices)
    quotas = _counts_from(opts.get("slice_quotas"), names, "slice_quotas")
    caps = _counts_from(opts.get("slice_caps"), names, "slice_caps")
    for name in names:
        mask = np.asarray(slices[name])
        if mask.shape != (pool.n,):
            raise InvalidInput(f"slice {name!r} must be a boolean mask of shape (N,)", details={"shape": list(mask.shape)})
        if name in quotas or name in caps:
            out.append(_Constraint(f"slice:{name}", mask.astype(bool), quotas.get(name, 0), caps.get(name)))
    return out


def _near_duplicates(pool: _Pool, threshold: float) -> np.ndarray:
    """Pool samples whose cosine similarity to some labeled embedding is >= threshold."""
    from ml.index import EmbeddingIndex  # noqa: PLC0415

    lab = pool.labeled_embeddings
    if lab is None or len(lab) == 0 or pool.n == 0:
        return np.zeros(pool.n, bool)
    index = EmbeddingIndex(lab.shape[1], metric="cosine", random_state=pool.random_state)
    index.add(np.arange(len(lab), dtype=np.int64), lab)
    dup = np.zeros(pool.n, bool)
    step = 65_536
    for s in range(0, pool.n, step):
        _, dist = index.search(pool.embeddings[s: s + step], 1)
        dup[s: s + step] = (1.0 - dist[:, 0]) >= threshold
    return dup


class _Batch:
    """Accumulates picks for one select() call, enforcing caps and the total cost."""

    def __init__(self, pool: _Pool, budget: int, constraints: list[_Constraint], max_total_cost: float | None):
        self.pool = pool
        self.left = budget
        self.constraints = constraints
        self.max_total_cost = max_total_cost
        self.spent = 0.0
        self.taken = np.zeros(pool.n, bool)
        pool._cache["taken"] = self.taken  # coverage strategies treat earlier picks as covered
        self.idx: list[int] = []
        self.sc: list[float] = []
        self.names: list[str] = []

    def blocked(self) -> np.ndarray:
        """Samples that can no longer be taken (already taken, or in a full capped group)."""
        b = self.taken.copy()
        for c in self.constraints:
            if c.maximum is not None and c.count >= c.maximum:
                b |= c.mask
        if self.max_total_cost is not None and self.pool.cost is not None:
            b |= self.pool.cost > (self.max_total_cost - self.spent) + 1e-12
        return b

    def accept(self, result: _Result) -> int:
        idx, sc, name = result
        if len(idx):
            self.names.append(name)
        n_ok = 0
        for i, s in zip(idx.tolist(), sc.tolist()):
            if self.left <= 0:
                break
            if self.taken[i]:
                continue
            if any(c.maximum is not None and c.count >= c.maximum and c.mask[i] for c in self.constraints):
                continue
            if self.max_total_cost is not None and self.pool.cost is not None:
                ci = float(self.pool.cost[i])
                if self.spent + ci > self.max_total_cost + 1e-12:
                    continue
                self.spent += ci
            self.taken[i] = True
            self.idx.append(i)
            self.sc.append(s)
            self.left -= 1
            for c in self.constraints:
                if c.mask[i]:
                    c.count += 1
            n_ok += 1
        return n_ok

    def _in(self, group: np.ndarray) -> np.ndarray:
        in_group = np.zeros(self.pool.n, bool)
        in_group[group] = True
        return in_group

    def fill_quotas(self, fn, group: np.ndarray) -> None:
        """Each unmet quota from this group's samples, ranked by the strategy inside the quota's group."""
        in_group = self._in(group)
        over = 4 if self.max_total_cost is not None else 1  # ask for more when picks may be skipped for cost
        for c in self.constraints:
            need = min(c.minimum - c.count, self.left)
            if c.maximum is not None:
                need = min(need, c.maximum - c.count)
            if need <= 0:
                continue
            sub = np.flatnonzero(in_group & c.mask & ~self.blocked())
            if len(sub):
                self.accept(fn(self.pool, sub, need * over))

    def fill_free(self, fn, group: np.ndarray) -> None:
        """The rest of the budget from this group, by the strategy (caps and cost still apply)."""
        in_group = self._in(group)
        over = 4 if self.max_total_cost is not None else 1
        for _ in range(len(self.constraints) + 4):
            if self.left <= 0:
                break
            avail = np.flatnonzero(in_group & ~self.blocked())
            if len(avail) == 0:
                break
            if self.accept(fn(self.pool, avail, self.left * over)) == 0:
                break


# --------------------------------------------------------------------------- validation


def _all_finite(A: np.ndarray, rows: int = 65_536) -> bool:
    """np.isfinite(A).all() without a full-size boolean temporary."""
    return all(bool(np.isfinite(A[s: s + rows]).all()) for s in range(0, len(A), rows))


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
    if n and not _all_finite(emb):
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
        if n and (probs.min() < -1e-6 or np.abs(probs.sum(axis=1, dtype=np.float64) - 1.0).max() > 1e-3):
            raise InvalidInput("probs must be probabilities: non-negative rows that sum to 1 (apply softmax to logits)",
                               code="invalid_probs")
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


def _validate_options(options: dict, n: int, d: int) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    if unknown:
        raise InvalidInput(f"unknown selection option(s): {', '.join(unknown)}", code="unknown_option",
                           details={"unknown": unknown, "known": sorted(_KNOWN_OPTIONS)})
    for name, lowest in _INT_KNOBS.items():
        if name in options:
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < lowest:
                raise InvalidInput(f"{name} must be an integer >= {lowest}", details={name: repr(value)[:50]})
    for name in ("diversity_factor",):
        if name in options:
            try:
                ok = float(options[name]) >= 1.0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InvalidInput(f"{name} must be a number >= 1", details={name: repr(options[name])[:50]})
    cost = options.get("cost")
    if cost is not None:
        cost = np.asarray(cost, dtype=np.float32).ravel()
        if cost.shape != (n,) or not np.isfinite(cost).all() or (n and cost.min() <= 0):
            raise InvalidInput("cost must be a positive finite array with one entry per pool sample",
                               details={"shape": list(np.shape(options.get("cost")))})
    mc = options.get("mc_probs")
    if mc is not None:
        mc = np.asarray(mc, dtype=np.float32)
        if mc.ndim != 3 or mc.shape[1] != n or not np.isfinite(mc).all() or (mc.size and mc.min() < -1e-6):
            raise InvalidInput("mc_probs must be a finite (T, N, C) array of stochastic-pass probabilities",
                               details={"shape": list(mc.shape), "n_pool": n})
    lab = options.get("labeled_embeddings")
    if lab is not None:
        lab = np.asarray(lab, dtype=np.float32)
        if lab.ndim != 2 or (len(lab) and lab.shape[1] != d) or not np.isfinite(lab).all():
            raise InvalidInput("labeled_embeddings must be a finite (M, D) array with the pool's D",
                               details={"shape": list(lab.shape), "dim": d})
    strata = options.get("strata")
    if strata is not None and np.shape(strata)[:1] != (n,):
        raise InvalidInput("strata must have one entry per pool sample", details={"shape": list(np.shape(strata))})
    thr = options.get("dedup_threshold")
    if thr is not None and not (0.0 < float(thr) <= 1.0):
        raise InvalidInput("dedup_threshold is a cosine similarity in (0, 1]", details={"dedup_threshold": thr})
    return cost, mc, lab


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

    strategy: one of :data:`STRATEGIES` (:data:`MODEL_FREE_STRATEGIES` work without ``probs``).
    prefer: bool mask (N,) of samples to take first; they are ranked among themselves by the strategy,
        and the rest of the budget is filled from the other samples. Quotas come before preference: a quota
        that the preferred samples cannot meet takes its picks from the others before the preferred fill.

    Strategy options: ``diversity_factor`` (auto / cluster_margin, default 10), ``n_clusters``
    (cluster_margin), ``cold_start_max_train``, ``kmeans_iter``, ``kmeans_restarts``, ``kmedoids_max``
    (kmeans / auto's cold start, 5000; 0 = no k-medoid refinement), ``cold_start_min_labels`` (auto, 3),
    ``typicality_k`` (20), ``kcenter_max_pool`` (100_000), ``strata`` (N,) (stratified_random),
    ``mc_probs`` (T, N, C) (bald), ``labeled_embeddings`` (M, D) (kcenter, typicality, dedup).

    Batch constraints, on top of any strategy:
    - ``class_quotas`` / ``class_caps``: per predicted class, a (C,) array or {class index: n}. Quotas are
      taken first (ranked by the strategy inside that class), caps bound the whole batch.
    - ``slices`` {name: bool mask (N,)} (see :func:`slice_mask`) with ``slice_quotas`` / ``slice_caps`` {name: n}.
    - ``cost`` (N,) > 0: uncertainty-based utilities are divided by it; ``max_total_cost`` bounds the sum of
      the chosen samples' cost.
    - ``labeled_embeddings`` + ``dedup_threshold`` (cosine similarity, e.g. 0.98): pool samples that
      near-duplicate a labeled sample are never chosen.
    ``Selection.info`` reports what the constraints did.

    Raises ``InvalidInput(code="model_required")`` for an uncertainty strategy without ``probs`` (bald:
    without ``mc_probs``), ``code="unknown_strategy"`` / ``"unknown_option"`` for names it does not know.
    """
    budget, emb, probs, labeled_counts, n_classes, prefer = _validate(
        strategy, budget, embeddings, probs, labeled_counts, n_classes, prefer
    )
    cost, mc, lab = _validate_options(options, len(emb), emb.shape[1])
    pool = _Pool(
        embeddings=emb,
        probs=probs,
        n_classes=n_classes,
        labeled_counts=labeled_counts,
        random_state=int(random_state),
        rng=np.random.default_rng(random_state),
        options=dict(options),
        cost=cost,
        mc_probs=mc,
        labeled_embeddings=lab,
    )
    if strategy == "bald" and mc is None:
        pool.utility("bald")  # raises model_required
    constraints = _build_constraints(pool)
    info: dict = {}
    available = np.ones(pool.n, bool)
    thr = options.get("dedup_threshold")
    if thr is not None and lab is not None and len(lab):
        dup = _near_duplicates(pool, float(thr))
        available &= ~dup
        info["excluded_near_duplicates"] = int(dup.sum())
    max_total_cost = options.get("max_total_cost")
    if max_total_cost is not None:
        max_total_cost = float(max_total_cost)
    batch = _Batch(pool, budget, constraints, max_total_cost)
    fn = _STRATEGY_FUNCS[strategy]
    groups = [available] if prefer is None else [available & prefer, available & ~prefer]
    members = [np.flatnonzero(g) for g in groups]
    # quotas before preference: a quota is met from the other samples too before preferred ones fill the batch
    for phase in (batch.fill_quotas, batch.fill_free):
        for m in members:
            if batch.left > 0 and len(m):
                phase(fn, m)
    chosen = np.asarray(batch.idx, np.int64)
    chosen_sc = np.asarray(batch.sc, np.float32)
    out_idx: list[np.ndarray] = []
    out_sc: list[np.ndarray] = []
    for g in groups:  # preferred picks first, each group by score
        mine = g[chosen]
        gi, gs = _sort_desc(chosen[mine], chosen_sc[mine])
        out_idx.append(gi)
        out_sc.append(gs)
    if prefer is not None:
        info["preferred"] = int(len(out_idx[0]))
    if constraints:
        info["constraints"] = {
            c.name: {"count": int(c.count), "quota": int(c.minimum), "cap": c.maximum,
                     "shortfall": int(max(0, c.minimum - c.count))}
            for c in constraints
        }
    if cost is not None:
        chosen = np.concatenate(out_idx)
        info["total_cost"] = float(cost[chosen].sum()) if len(chosen) else 0.0
    if batch.names:
        name = batch.names[0]
    else:
        name = strategy if strategy != "auto" else ("auto/cold_start_kmeans" if _is_cold(pool) else "auto/margin_diverse")
    return Selection(
        indices=np.concatenate(out_idx).astype(np.int64),
        scores=np.concatenate(out_sc).astype(np.float32),
        strategy=name,
        info=info,
    )
