"""Clustering on float32 embeddings: k-means, nearest-centroid assignment, k-medoid refinement and
greedy k-center.

Plain numpy (BLAS matrix products in row chunks); faiss is imported lazily and only for
``kmeans(backend="faiss")`` and :func:`kcenter_greedy`, so ``import ml.cluster`` stays cheap for the web
process. Nothing here builds an N x N matrix (k-medoids refinement works on N x chunk blocks).
"""

from __future__ import annotations

import numpy as np

from ml.errors import InvalidInput, require

__all__ = ["kmeans", "assign_nearest", "kmedoids_refine", "kcenter_greedy"]


def _faiss():
    # faiss is a core dependency; the check only words the error when an install lacks it
    return require("faiss", "faiss is required for embedding search and clustering", install="pip install faiss-cpu",
                   package="faiss-cpu")


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
    init: str = "auto",
    backend: str = "numpy",
    n_init: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """k-means (Lloyd) on float32.

    Returns ``(centroids (k, D) float32, labels (N,) int64 | None, sq_distances (N,) float32 | None)``.
    ``max_train`` caps the number of points used to fit the centroids (a seeded uniform subsample);
    with ``assign=True`` every point of ``X`` is then assigned to its nearest centroid.
    ``k`` is clipped to the number of training points available.
    ``init``: "k-means++", "random" (k distinct training points), or "auto" = k-means++ while
    n_train * k <= 2e6 (k-means++ is sequential in k, so above that it costs more than the clustering).
    ``backend``: "numpy" (BLAS matrix products in row chunks; on this 2-core machine about 1.5x less CPU
    than faiss's Clustering for 16k x 1000 x 128) or "faiss" (faiss.Kmeans). Both are deterministic for a
    given ``random_state`` and thread count. Memory: O(chunk * k), never N x N.
    ``n_init``: independent seeded restarts; the centroids with the lowest inertia on the training points
    win (``n_init=1`` draws exactly what a single run drew).
    """
    if init not in ("auto", "k-means++", "random"):
        raise InvalidInput("init must be 'auto', 'k-means++' or 'random'", details={"init": init})
    if backend not in ("numpy", "faiss"):
        raise InvalidInput("backend must be 'numpy' or 'faiss'", details={"backend": backend})
    X = _as_matrix(X)
    n, d = X.shape
    k = int(k)
    if k < 1:
        raise InvalidInput("k must be >= 1", details={"k": k})
    if int(n_init) < 1:
        raise InvalidInput("n_init must be >= 1", details={"n_init": n_init})
    if n == 0:
        raise InvalidInput("cannot cluster an empty array", code="empty_data")
    rng = np.random.default_rng(random_state)
    train = X
    if max_train is not None and n > max_train:
        sub = np.sort(rng.choice(n, size=int(max_train), replace=False))
        train = X[sub]
    k = min(k, len(train))
    plus_plus = init == "k-means++" or (init == "auto" and len(train) * k <= 2e6)
    if k == len(train):
        centroids = train.copy()
    elif backend == "faiss":
        faiss = _faiss()
        km = faiss.Kmeans(
            d,
            k,
            niter=int(n_iter),
            seed=int(rng.integers(1, 2**31 - 1)),
            verbose=False,
            min_points_per_centroid=1,
            max_points_per_centroid=max(1, len(train) // k + 1),
            nredo=int(n_init),
        )
        if plus_plus:
            km.cp.init_method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
        km.train(train)
        centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    else:
        centroids = _lloyd(train, k, int(n_iter), rng, plus_plus)
        if n_init > 1:
            best = float(assign_nearest(train, centroids)[1].sum(dtype=np.float64))
            for _ in range(int(n_init) - 1):
                C = _lloyd(train, k, int(n_iter), rng, plus_plus)
                inertia = float(assign_nearest(train, C)[1].sum(dtype=np.float64))
                if inertia < best:
                    best, centroids = inertia, C
    if not assign:
        return centroids, None, None
    labels, dist = assign_nearest(X, centroids)
    return centroids, labels, dist


def _init_plus_plus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D^2 sampling)."""
    n = len(X)
    C = np.empty((k, X.shape[1]), np.float32)
    first = int(rng.integers(n))
    C[0] = X[first]
    d2 = np.maximum(((X - C[0]) ** 2).sum(axis=1), 0.0).astype(np.float64)
    for j in range(1, k):
        total = d2.sum()
        idx = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        C[j] = X[idx]
        np.minimum(d2, ((X - C[j]) ** 2).sum(axis=1), out=d2)
    return C


def _lloyd(X: np.ndarray, k: int, n_iter: int, rng: np.random.Generator, plus_plus: bool) -> np.ndarray:
    n = len(X)
    if plus_plus:
        C = _init_plus_plus(X, k, rng)
    else:
        C = X[np.sort(rng.choice(n, size=k, replace=False))].copy()
    for _ in range(max(0, n_iter)):
        labels, dist = assign_nearest(X, C)
        counts = np.bincount(labels, minlength=k)
        order = np.argsort(labels, kind="stable")
        nz = counts > 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums = np.add.reduceat(X[order], starts[nz], axis=0, dtype=np.float64)
        C_new = C.copy()
        C_new[nz] = (sums / counts[nz, None]).astype(np.float32)
        empty = np.flatnonzero(~nz)
        if len(empty):
            # re-seed empty clusters on the points worst served by their centre
            far = np.argsort(-dist, kind="stable")[: len(empty)]
            C_new[empty[: len(far)]] = X[far]
        if np.array_equal(C_new, C):
            break
        C = C_new
    return C


def assign_nearest(X: np.ndarray, centroids: np.ndarray, *, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (L2) of every row of ``X``: ``(labels int64 (N,), squared distances float32 (N,))``.

    BLAS products in row chunks (memory O(chunk * k))."""
    X = _as_matrix(X)
    C = _as_matrix(centroids, "centroids")
    if C.shape[1] != X.shape[1]:
        raise InvalidInput("centroids and X differ in dimension", details={"X": X.shape[1], "centroids": C.shape[1]})
    cc = np.einsum("ij,ij->i", C, C)
    labels = np.empty(len(X), np.int64)
    dist = np.empty(len(X), np.float32)
    Ct = np.ascontiguousarray(C.T)
    for s in range(0, len(X), chunk):
        xs = X[s: s + chunk]
        G = xs @ Ct
        G *= -2.0
        G += cc
        lab = G.argmin(axis=1)
        labels[s: s + chunk] = lab
        dist[s: s + chunk] = G[np.arange(len(lab)), lab] + np.einsum("ij,ij->i", xs, xs)
    np.maximum(dist, 0.0, out=dist)
    return labels, dist


