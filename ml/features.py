"""Label-free embeddings for the first selection round, before any model exists.

:func:`label_free_embeddings` maps a loader batch to ``(N, 128)`` float32 rows of
unit L2 norm.  It is **stateless**: every row depends only on its own sample and
on fixed constants (a seeded random projection), never on the rest of the pool,
so embeddings can be computed incrementally at ingest and never go stale.

Hand-made descriptors per modality (each block L2-normalised, then weighted and
concatenated, then projected to 128-d with a fixed seeded Gaussian matrix):

- image ``(N, 3, H, W)`` in ``[0, 1]``: contrast-normalised 8x8 grayscale
  thumbnail; histograms of gradient orientations on a 4x4 grid (HOG-like,
  square-rooted); colour mean/std and a 2x2 colour layout.
- audio ``(N, 1, n_mels, T)`` log-mel (as made by :mod:`ml.modalities.audio`):
  the active (non-silent) region is resampled to 16 steps, which normalises the
  speaking rate; a DCT over bands gives 10 cepstral coefficients per step
  (c0, the level, dropped), and each coefficient's mean over the utterance is
  subtracted (cepstral mean normalisation: removes the speaker's and the
  channel's fixed spectral colouring, so the same word said by different voices
  lines up).
- pointcloud ``(N, P, 3)``: local surface geometry from k-NN PCA: histograms of
  surface variation, of the signed cosine between *outward-oriented* normals of
  point pairs (a box peaks at -1, 0, 1, a tetrahedron at -1/3 and 1, an
  octahedron at -1, -1/3, 1/3, 1) and of surflet pairs (the angle of a normal to
  the line joining the pair x the normal-normal cosine, Wahl et al. 2003), of
  the normal-radial angle; plus, at a lower weight, the global D2 (pairwise
  distance) and radial distance distributions, PCA eigenvalue ratios and
  sign-invariant coordinate histograms along the principal axes.  All
  rotation-invariant.

The descriptors are versioned (:data:`FEATURES_VERSION`): stored embeddings
made by another version must be recomputed, not mixed.  The choices above were
measured with ``python -m bench.label_efficiency`` (cold start at 20 labels and
the label-efficiency curves; bench/README.md has the figures).

Only numpy is imported at module level (scipy's cKDTree lazily, for point clouds).
"""

from __future__ import annotations

import functools

import numpy as np

from ml.errors import InvalidInput

__all__ = ["EMBEDDING_DIM", "FEATURES_VERSION", "label_free_embeddings", "raw_descriptors"]

EMBEDDING_DIM = 128
# Bump whenever any descriptor changes: callers tag stored embeddings with it and recompute
# the ones made by another version (v1: up to d660ae6; v2: CMN cepstra, oriented-normal pair features).
FEATURES_VERSION = 2
_PROJECTION_SEED = 20240917  # fixed forever: changing it invalidates stored embeddings
_EPS = 1e-8


