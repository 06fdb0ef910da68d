"""Embedding search and clustering on faiss.

faiss is imported lazily inside functions, so ``import ml.index`` stays cheap for the web process.
Everything works on float32 arrays and never builds an N x N matrix.
"""

from __future__ import annotations

import numpy as np

from ml.errors import InvalidInput

__all__ = ["kmeans", "kcenter_greedy"]


def _faiss():
    try:
        import faiss  # noqa: PLC0415 (lazy on purpose)
    except ImportError as exc:  # pragma: no cover - faiss is a core dependency
        from ml.errors import MissingDependency

        raise MissingDependency(
            "faiss is required for embedding search and clustering",
            details={"package": "faiss-cpu", "install": "pip install faiss-cpu"},
        ) from exc
    return faiss


def _as_matrix(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise InvalidInput(f"{name} must be a 2-D array (N, D), got shape {X.shape}", details={"shape": list(X.shape)})
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    return np.ascontiguousarray(X)


def kmeans(
    X: np.ndarray,
    k: int,
    *,
    random_state: int = 0,
    n_iter: int = 20,
    max_train: int | None = None,
    assign: bool = True,
    plus_plus: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """k-means on faiss.

    Returns ``(centroids (k, D) float32, labels (N,) int64 | None, sq_distances (N,) float32 | None)``.
    ``max_train`` caps the number of points used to fit the centroids (a seeded uniform subsample);
    with ``assign=True`` every point of ``X`` is then assigned to its nearest centroid.
    ``k`` is clipped to the number of distinct training points available.
    """
    X = _as_matrix(X)
    n, d = X.shape
    k = int(k)
    if k < 1:
        raise InvalidInput("k must be >= 1", details={"k": k})
    if n == 0:
        raise InvalidInput("cannot cluster an empty array", code="empty_data")
    rng = np.random.default_rng(random_state)
    train = X
    if max_train is not None and n > max_train:
        sub = np.sort(rng.choice(n, size=int(max_train), replace=False))
        train = X[sub]
    k = min(k, len(train))
    if k == len(train):
        centroids = train.copy()
    else:
        faiss = _faiss()
        km = faiss.Kmeans(
            d,
            k,
            niter=int(n_iter),
            seed=int(rng.integers(1, 2**31 - 1)),
            verbose=False,
            min_points_per_centroid=1,
            max_points_per_centroid=max(1, len(train) // k + 1),
        )
        if plus_plus:
            km.cp.init_method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
        km.train(train)
        centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    if not assign:
        return centroids, None, None
    labels, dist = assign_nearest(X, centroids)
    return centroids, labels, dist


def assign_nearest(X: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (L2) of every row of ``X``: ``(labels int64 (N,), squared distances float32 (N,))``."""
    faiss = _faiss()
    X = _as_matrix(X)
    centroids = _as_matrix(centroids, "centroids")
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    dist, lab = index.search(X, 1)
    return lab[:, 0].astype(np.int64), np.maximum(dist[:, 0], 0.0)


def kcenter_greedy(
    X: np.ndarray,
    k: int,
    already_selected: np.ndarray | None = None,
    *,
    random_state: int = 0,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (the coreset strategy of Sener & Savarese 2018).

    Picks ``k`` rows of ``X`` one at a time, each the point farthest (L2) from everything picked so far
    and from ``already_selected`` (an (M, D) array of embeddings already labeled, or None).
    ``candidates`` restricts the picks to those row positions (distances still count only picks).
    Returns ``(positions (k,) int64, distance at pick time (k,) float32)``; the distances are
    non-increasing. With nothing selected yet the first pick is the point nearest the mean.
    Memory is O(N); time O(N * (k + M) * D).
    """
    X = _as_matrix(X)
    n = len(X)
    cand = np.arange(n) if candidates is None else np.asarray(candidates, dtype=np.int64)
    k = min(int(k), len(cand))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    P = X[cand]
    sq_norm = np.einsum("ij,ij->i", P, P)
    min_d = np.full(len(cand), np.inf, dtype=np.float32)
    if already_selected is not None and len(already_selected):
        S = _as_matrix(already_selected, "already_selected")
        faiss = _faiss()
        index = faiss.IndexFlatL2(S.shape[1])
        index.add(S)
        d, _ = index.search(P, 1)
        min_d = np.maximum(d[:, 0], 0.0)
    picks = np.empty(k, np.int64)
    dists = np.empty(k, np.float32)
    taken = np.zeros(len(cand), bool)
    for t in range(k):
        if np.isinf(min_d).all():
            mean = P.mean(axis=0)
            j = int(np.argmin(((P - mean) ** 2).sum(axis=1)))
            dj = np.inf
        else:
            md = np.where(taken, -1.0, min_d)
            j = int(np.argmax(md))
            dj = float(md[j])
        picks[t] = j
        taken[j] = True
        c = P[j]
        d = sq_norm - 2.0 * (P @ c) + float(c @ c)
        np.minimum(min_d, np.maximum(d, 0.0), out=min_d)
        if not np.isfinite(dj):
            # first pick with nothing labeled: report the radius it covers (= the next pick's distance)
            dj = float(min_d.max())
        dists[t] = np.sqrt(dj)
    return cand[picks], dists
