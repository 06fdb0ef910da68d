"""Drift between a reference window (e.g. the training data) and a production window.

- Embedding drift: maximum mean discrepancy (MMD) with RBF kernels at 0.25, 0.5, 1 and 2 times the median
  distance, aggregated by one permutation test (the largest standardised MMD^2, so a small new mode and a
  broad shift are both seen, at the false-alarm rate of one test). Both windows are subsampled to
  ``max_samples`` each, so the kernel matrices stay small (2 * max_samples squared) whatever the window
  sizes. Measured by ``python -m bench.drift_detection``.
- Novelty: the share of production samples farther from every reference sample than the reference's own
  90/95/98/99th percentile of nearest-neighbour distances; a new kind of input in a few percent of
  production, which MMD averages away, shows here. These statistics join the MMD ones in the same
  permutation test (one p-value, exact).
- The production samples that drive it: the MMD witness function w(z) = mean_prod k(z, .) - mean_ref k(z, .)
  is high where production has mass that the reference lacks (a new campaign, a new camera, ...); when a
  novelty statistic found the drift, the samples farthest from the reference.
- Output drift: population stability index (PSI) on the model's top-1 confidence (quantile bins of the
  reference) and on the predicted-class distribution.
- Per slice (e.g. time_of_day=night): the slice's share of each window (PSI of membership), and MMD /
  confidence PSI inside the slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ml.errors import InvalidInput
from ml.jsonable import jsonable

__all__ = ["DriftReport", "detect_drift", "mmd_test", "witness", "psi", "psi_categorical", "psi_level", "SCALES",
           "NOVELTY_QUANTILES"]

_EPS = 1e-4


# --------------------------------------------------------------------------- PSI


def psi_level(value: float | None) -> str | None:
    """The usual reading of a PSI: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift."""
    if value is None:
        return None
    return "stable" if value < 0.1 else ("moderate" if value < 0.25 else "significant")


def _psi_from_props(p_ref: np.ndarray, p_prod: np.ndarray) -> float:
    p_ref = np.clip(p_ref, _EPS, None)
    p_prod = np.clip(p_prod, _EPS, None)
    p_ref, p_prod = p_ref / p_ref.sum(), p_prod / p_prod.sum()
    return float(np.sum((p_prod - p_ref) * np.log(p_prod / p_ref)))


def psi(ref_values: np.ndarray, prod_values: np.ndarray, *, bins: int = 10) -> float:
    """PSI of a continuous score with ``bins`` quantile bins of the reference (empty bins smoothed by 1e-4)."""
    r = np.asarray(ref_values, dtype=np.float64).ravel()
    q = np.asarray(prod_values, dtype=np.float64).ravel()
    if len(r) == 0 or len(q) == 0:
        raise InvalidInput("psi needs values in both windows", code="empty_data")
    edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]))
    p_ref = np.bincount(np.searchsorted(edges, r, side="right"), minlength=len(edges) + 1) / len(r)
    p_prod = np.bincount(np.searchsorted(edges, q, side="right"), minlength=len(edges) + 1) / len(q)
    return _psi_from_props(p_ref, p_prod)


def psi_categorical(ref_labels: np.ndarray, prod_labels: np.ndarray, n_categories: int) -> float:
    """PSI of a categorical distribution (e.g. predicted classes 0..n_categories-1)."""
    r = np.asarray(ref_labels, dtype=np.int64).ravel()
    q = np.asarray(prod_labels, dtype=np.int64).ravel()
    if len(r) == 0 or len(q) == 0:
        raise InvalidInput("psi needs values in both windows", code="empty_data")
    return _psi_from_props(np.bincount(r, minlength=n_categories) / len(r), np.bincount(q, minlength=n_categories) / len(q))


# --------------------------------------------------------------------------- MMD


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    a = np.einsum("ij,ij->i", A, A)
    b = np.einsum("ij,ij->i", B, B)
    return np.maximum(a[:, None] + b[None, :] - 2.0 * (A @ B.T), 0.0)


def _median_bandwidth(Z: np.ndarray, rng: np.random.Generator, max_points: int = 1000) -> float:
    S = Z if len(Z) <= max_points else Z[rng.choice(len(Z), size=max_points, replace=False)]
    d2 = _sq_dists(S, S)
    iu = np.triu_indices(len(S), k=1)
    med = float(np.median(np.sqrt(d2[iu]))) if len(iu[0]) else 1.0
    return med if med > 0 else 1.0


SCALES = (0.25, 0.5, 1.0, 2.0)  # multiples of the median bandwidth that mmd_test aggregates by default
# quantiles of the reference's own nearest-neighbour distances that the novelty statistics count beyond
NOVELTY_QUANTILES = (0.9, 0.95, 0.98, 0.99)


def _novelty_stats(D2: np.ndarray, A: np.ndarray, n: int, quantiles: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Novelty statistics of every split of the pooled samples (columns of the 0/1 matrix ``A``, 1 = reference).

    For one split, each point's distance to its nearest *reference* point (itself left out) is its novelty;
    tau_q is the q-quantile of the reference points' novelties, and the statistic is the share of
    production points above tau_q. Without drift, about 1 - q of production is (the windows are
    exchangeable); a new kind of input, even in a few percent of production, lies beyond the reference's
    own far tail. Returns ``(stats (len(quantiles), n_splits), novelty of every point on the observed split)``.
    """
    N = len(D2)
    D = D2.copy()
    np.fill_diagonal(D, np.inf)
    # each point's L nearest neighbours, sorted; with L >= 10 N / n a split leaves none of them in the
    # reference with probability <= e^-10, and then the whole row is searched
    L = int(max(32, math.ceil(10 * N / max(n, 1))))
    if L < N - 1:
        nbr = np.argpartition(D, L - 1, axis=1)[:, :L]
    else:  # small windows: every other point, nearest first (the point itself, at inf, is left out)
        nbr = np.argsort(D, axis=1)[:, : N - 1]
    dn = np.take_along_axis(D, nbr, axis=1)
    order = np.argsort(dn, axis=1)
    nbr, dn = np.take_along_axis(nbr, order, axis=1), np.take_along_axis(dn, order, axis=1)
    q = np.asarray(quantiles, dtype=np.float64)
    rows = np.arange(N)
    stats = np.empty((len(q), A.shape[1]))
    observed = None
    for j in range(A.shape[1]):
        is_ref = A[:, j] > 0
        hit = is_ref[nbr]
        d = dn[rows, hit.argmax(axis=1)]
        miss = ~hit.any(axis=1)
        if miss.any():
            d[miss] = np.where(is_ref[None, :], D[miss], np.inf).min(axis=1)
        tau = np.quantile(d[is_ref], q)
        stats[:, j] = (d[~is_ref][None, :] > tau[:, None]).mean(axis=1)
        if j == 0:
            observed = d
    return stats, observed