def _l2(F: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(F, axis=1, keepdims=True)
    return F / np.maximum(n, _EPS)


def _grid_mean(A: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Average ``(N, H, W)`` over a ``gh x gw`` grid of near-equal cells -> ``(N, gh, gw)``."""
    n, h, w = A.shape
    if h % gh == 0 and w % gw == 0:
        return A.reshape(n, gh, h // gh, gw, w // gw).mean(axis=(2, 4))
    rows = np.array_split(np.arange(h), gh)
    cols = np.array_split(np.arange(w), gw)
    out = np.empty((n, gh, gw), dtype=A.dtype)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[:, i, j] = A[:, r[0] : r[-1] + 1, c[0] : c[-1] + 1].mean(axis=(1, 2))
    return out


# ----------------------------------------------------------------------------- image


def _image_descriptors(X: np.ndarray) -> np.ndarray:
    if X.ndim != 4 or X.shape[1] not in (1, 3) or X.shape[2] < 8 or X.shape[3] < 8:
        raise InvalidInput(
            "image batch must have shape (N, 3, H, W) with H, W >= 8",
            details={"shape": list(X.shape)},
        )
    X = X.astype(np.float32, copy=False)
    n = X.shape[0]
    gray = X.mean(axis=1)  # (N, H, W)

    # 1. contrast-normalised thumbnail
    thumb = _grid_mean(gray, 8, 8).reshape(n, -1)
    thumb = thumb - thumb.mean(axis=1, keepdims=True)
    thumb = _l2(thumb)

    # 2. HOG-like: unsigned gradient orientation histograms, 4x4 cells x 8 bins,
    #    linear interpolation between neighbouring orientation bins
    gy, gx = np.gradient(gray, axis=(1, 2))
    mag = np.sqrt(gx * gx + gy * gy)
    n_bins = 8
    ang = np.mod(np.arctan2(gy, gx), np.pi) / np.pi * n_bins  # [0, n_bins)
    lo = np.floor(ang).astype(np.int64) % n_bins
    hi = (lo + 1) % n_bins
    w_hi = ang - np.floor(ang)
    w_lo = 1.0 - w_hi
    hog_cells = []
    for b in range(n_bins):
        m = mag * (w_lo * (lo == b) + w_hi * (hi == b))
        hog_cells.append(_grid_mean(m, 4, 4))
    hog = np.stack(hog_cells, axis=-1).reshape(n, -1)  # (N, 4*4*8)
    hog = np.sqrt(_l2(hog))  # Hellinger-style
    hog = _l2(hog)

    # 3. colour: channel mean/std and a 2x2 layout of channel means (mean-removed)
    Xc = X if X.shape[1] == 3 else np.repeat(X, 3, axis=1)
    cmean = Xc.mean(axis=(2, 3))
    cstd = Xc.std(axis=(2, 3))
    layout = np.stack([_grid_mean(Xc[:, c], 2, 2).reshape(n, -1) for c in range(3)], axis=1).reshape(n, -1)
    layout = layout - layout.mean(axis=1, keepdims=True)
    colour = np.concatenate([cmean - 0.5, cstd, layout], axis=1)
    colour = _l2(colour)

    return np.concatenate([1.0 * thumb, 1.3 * hog, 0.4 * colour], axis=1)


# ----------------------------------------------------------------------------- audio


@functools.lru_cache(maxsize=4)
def _dct_matrix(n: int, k: int) -> np.ndarray:
    """Orthonormal DCT-II rows 1..k (c0, the overall level, is dropped) -> ``(k, n)``."""
    i = np.arange(n)
    rows = [np.sqrt(2.0 / n) * np.cos(np.pi * (j) * (2 * i + 1) / (2 * n)) for j in range(1, k + 1)]
    M = np.asarray(rows, dtype=np.float32)
    M.setflags(write=False)
    return M


def _time_warp(S: np.ndarray, n_out: int, rel_db: float) -> np.ndarray:
    """Crop each ``(M, T)`` spectrogram to its active region and resample it to ``n_out`` frames.

    Activity is measured above each band's own noise floor (its 10th percentile over the clip's
    frames, the loader's silent padding left out): a frame's activity is its largest rise above the
    floor, and the active region spans the first to the last frame within ``rel_db`` of the clip's
    most active one.  This removes silence and normalises the speaking rate, so the same word said
    slowly or quickly lines up; and since a fixed per-band gain (a channel's spectral tilt) moves
    the floors with it, the region does not depend on the channel, which a threshold on the raw
    level did (noise in the lifted bands crossed it).
    """
    n, m, t = S.shape
    out = np.empty((n, m, n_out), dtype=np.float32)
    for s in range(n):
        spec = S[s]
        level = spec.max(axis=0)
        real = level > level.min() + 1.0  # the loader pads short clips with digital silence
        if int(real.sum()) < 2:
            real[:] = True
        floor = np.percentile(spec[:, real], 10, axis=1)
        activity = (spec - floor[:, None]).max(axis=0)
        activity[~real] = -np.inf
        on = np.flatnonzero(activity >= activity.max() - rel_db)
        a, b = int(on[0]), int(on[-1]) + 1
        seg = spec[:, a:b]
        pos = np.linspace(0.0, seg.shape[1] - 1, n_out)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, seg.shape[1] - 1)
        w = (pos - i0).astype(np.float32)
        out[s] = seg[:, i0] * (1.0 - w) + seg[:, i1] * w
    return out


def _audio_descriptors(X: np.ndarray) -> np.ndarray:
    from ml.modalities.audio import LOGMEL_DB_SCALE  # numpy-only module

    if X.ndim == 3:
        X = X[:, None]
    if X.ndim != 4 or X.shape[1] != 1 or X.shape[2] < 16 or X.shape[3] < 8:
        raise InvalidInput(
            "audio batch must have shape (N, 1, n_mels, T) with n_mels >= 16, T >= 8",
            details={"shape": list(X.shape)},
        )
    if not np.isfinite(X).all():
        raise InvalidInput("audio features contain NaN or inf", details={})
    S = X[:, 0].astype(np.float32) * np.float32(LOGMEL_DB_SCALE)  # (N, M, T) in dB (+ a constant)
    n, m, _ = S.shape

    # speaking-rate-normalised cepstral trajectory: 10 coefficients x 16 steps, mean-normalised per
    # coefficient (CMN). Measured against 13 x 10 with utterance statistics (v1), with and without
    # CMN, variance normalisation, deltas and 8..20 coefficients: CMN is what makes different voices
    # of one word cluster together (cold-start accuracy at 20 labels on the spoken digits 84 -> 92 %).
    W = _time_warp(S, 16, rel_db=35.0)
    W = np.maximum(W, W.max(axis=(1, 2), keepdims=True) - 60.0)  # 60 dB dynamic range
    C = np.einsum("km,nmt->nkt", _dct_matrix(m, 10), W)  # (N, 10, 16)
    C = C - C.mean(axis=2, keepdims=True)
    return _l2(C.reshape(n, -1))


# ----------------------------------------------------------------------------- points


@functools.lru_cache(maxsize=8)
def _pair_indices(p: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    i = rng.integers(0, p, size=n_pairs)
    j = rng.integers(0, p, size=n_pairs)
    k = rng.integers(0, p, size=n_pairs)
    keep = (i != j) & (j != k) & (i != k)
    i, j, k = i[keep], j[keep], k[keep]
    for a in (i, j, k):
        a.setflags(write=False)
    return i, j, k


def _hist_rows(V: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    """Row-wise normalised histograms of ``V`` ``(N, K)`` on ``[lo, hi]``."""
    n, k = V.shape
    idx = np.clip(((V - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    idx = idx + (np.arange(n) * bins)[:, None]
    h = np.bincount(idx.ravel(), minlength=n * bins).reshape(n, bins).astype(np.float32)
    return h / max(k, 1)


@functools.lru_cache(maxsize=8)
def _query_indices(p: int, q: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(p, size=min(p, q), replace=False))
    idx.setflags(write=False)
    return idx


def _local_geometry(P: np.ndarray, *, n_query: int = 256, k: int = 16) -> np.ndarray:
    """Histograms of local surface geometry for one normalised cloud ``(P, 3)`` -> ``(96,)``.

    For a fixed subset of query points, PCA of the ``k`` nearest neighbours gives the surface
    variation (smallest eigenvalue share: 0 on flat faces, larger on edges and curved parts) and the
    normal (smallest eigenvector), oriented outward (away from the centroid; exact on convex shapes
    and deterministic on the rest).  Four blocks, each square-rooted and L2-normalised:

    - surface variation (8 bins);
    - signed cosine between the normals of point pairs (20 bins on [-1, 1]): the orientation
      structure of the faces, which tells a tetrahedron (-1/3, 1) from an octahedron (-1, +-1/3, 1);
    - surflet pairs: cosine of normal i to the line i->j x normal-normal cosine (6 x 10 bins);
    - ``|cos|`` between normal and radial direction (8 bins; 1 everywhere on a sphere).
    """
    from scipy.spatial import cKDTree  # lazy: scipy is only needed here

    p = P.shape[0]
    k = min(k, p)
    qi = _query_indices(p, n_query, 11)
    Q = P[qi]
    _, nn = cKDTree(P).query(Q, k=k)
    nb = P[nn]  # (q, k, 3)
    nb = nb - nb.mean(axis=1, keepdims=True)
    C = np.einsum("qki,qkj->qij", nb, nb) / k
    ev, evec = np.linalg.eigh(C)  # ascending
    ev = np.maximum(ev, 0.0)
    variation = ev[:, 0] / np.maximum(ev.sum(axis=1), _EPS)
    radial = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), _EPS)
    normal = evec[:, :, 0]
    outward = np.where((normal * radial).sum(axis=1) < 0.0, -1.0, 1.0)
    normal = normal * outward[:, None]
    cos_nr = (normal * radial).sum(axis=1)  # >= 0 after orientation
    pi, pj, _ = _pair_indices(len(qi), 4096, 13)
    cos_nn = (normal[pi] * normal[pj]).sum(axis=1)
    line = Q[pj] - Q[pi]
    line = line / np.maximum(np.linalg.norm(line, axis=1, keepdims=True), _EPS)
    cos_nl = (normal[pi] * line).sum(axis=1)
    nn_bin = np.clip(((cos_nn + 1.0) / 2.0 * 10).astype(np.int64), 0, 9)
    nl_bin = np.clip(((cos_nl + 1.0) / 2.0 * 6).astype(np.int64), 0, 5)
    surflet = np.bincount(nl_bin * 10 + nn_bin, minlength=60).astype(np.float64)[None] / len(pi)
    return np.concatenate(
        [
            _l2(np.sqrt(_hist_rows(variation[None], 8, 0.0, 1.0 / 3.0))),
            _l2(np.sqrt(_hist_rows(cos_nn[None], 20, -1.0, 1.0))),
            _l2(np.sqrt(surflet)),
            _l2(np.sqrt(_hist_rows(cos_nr[None], 8, 0.0, 1.0))),
        ],
        axis=1,
    )[0]


def _pointcloud_descriptors(X: np.ndarray) -> np.ndarray:
    if X.ndim != 3 or X.shape[2] != 3 or X.shape[1] < 16:
        raise InvalidInput(
            "point batch must have shape (N, P, 3) with P >= 16",
            details={"shape": list(X.shape)},
        )
    P = X.astype(np.float64, copy=False)
    if not np.isfinite(P).all():
        raise InvalidInput("point batch contains NaN or inf", details={})
    n, p, _ = P.shape
    # re-normalise defensively: centroid at origin, max radius 1
    P = P - P.mean(axis=1, keepdims=True)
    r = np.linalg.norm(P, axis=2)
    scale = np.maximum(r.max(axis=1), _EPS)
    P = P / scale[:, None, None]
    r = r / scale[:, None]

    # global shape distributions
    i, j, _ = _pair_indices(p, 4096, 7)
    d2 = np.linalg.norm(P[:, i] - P[:, j], axis=2)  # (N, n_pairs) in [0, 2]
    d2h = np.sqrt(_hist_rows(d2, 24, 0.0, 2.0))
    radial = np.sqrt(_hist_rows(r, 16, 0.0, 1.0))

    # PCA: eigenvalue ratios and sign-invariant coordinate histograms along the axes
    C = np.einsum("npi,npj->nij", P, P) / p
    evals, evecs = np.linalg.eigh(C)  # ascending
    evals = evals[:, ::-1]
    evecs = evecs[:, :, ::-1]
    ev = np.maximum(evals, 0.0)
    ratios = ev / np.maximum(ev.sum(axis=1, keepdims=True), _EPS)
    shape_stats = np.concatenate(
        [
            ratios,
            np.sqrt(ev),
            (ev[:, 1:2] / np.maximum(ev[:, 0:1], _EPS)),
            (ev[:, 2:3] / np.maximum(ev[:, 0:1], _EPS)),
            r.mean(axis=1, keepdims=True),
            r.std(axis=1, keepdims=True),
        ],
        axis=1,
    )
    proj = np.abs(np.einsum("npi,nij->npj", P, evecs))  # (N, P, 3), |coord| along each axis
    axis_h = np.concatenate([np.sqrt(_hist_rows(proj[:, :, a], 10, 0.0, 1.0)) for a in range(3)], axis=1)

    local = np.stack([_local_geometry(P[s]) for s in range(n)])  # (N, 96): four L2-normalised blocks

    # the global distributions depend on the shape's proportions (a flat box vs a cube), the local
    # blocks much less: they get a quarter of the weight (measured, see the module docstring)
    return np.concatenate(
        [
            0.25 * _l2(d2h),
            0.25 * _l2(radial),
            0.25 * _l2(shape_stats),
            0.25 * _l2(axis_h),
            local,
        ],
        axis=1,
    ).astype(np.float32)


_DESCRIPTORS = {
    "image": _image_descriptors,
    "audio": _audio_descriptors,
    "pointcloud": _pointcloud_descriptors,
}


def raw_descriptors(modality: str, X: np.ndarray) -> np.ndarray:
    """The concatenated hand-made descriptor before projection, ``(N, D_raw)`` float32."""
    if modality not in _DESCRIPTORS:
        raise InvalidInput(
            f"unknown modality {modality!r}",
            details={"modality": modality, "allowed": sorted(_DESCRIPTORS)},
        )
    X = np.asarray(X)
    if X.dtype.kind not in "fiu":
        raise InvalidInput("expected a numeric array", details={"dtype": str(X.dtype)})
    if X.shape[:1] == (0,):
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(_DESCRIPTORS[modality](X), dtype=np.float32)


@functools.lru_cache(maxsize=16)
def _projection(modality: str, d_in: int, d_out: int) -> np.ndarray:
    seed = [_PROJECTION_SEED, sum(map(ord, modality)), d_in, d_out]
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((max(d_in, d_out), max(d_in, d_out)))
    Q, R = np.linalg.qr(G)
    Q = Q * np.sign(np.diag(R))  # a uniformly random orthogonal matrix
    # d_in >= d_out: orthonormal columns (a random rotation followed by truncation);
    # d_in < d_out: an isometric embedding, distances preserved exactly
    W = np.ascontiguousarray(Q[:d_in, :d_out]).astype(np.float32)
    W.setflags(write=False)
    return W


def label_free_embeddings(modality: str, X: np.ndarray) -> np.ndarray:
    """``(N, 128)`` float32 unit-norm embeddings of a loader batch, without labels or fitting.

    ``modality`` is ``"image"`` (``X`` of shape ``(N, 3, H, W)``), ``"audio"``
    (``(N, 1, n_mels, T)``) or ``"pointcloud"`` (``(N, P, 3)``).  Row ``i`` depends
    only on ``X[i]``: the same sample always gets the same embedding.
    """
    X = np.asarray(X)
    if modality not in _DESCRIPTORS:
        raise InvalidInput(
            f"unknown modality {modality!r}",
            details={"modality": modality, "allowed": sorted(_DESCRIPTORS)},
        )
    if X.ndim == 0 or X.shape[0] == 0:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    F = raw_descriptors(modality, X)
    W = _projection(modality, F.shape[1], EMBEDDING_DIM)
    E = F @ W
    return np.ascontiguousarray(_l2(E).astype(np.float32))
