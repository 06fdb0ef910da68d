"""Task-type-agnostic acquisition: pick a labeling batch from any learner's predictions.

Every learner of :mod:`ml.learners` returns :class:`~ml.learners.base.Predictions` with a per-sample
``uncertainty`` (N,) and an ``embedding`` (N, D), whatever its task type (classification, detection, audio
regions, point segmentation, cuboids). :func:`uncertain_diverse` needs nothing else, so one acquisition
serves every task type: it takes the ``diversity_factor * budget`` most uncertain candidates, clusters them
with k-means into ``budget`` clusters in the model's embedding space and keeps the most uncertain sample of
each cluster (empty clusters are filled with the next most uncertain). It is the batch-diversity step of the
``margin_diverse`` strategy of :func:`ml.selection.select` (the same code), with the uncertainty given
instead of computed from class probabilities.
"""

from __future__ import annotations

import numpy as np

from ml.errors import InvalidInput
from ml.selection.pool import Pool
from ml.selection.strategies import _diverse_top

__all__ = ["uncertain_diverse", "DEFAULT_DIVERSITY_FACTOR"]

DEFAULT_DIVERSITY_FACTOR = 5.0


def uncertain_diverse(
    uncertainty,
    embeddings,
    budget: int,
    *,
    candidates=None,
    diversity_factor: float = DEFAULT_DIVERSITY_FACTOR,
    random_state: int = 0,
) -> np.ndarray:
    """Positions (int64, at most ``budget``, no duplicates) of a batch that is both uncertain and diverse.

    ``uncertainty`` (N,): higher = more worth labeling (``Predictions.uncertainty``).
    ``embeddings`` (N, D): the model's embedding of the same samples (``Predictions.embedding``).
    ``candidates``: the positions that may be picked (e.g. the unlabeled ones; default all N).
    ``diversity_factor``: how many times ``budget`` uncertain candidates are clustered (>= 1; 1 = plain
    top-``budget`` uncertainty). Deterministic for a given ``random_state``. The batch is returned ranked
    by uncertainty (highest first; ties by position).
    """
    u = np.asarray(uncertainty, dtype=np.float32)
    E = np.asarray(embeddings, dtype=np.float32)
    if u.ndim != 1:
        raise InvalidInput("uncertainty must be a 1-D array (N,)", details={"shape": list(u.shape)})
    if E.ndim != 2 or len(E) != len(u):
        raise InvalidInput("embeddings must be a 2-D array (N, D) with one row per uncertainty",
                           details={"embeddings": list(E.shape), "uncertainty": list(u.shape)})
    if not (np.isfinite(u).all() and np.isfinite(E).all()):
        raise InvalidInput("uncertainty and embeddings must be finite")
    if isinstance(budget, bool) or int(budget) != budget or int(budget) < 1:
        raise InvalidInput("budget must be an integer >= 1", details={"budget": str(budget)})
    if not diversity_factor >= 1:
        raise InvalidInput("diversity_factor must be >= 1", details={"diversity_factor": diversity_factor})
    n = len(u)
    if candidates is None:
        cand = np.arange(n, dtype=np.int64)
    else:
        cand = np.unique(np.asarray(candidates, dtype=np.int64).ravel())
        if len(cand) and (cand[0] < 0 or cand[-1] >= n):
            raise InvalidInput("candidates must be positions in 0..N-1", details={"n": n})
    if len(cand) == 0:
        return np.empty(0, np.int64)
    rs = int(random_state)
    pool = Pool(embeddings=np.ascontiguousarray(E), probs=None, n_classes=None, labeled_counts=None, random_state=rs,
                rng=np.random.default_rng(rs), options={"diversity_factor": float(diversity_factor)}, cost=None,
                mc_probs=None, labeled_embeddings=None)
    idx, _, _ = _diverse_top(pool, cand, int(budget), u, "uncertain_diverse")
    return idx
