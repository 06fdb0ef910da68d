"""The pool one :func:`ml.selection.select` call works on, and the ranking helpers its strategies share.

A strategy is ``(pool, candidate positions (M,), k) -> Result``: ranked pool positions (<= k), their
scores (higher = more worth labeling) and the concrete strategy name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ml.errors import InvalidInput
from ml.selection.scores import UNCERTAINTY, bald

__all__ = ["Pool", "Result", "empty_result", "rank_by", "sort_desc", "rank_in_cluster"]


@dataclass
class Pool:
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
            elif self.probs is None and self.options.get("uncertainty") is not None:
                u = np.asarray(self.options["uncertainty"], dtype=np.float32)  # a learner's own acquisition score
            else:
                if self.probs is None:
                    raise InvalidInput(
                        f"strategy {name!r} needs model probabilities; train a model first or use 'auto'/'random'",
                        code="model_required",
                        details={"strategy": name},
                    )
                u = UNCERTAINTY[name](self.probs)
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


Result = tuple[np.ndarray, np.ndarray, str]  # (pool positions ranked, scores, concrete name)


def empty_result(name: str) -> Result:
    return np.empty(0, np.int64), np.empty(0, np.float32), name


def rank_by(scores: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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


def sort_desc(idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((idx, -scores))
    return idx[order].astype(np.int64), scores[order].astype(np.float32)


def rank_in_cluster(labels: np.ndarray, key: np.ndarray, n_clusters: int) -> np.ndarray:
    """Rank (0 = smallest key) of every point inside its cluster."""
    order = np.lexsort((key, labels))
    lab_sorted = labels[order]
    starts = np.searchsorted(lab_sorted, np.arange(n_clusters))
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - starts[lab_sorted]
    return rank

