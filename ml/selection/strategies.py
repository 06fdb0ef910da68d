"""Query strategies and their registry: what each needs, which options it reads, and the function that ranks.

Each strategy is ``(pool, candidate positions (M,), k) -> Result`` (see :mod:`ml.selection.pool`).
:data:`REGISTRY` holds one :class:`Strategy` per name; the public tuples (:data:`STRATEGIES`,
:data:`MODEL_FREE_STRATEGIES`) and the checks of :func:`ml.selection.select` are read from it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ml.selection.pool import Pool, Result, empty_result, rank_by, rank_in_cluster, sort_desc

__all__ = ["Strategy", "REGISTRY", "STRATEGIES", "MODEL_FREE_STRATEGIES", "COLD_START_MIN_LABELS", "is_cold"]

COLD_START_MIN_LABELS = 3


# --------------------------------------------------------------------------- strategies


def _random(pool: Pool, cand: np.ndarray, k: int) -> Result:
    k = min(k, len(cand))
    # a uniform priority key per candidate; the k highest keys are a uniform sample without replacement
    keys = pool.rng.random(len(cand)).astype(np.float32)
    order = np.argsort(-keys, kind="stable")[:k]
    return cand[order].astype(np.int64), keys[order], "random"


def _stratified_random(pool: Pool, cand: np.ndarray, k: int) -> Result:
    """Random sample with each stratum represented in proportion to its share of the candidates.

    Strata come from option ``strata`` (N,) (any labels: metadata values, sources, ...); without it,
    from the model's predicted class; without a model, from k-means clusters of the embeddings.
    Allocation is by largest remainder, so every stratum with share >= 1/k gets a sample.
    """
    k = min(k, len(cand))
    if k <= 0:
        return empty_result("stratified_random")
    strata = pool.options.get("strata")
    if strata is not None:
        groups = np.unique(np.asarray(strata)[cand], return_inverse=True)[1].ravel()
        source = "strata"
    elif pool.probs is not None:
        groups = pool.probs[cand].argmax(axis=1)
        source = "predicted_class"
    else:
        from ml.cluster import kmeans  # noqa: PLC0415

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
    rank = rank_in_cluster(groups, -keys, len(sizes))
    take = rank < alloc[groups]
    idx, sc = sort_desc(cand[take], keys[take])
    return idx[:k], sc[:k], f"stratified_random/{source}"


def _uncertainty(name: str):
    def run(pool: Pool, cand: np.ndarray, k: int) -> Result:
        idx, sc = rank_by(pool.utility(name), cand, k)
        return idx, sc, name

    return run


def _cold_start_kmeans(pool: Pool, cand: np.ndarray, k: int) -> Result:
    """k-means with ``k`` clusters on the candidates' embeddings; the member nearest each centre, then
    refined as k-medoids.

    Fit on a seeded subsample for big pools (``cold_start_max_train`` option, default
    max(10_000, 16 * k)); picks come from the clustered points. Clusters with no member leave room that
    is filled by the second-nearest members of the largest clusters, and so on.
    While the clustered set has at most ``kmedoids_max`` points (default 5000), the picks are then
    improved by k-medoid swaps (:func:`ml.cluster.kmedoids_refine`: lower summed squared distance from every
    point to its nearest pick), and score = the share of the points nearest each pick. A bigger clustered
    set is refined on a seeded sample of ``kmedoids_max`` points that holds the picks (while picks *
    kmedoids_max <= 2e6), and the refined picks are kept only if they lower the cost over every clustered
    point. Otherwise the score is the share of the points in the pick's cluster divided by (1 + its rank
    inside the cluster).
    Either way the biggest modes of the data come first.
    """
    from ml.cluster import assign_nearest, kmeans, kmedoids_refine  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return empty_result("kmeans")
    pts = pool.subsample(cand, pool.max_train(k))
    X = pool.embeddings[pts]
    _, labels, dist = kmeans(X, k, random_state=pool.random_state,
                             n_iter=pool.kmeans_iter(len(pts), k), n_init=pool.kmeans_restarts(len(pts), k))
    n_clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_clusters)
    rank_in = rank_in_cluster(labels, dist, n_clusters)
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
        idx, sc = sort_desc(pts[take], (cell / len(pts)).astype(np.float32))
        return idx, sc, "kmeans"
    idx, sc = sort_desc(pts[take], score[take].astype(np.float32))
    return idx, sc, "kmeans"


def _typicality(pool: Pool, cand: np.ndarray, k: int) -> Result:
    """TypiClust (Hacohen et al. 2022): the most typical sample of each of the largest uncovered clusters.

    k-means into k + (number of labeled samples) clusters (capped by the candidates); clusters that
    already hold a labeled sample (option ``labeled_embeddings``, or a sample already in this batch)
    are skipped while uncovered ones remain; in each chosen cluster take the sample with the highest typicality
    1 / mean distance to its ``typicality_k`` (default 20) nearest neighbours in the cluster.
    Score = typicality.
    """
    from ml.cluster import assign_nearest, kmeans  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return empty_result("typicality")
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
    idx, sc = sort_desc(pts[picks], typ[picks])
    return idx, sc, "typicality"


def _kcenter(pool: Pool, cand: np.ndarray, k: int) -> Result:
    """Greedy k-center / coreset (Sener & Savarese 2018): each pick is the candidate farthest from the
    labeled set (option ``labeled_embeddings``) and from the picks so far (earlier picks of this batch
    included). Score = that distance.
    Pools above ``kcenter_max_pool`` (default 100_000) are subsampled first."""
    from ml.cluster import kcenter_greedy  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return empty_result("kcenter")
    pts = pool.subsample(cand, int(pool.options.get("kcenter_max_pool", 100_000)))
    picks, dist = kcenter_greedy(pool.embeddings, k, pool.covered_embeddings(), candidates=pts)
    idx, sc = sort_desc(picks, dist)
    return idx, sc, "kcenter"


def _diverse_top(pool: Pool, cand: np.ndarray, k: int, utility: np.ndarray, name: str) -> Result:
    """Take the ``diversity_factor * k`` (default 10) most useful candidates, k-means them into k clusters,
    keep the most useful member of each cluster; empty clusters are filled with the next most useful."""
    from ml.cluster import kmeans  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return empty_result(name)
    factor = float(pool.options.get("diversity_factor", 10))
    m = min(len(cand), max(k, int(np.ceil(factor * k))))
    top, top_u = rank_by(utility, cand, m)
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
    idx, sc = sort_desc(top[chosen], top_u[chosen])
    return idx, sc, name


def _margin_diverse(pool: Pool, cand: np.ndarray, k: int) -> Result:
    """Margin with batch diversity (close to Cluster-Margin, Citovsky et al. 2021), ranked by uncertainty."""
    return _diverse_top(pool, cand, k, pool.utility("margin"), "margin_diverse")


def _margin_stratified(pool: Pool, cand: np.ndarray, k: int) -> Result:
    """Margin inside size-proportional strata: k-means the candidates into k clusters, give each cluster a share
    of the batch in proportion to its size (largest remainder, so the batch follows the pool's distribution the
    way a random sample does in expectation), and take each cluster's smallest-margin members; a cluster smaller
    than its share passes the rest to the most uncertain remaining candidates. Ranked by uncertainty.

    Why (``python -m bench.first_model --rounds 5``, bench/README.md): on data with strong nuisance variation a
    weak first model's most uncertain samples crowd into a few hard regions (``margin_diverse`` takes the 10k
    most uncertain and only spreads within those), and ``auto`` fell below ``random`` on some seeds; sampling
    every region of the pool in proportion, uncertain-first inside each, kept it above random there and lost
    nothing measurable on digits."""
    from ml.cluster import kmeans  # noqa: PLC0415

    k = min(k, len(cand))
    if k <= 0:
        return empty_result("margin_stratified")
    u = pool.utility("margin")
    if k == len(cand) or k == 1:
        idx, sc = rank_by(u, cand, k)
        return idx, sc, "margin_stratified"
    _, groups, _ = kmeans(pool.embeddings[cand], k, random_state=pool.random_state,
                          n_iter=pool.kmeans_iter(min(len(cand), pool.max_train(k)), k), max_train=pool.max_train(k))
    groups = np.asarray(groups).ravel()
    sizes = np.bincount(groups, minlength=k)
    raw = k * sizes / sizes.sum()
    quota = np.floor(raw).astype(np.int64)
    quota[np.argsort(-(raw - quota), kind="stable")[: k - int(quota.sum())]] += 1
    uc = u[cand]
    order = np.lexsort((np.arange(len(cand)), -uc))  # most uncertain first, ties by position
    taken = np.zeros(len(cand), bool)
    used = np.zeros(k, np.int64)
    for j in order:  # one pass in uncertainty order: a member is taken while its cluster has share left
        g = groups[j]
        if used[g] < quota[g]:
            taken[j] = True
            used[g] += 1
    short = k - int(taken.sum())
    if short > 0:
        rest = order[~taken[order]][:short]
        taken[rest] = True
    idx, sc = sort_desc(cand[taken], uc[taken])
    return idx, sc, "margin_stratified"


def _bald(pool: Pool, cand: np.ndarray, k: int) -> Result:
    idx, sc = rank_by(pool.utility("bald"), cand, k)
    return idx, sc, "bald"


def _cluster_margin(pool: Pool, cand: np.ndarray, k: int) -> Result:
    """Cluster-Margin (Citovsky et al. 2021).

    1. Cluster the pool's embeddings once (k-means fitted on a subsample; ``n_clusters`` option,
       default max(k, 2 * sqrt(N)) capped by N) — the paper uses HAC; k-means scales to 1M.
    2. Take the ``diversity_factor * k`` (default 10) smallest-margin candidates.
    3. Group them by cluster, sort the clusters by how many of them they hold (smallest first), and go
       round-robin over the clusters taking the most uncertain remaining member each time, until k.
    The batch is reported ranked by uncertainty (score = margin uncertainty).
    """
    from ml.cluster import assign_nearest, kmeans  # noqa: PLC0415

    u = pool.utility("margin")
    k = min(k, len(cand))
    if k <= 0:
        return empty_result("cluster_margin")
    factor = float(pool.options.get("diversity_factor", 10))
    m = min(len(cand), max(k, int(np.ceil(factor * k))))
    top, top_u = rank_by(u, cand, m)
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
    rank = rank_in_cluster(inv, np.arange(len(top)), len(cl))
    cluster_order = np.empty(len(cl), np.int64)
    cluster_order[np.lexsort((cl, counts))] = np.arange(len(cl))  # smallest clusters first
    take = np.lexsort((cluster_order[inv], rank))[:k]  # round r visits every cluster before round r+1
    idx, sc = sort_desc(top[take], top_u[take])
    return idx, sc, "cluster_margin"


def is_cold(pool: Pool) -> bool:
    min_labels = int(pool.options.get("cold_start_min_labels", COLD_START_MIN_LABELS))
    if pool.probs is None:
        return pool.options.get("uncertainty") is None
    if pool.labeled_counts is None:
        return False
    return len(pool.labeled_counts) == 0 or int(np.min(pool.labeled_counts)) < min_labels


STRATIFY_BELOW = 0.8  # auto stratifies while the model's mean top probability on the pool is below this


def _unsure(pool: Pool) -> bool:
    """Whether the model is unsure of most of the pool: its mean top probability over the pool (what a calibrated
    model expects its accuracy to be, known without labels) is below option ``stratify_below`` (0.8)."""
    return float(np.mean(np.max(pool.probs, axis=1))) < float(pool.options.get("stratify_below", STRATIFY_BELOW))


def _auto(pool: Pool, cand: np.ndarray, k: int) -> Result:
    """Cold start until a model exists and every class has >= 3 labels, then margin inside size-proportional
    k-means strata (:func:`_margin_stratified`) with class probabilities, or a learner's uncertainty with batch
    diversity (``margin_diverse``) without them.

    The cold start is k-means centres on the embeddings while nothing is labeled; once labels exist
    (option ``labeled_embeddings``) it is coverage-aware (typicality in the clusters no label covers
    yet), so it stops re-picking the typical points of modes that are already labeled. Measured by
    ``python -m bench.label_efficiency`` (the "coverage" prototype there).
    """
    if is_cold(pool):
        if pool.covered_embeddings() is not None:
            idx, sc, _ = _typicality(pool, cand, k)
            return idx, sc, "auto/cold_start_typicality"
        idx, sc, _ = _cold_start_kmeans(pool, cand, k)
        return idx, sc, "auto/cold_start_kmeans"
    if pool.probs is not None and _unsure(pool):
        # a model unsure of most of the pool: margin inside size-proportional strata of the pool
        idx, sc, _ = _margin_stratified(pool, cand, k)
        return idx, sc, "auto/margin_stratified"
    idx, sc, _ = _margin_diverse(pool, cand, k)  # a learner's uncertainty (boxes, regions, ...)
    return idx, sc, "auto/margin_diverse"


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Strategy:
    """One query strategy.

    needs: what it scores with: "embeddings" (works before any model exists), "probs" (model
        probabilities) or "mc_probs" (MC-dropout probabilities, option ``mc_probs``).
    options: the select() options it reads (integer ones are checked by :data:`ml.selection.core.INT_OPTIONS`).
    """

    name: str
    run: Callable[[Pool, np.ndarray, int], Result]
    needs: str
    options: tuple[str, ...]
    description: str

    @property
    def model_free(self) -> bool:
        return self.needs == "embeddings"


_KMEANS = ("cold_start_max_train", "kmeans_iter", "kmeans_restarts")

REGISTRY: dict[str, Strategy] = {s.name: s for s in (
    Strategy("auto", _auto, "embeddings",
             ("cold_start_min_labels", "stratify_below", "diversity_factor", *_KMEANS, "kmedoids_max", "typicality_k", "min_cluster_size"),
             "cold start (k-means, or typicality once labels exist) until a model exists and every class has "
             f"{COLD_START_MIN_LABELS} labels, then margin inside size-proportional k-means strata of the pool"),
    Strategy("random", _random, "embeddings", (), "uniform sample"),
    Strategy("least_confidence", _uncertainty("least_confidence"), "probs", (), "1 - top probability"),
    Strategy("margin", _uncertainty("margin"), "probs", (), "smallest gap between the two top probabilities"),
    Strategy("entropy", _uncertainty("entropy"), "probs", (), "entropy of the predicted distribution"),
    Strategy("kmeans", _cold_start_kmeans, "embeddings", (*_KMEANS, "kmedoids_max"),
             "the sample nearest each k-means centre, refined as k-medoids"),
    Strategy("typicality", _typicality, "embeddings", (*_KMEANS, "typicality_k", "min_cluster_size"),
             "TypiClust: the most typical sample of each of the largest uncovered clusters"),
    Strategy("kcenter", _kcenter, "embeddings", ("kcenter_max_pool",),
             "greedy k-center (coreset): farthest from the labeled set and the picks so far"),
    Strategy("stratified_random", _stratified_random, "embeddings", ("strata", *_KMEANS),
             "random sample with each stratum (option strata, predicted class or k-means cluster) in proportion"),
    Strategy("cluster_margin", _cluster_margin, "probs", ("diversity_factor", "n_clusters", "kmeans_iter"),
             "Cluster-Margin: smallest margins, round-robin over pool clusters"),
    Strategy("bald", _bald, "mc_probs", ("mc_probs",), "BALD mutual information over MC-dropout passes"),
)}

STRATEGIES: tuple[str, ...] = tuple(REGISTRY)
# strategies that work before any model exists (on embeddings only)
MODEL_FREE_STRATEGIES: tuple[str, ...] = tuple(name for name, s in REGISTRY.items() if s.model_free)