def _sq_dists(X: np.ndarray, sq: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Squared L2 distances (N, len(cols)) from every row of ``X`` to the rows ``cols``, clipped at 0."""
    D = X @ X[cols].T
    D *= -2.0
    D += sq[:, None]
    D += sq[cols][None, :]
    np.maximum(D, 0.0, out=D)
    return D


def kmedoids_refine(
    X: np.ndarray,
    medoids: np.ndarray,
    *,
    candidates: np.ndarray | None = None,
    chunk: int = 64,
    max_passes: int = 20,
) -> tuple[np.ndarray, int]:
    """Improve a set of medoids (row positions of ``X``) by swaps, FasterPAM-style (Schubert & Rousseeuw 2021).

    Objective: the sum over all rows of the squared L2 distance to the nearest medoid (k-means' objective,
    with centres restricted to real samples). Candidates (default: every row) are scanned in blocks of
    ``chunk``; in each block the best swap (one medoid out, one candidate in) is applied at once when it
    lowers the objective. Passes repeat until one makes no swap (or ``max_passes``). Deterministic.
    Returns ``(medoids (k,) int64, number of swaps)``; the order of the input is kept (a swapped-in row
    takes the place of the one it replaced). Memory O(N * (k + chunk)); time O(passes * N^2 * D), so
    callers refine only small sets (the cold start does it up to ``kmedoids_max`` points).
    """
    X = _as_matrix(X)
    M = np.array(medoids, dtype=np.int64, copy=True)
    n, k = len(X), len(M)
    if k == 0 or k >= n:
        return M, 0
    cand = np.arange(n, dtype=np.int64) if candidates is None else np.asarray(candidates, dtype=np.int64)
    sq = np.einsum("ij,ij->i", X, X)
    Dm = _sq_dists(X, sq, M)  # (n, k): distance of every row to every medoid

    def nearest(rows: np.ndarray | slice):
        """(first, second) nearest medoid and their distances for ``rows`` of Dm."""
        D = Dm[rows]
        if k == 1:
            m = len(D)
            return np.zeros(m, np.int64), np.zeros(m, np.int64), D[:, 0].copy(), np.full(m, np.inf, np.float32)
        two = np.argpartition(D, 1, axis=1)[:, :2]
        d_two = np.take_along_axis(D, two, axis=1)
        flip = d_two[:, 1] < d_two[:, 0]
        first = np.where(flip, two[:, 1], two[:, 0])
        second = np.where(flip, two[:, 0], two[:, 1])
        return first, second, np.minimum(d_two[:, 0], d_two[:, 1]), np.maximum(d_two[:, 0], d_two[:, 1])

    n1, n2, d1, d2 = nearest(slice(None))
    swaps = 0
    for _ in range(max(1, int(max_passes))):
        swapped = False
        for s in range(0, len(cand), chunk):
            J = cand[s: s + chunk]
            J = J[~np.isin(J, M)]
            if len(J) == 0:
                continue
            Dc = _sq_dists(X, sq, J)  # (n, c)
            # row i moves to candidate j if it is nearer than its medoid: a gain shared by every swap-out
            shared = np.minimum(Dc - d1[:, None], 0.0).sum(axis=0, dtype=np.float64)
            # rows of the medoid swapped out that stay away from j fall back to min(j, second-nearest)
            W = np.maximum(np.minimum(Dc, d2[:, None]) - d1[:, None], 0.0)
            order = np.argsort(n1, kind="stable")
            per = np.zeros((k, len(J)), np.float64)
            counts = np.bincount(n1, minlength=k)
            nz = counts > 0
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            per[nz] = np.add.reduceat(W[order], starts[nz], axis=0, dtype=np.float64)
            delta = per + shared[None, :]
            a, j = np.unravel_index(int(np.argmin(delta)), delta.shape)
            total = float(d1.sum(dtype=np.float64))
            if delta[a, j] < -1e-7 * max(total, 1e-12):
                M[a] = J[j]
                dn = Dc[:, j]
                Dm[:, a] = dn
                # rows that had medoid a first or second: recompute; the others only compare with the new one
                redo = np.flatnonzero((n1 == a) | (n2 == a))
                keep = np.ones(n, bool)
                keep[redo] = False
                closer = keep & (dn < d1)
                between = keep & ~closer & (dn < d2)
                n2[closer], d2[closer] = n1[closer], d1[closer]
                n1[closer], d1[closer] = a, dn[closer]
                n2[between], d2[between] = a, dn[between]
                if len(redo):
                    n1[redo], n2[redo], d1[redo], d2[redo] = nearest(redo)
                swaps += 1
                swapped = True
        if not swapped:
            break
    return M, swaps


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