def mmd_test(
    X_ref: np.ndarray,
    X_prod: np.ndarray,
    *,
    n_permutations: int = 200,
    max_samples: int = 1000,
    bandwidth: float | None = None,
    scales: tuple[float, ...] = SCALES,
    novelty_quantiles: tuple[float, ...] = NOVELTY_QUANTILES,
    random_state: int = 0,
) -> dict:
    """Unbiased MMD^2 between two samples with RBF kernels at several bandwidths, novelty statistics, and
    one permutation-test p-value for all of them at once.

    The bandwidths are ``scales`` times ``bandwidth`` (default: the median distance between the pooled
    samples). One bandwidth sees one scale of change: the median one sees broad shifts, a quarter of it
    sees a small new mode (a new kind of input in 5-10% of production) that the median one averages away.
    Each bandwidth's MMD^2 is standardised by its permutation distribution (mean and std over the
    observed split and the ``n_permutations`` shuffles), and the test statistic is the largest of them;
    its p-value comes from the same shuffles, so testing several bandwidths costs no false alarms:
    p = (1 + #{permuted max >= observed max}) / (1 + n_permutations).
    ``scales=(1.0,)`` is the single-kernel test.

    MMD compares densities, so a new kind of input in a few percent of production barely moves it. The
    novelty statistics (``novelty_quantiles``, see :func:`_novelty_stats`) count the production samples
    farther from every reference sample than the reference's own q-quantile of nearest-neighbour
    distances: that share is about 1 - q without drift and jumps with a trickle of new input. They join
    the same maximum over standardised statistics, so the p-value stays exact. ``novelty_quantiles=()``
    is MMD alone (the test before the novelty statistics were added).

    Returns {"mmd2", "p_value", "bandwidth", "bandwidths", "base_bandwidth", "n_ref", "n_prod",
    "statistic", "novelty"} (n_* after subsampling); "bandwidth" and "mmd2" are those of the bandwidth with
    the largest standardised MMD^2; "statistic" is "mmd" or "novelty", whichever standardised statistic
    is largest on the observed windows; "novelty" is {"quantile", "share_prod", "share_expected"} for the
    quantile whose statistic is largest (None without novelty statistics).
    """
    rng = np.random.default_rng(random_state)
    X = np.asarray(X_ref, dtype=np.float64)
    Y = np.asarray(X_prod, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1]:
        raise InvalidInput("both windows must be (N, D) arrays with the same D", details={"ref": list(X.shape), "prod": list(Y.shape)})
    if len(X) < 2 or len(Y) < 2:
        raise InvalidInput("each window needs at least 2 samples", code="empty_data", details={"n_ref": len(X), "n_prod": len(Y)})
    scales = tuple(float(c) for c in scales)
    if not scales or any(not math.isfinite(c) or c <= 0 for c in scales):
        raise InvalidInput("scales must be positive numbers", details={"scales": list(scales)})
    novelty_quantiles = tuple(float(q) for q in novelty_quantiles)
    if any(not 0.0 < q < 1.0 for q in novelty_quantiles):
        raise InvalidInput("novelty quantiles must lie strictly between 0 and 1",
                           details={"novelty_quantiles": list(novelty_quantiles)})
    if len(X) > max_samples:
        X = X[np.sort(rng.choice(len(X), size=max_samples, replace=False))]
    if len(Y) > max_samples:
        Y = Y[np.sort(rng.choice(len(Y), size=max_samples, replace=False))]
    n, m = len(X), len(Y)
    Z = np.concatenate([X, Y])
    sigma0 = float(bandwidth) if bandwidth else _median_bandwidth(Z, rng)
    D2 = _sq_dists(Z, Z)
    N = n + m
    A = np.zeros((N, n_permutations + 1))
    A[:n, 0] = 1.0
    for p in range(1, n_permutations + 1):
        A[rng.permutation(N)[:n], p] = 1.0
    raw, standard = [], []
    for c in scales:
        sigma = c * sigma0
        K = np.exp(-D2 / (2.0 * sigma**2))
        KA = K @ A
        row = K.sum(axis=1)
        total = row.sum()
        aKa = np.einsum("ij,ij->j", A, KA)
        aK1 = A.T @ row
        bKb = total - 2.0 * aK1 + aKa
        aKb = aK1 - aKa
        # unbiased: drop the diagonal (k(z, z) = 1); column 0 is the observed split, the rest are shuffles
        stats = (aKa - n) / (n * (n - 1)) + (bKb - m) / (m * (m - 1)) - 2.0 * aKb / (n * m)
        sd = float(stats.std())
        raw.append(stats)
        standard.append((stats - stats.mean()) / sd if sd > 0 else np.zeros_like(stats))
    best = int(np.argmax([z[0] for z in standard]))
    novelty = None
    statistic = "mmd"
    if novelty_quantiles:
        nov, _ = _novelty_stats(D2, A, n, novelty_quantiles)
        nov_standard = []
        for row in nov:
            sd = float(row.std())
            nov_standard.append((row - row.mean()) / sd if sd > 0 else np.zeros_like(row))
        top_q = int(np.argmax([z[0] for z in nov_standard]))
        novelty = {"quantile": novelty_quantiles[top_q], "share_prod": float(nov[top_q, 0]),
                   "share_expected": 1.0 - novelty_quantiles[top_q]}
        if nov_standard[top_q][0] > standard[best][0]:
            statistic = "novelty"
        standard = standard + nov_standard
    T = np.max(standard, axis=0)
    observed = float(T[0])
    p_value = float((1 + np.sum(T[1:] >= observed - 1e-12)) / (1 + n_permutations))
    return {"mmd2": float(raw[best][0]), "p_value": p_value, "bandwidth": scales[best] * sigma0,
            "bandwidths": [c * sigma0 for c in scales], "base_bandwidth": sigma0, "n_ref": n, "n_prod": m,
            "statistic": statistic, "novelty": novelty}


def witness(X_ref: np.ndarray, X_prod: np.ndarray, Z: np.ndarray, *, bandwidth: float, chunk: int = 4096) -> np.ndarray:
    """MMD witness w(z) = mean_prod k(z, y) - mean_ref k(z, x) for every row of ``Z`` (float64 (len(Z),))."""
    X = np.asarray(X_ref, dtype=np.float64)
    Y = np.asarray(X_prod, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    out = np.empty(len(Z))
    g = 1.0 / (2.0 * bandwidth**2)
    for s in range(0, len(Z), chunk):
        z = Z[s: s + chunk]
        out[s: s + chunk] = np.exp(-_sq_dists(z, Y) * g).mean(axis=1) - np.exp(-_sq_dists(z, X) * g).mean(axis=1)
    return out


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class DriftReport:
    n_ref: int
    n_prod: int
    mmd2: float
    p_value: float
    drifted: bool  # p_value < alpha
    alpha: float
    bandwidth: float
    confidence_psi: float | None  # PSI of the top-1 confidence (None without probs)
    prediction_psi: float | None  # PSI of the predicted-class distribution
    confidence_level: str | None  # "stable" | "moderate" | "significant"
    slices: dict[str, dict] = field(default_factory=dict)
    top_drift_indices: list[int] = field(default_factory=list)  # positions in the production window
    top_drift_scores: list[float] = field(default_factory=list)  # witness values, same order
    mean_confidence_ref: float | None = None
    mean_confidence_prod: float | None = None
    # which statistic found the most drift: "mmd" (witnesses: MMD witness values) or "novelty" (witnesses:
    # distance to the nearest reference sample, farthest first)
    statistic: str = "mmd"
    # {"quantile", "share_prod", "share_expected"}: the share of production farther from the reference than
    # the reference's own ``quantile`` of nearest-neighbour distances (about share_expected without drift)
    novelty: dict | None = None

    def to_dict(self) -> dict:
        return jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


def _check_emb(E, name) -> np.ndarray:
    E = np.asarray(E)
    if E.ndim != 2:
        raise InvalidInput(f"{name} must be a 2-D array (N, D)", details={"shape": list(E.shape)})
    if len(E) and not np.isfinite(E).all():
        raise InvalidInput(f"{name} contain NaN or infinite values", code="empty_data")
    return E.astype(np.float32, copy=False)


def detect_drift(
    ref_embeddings: np.ndarray,
    prod_embeddings: np.ndarray,
    *,
    ref_probs: np.ndarray | None = None,
    prod_probs: np.ndarray | None = None,
    slices: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    alpha: float = 0.05,
    n_permutations: int = 200,
    max_samples: int = 1000,
    top_k: int = 20,
    min_slice: int = 20,
    scales: tuple[float, ...] = SCALES,
    novelty_quantiles: tuple[float, ...] = NOVELTY_QUANTILES,
    random_state: int = 0,
) -> DriftReport:
    """Compare a production window with a reference window.

    ref/prod_embeddings: (N_ref, D) / (N_prod, D). ref/prod_probs: optional model probabilities for PSI.
    slices: {name: (mask over ref, mask over prod)}, e.g. from :func:`ml.slices.slice_mask` on each
    window's metadata; slices with fewer than ``min_slice`` samples in a window get shares only.
    ``top_drift_indices``: the ``top_k`` production samples most unlike the reference, worth sending back
    to the labeling pool: by the MMD witness at the bandwidth that found the most drift, or, when a
    novelty statistic found more (``statistic == "novelty"``), by the distance to the nearest reference
    sample. ``scales``, ``novelty_quantiles``: see :func:`mmd_test`.
    """
    R = _check_emb(ref_embeddings, "ref_embeddings")
    Q = _check_emb(prod_embeddings, "prod_embeddings")
    if R.shape[1] != Q.shape[1]:
        raise InvalidInput("both windows need the same embedding dimension", details={"ref": R.shape[1], "prod": Q.shape[1]})
    test = mmd_test(R, Q, n_permutations=n_permutations, max_samples=max_samples, scales=scales,
                    novelty_quantiles=novelty_quantiles, random_state=random_state)
    sigma = test["bandwidth"]
    rng = np.random.default_rng(random_state + 1)
    R_sub = R if len(R) <= max_samples else R[rng.choice(len(R), size=max_samples, replace=False)]
    Q_sub = Q if len(Q) <= max_samples else Q[rng.choice(len(Q), size=max_samples, replace=False)]
    if test["statistic"] == "novelty":
        from ml.cluster import assign_nearest  # numpy only; faiss stays unloaded

        w = np.sqrt(assign_nearest(Q, R_sub)[1].astype(np.float64))
    else:
        w = witness(R_sub, Q_sub, Q, bandwidth=sigma)
    k = min(int(top_k), len(Q))
    top = np.argsort(-w, kind="stable")[:k]

    conf_psi = pred_psi = None
    mean_ref = mean_prod = None
    conf_r = conf_q = None
    if (ref_probs is None) != (prod_probs is None):
        raise InvalidInput("give probs for both windows or for neither")
    if ref_probs is not None:
        Pr, Pq = np.asarray(ref_probs, np.float64), np.asarray(prod_probs, np.float64)
        if Pr.shape != (len(R), Pr.shape[1]) or Pq.shape != (len(Q), Pr.shape[1]):
            raise InvalidInput("probs must be (N, C) for each window with the same C",
                               details={"ref": list(Pr.shape), "prod": list(Pq.shape)})
        conf_r, conf_q = Pr.max(axis=1), Pq.max(axis=1)
        conf_psi = psi(conf_r, conf_q)
        pred_psi = psi_categorical(Pr.argmax(1), Pq.argmax(1), Pr.shape[1])
        mean_ref, mean_prod = float(conf_r.mean()), float(conf_q.mean())

    slice_out: dict[str, dict] = {}
    for name, masks in (slices or {}).items():
        try:
            mr, mq = masks
        except (TypeError, ValueError):
            raise InvalidInput(f"slice {name!r} must be a pair (mask over ref, mask over prod)") from None
        mr, mq = np.asarray(mr, bool), np.asarray(mq, bool)
        if mr.shape != (len(R),) or mq.shape != (len(Q),):
            raise InvalidInput(f"slice {name!r} masks must match the windows' lengths",
                               details={"ref": list(mr.shape), "prod": list(mq.shape)})
        d: dict = {
            "n_ref": int(mr.sum()),
            "n_prod": int(mq.sum()),
            "share_ref": float(mr.mean()) if len(mr) else 0.0,
            "share_prod": float(mq.mean()) if len(mq) else 0.0,
        }
        d["share_psi"] = _psi_from_props(np.array([1 - d["share_ref"], d["share_ref"]]),
                                         np.array([1 - d["share_prod"], d["share_prod"]]))
        if d["n_ref"] >= min_slice and d["n_prod"] >= min_slice:
            t = mmd_test(R[mr], Q[mq], n_permutations=n_permutations, max_samples=max_samples,
                         bandwidth=test["base_bandwidth"], scales=scales, novelty_quantiles=novelty_quantiles,
                         random_state=random_state)
            d.update({"mmd2": t["mmd2"], "p_value": t["p_value"], "drifted": t["p_value"] < alpha})
            if conf_r is not None:
                d["confidence_psi"] = psi(conf_r[mr], conf_q[mq])
        else:
            d.update({"mmd2": None, "p_value": None, "drifted": None})
        slice_out[str(name)] = d

    return DriftReport(
        n_ref=int(len(R)),
        n_prod=int(len(Q)),
        mmd2=float(test["mmd2"]),
        p_value=float(test["p_value"]),
        drifted=bool(test["p_value"] < alpha),
        alpha=float(alpha),
        bandwidth=float(sigma),
        confidence_psi=conf_psi,
        prediction_psi=pred_psi,
        confidence_level=psi_level(conf_psi),
        slices=slice_out,
        top_drift_indices=[int(i) for i in top],
        top_drift_scores=[float(w[i]) for i in top],
        mean_confidence_ref=mean_ref,
        mean_confidence_prod=mean_prod,
        statistic=test["statistic"],
        novelty=test["novelty"],
    )
