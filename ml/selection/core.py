"""The entry point :func:`select`: checks its inputs, builds the pool, runs a strategy under the batch
constraints and returns a :class:`Selection`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ml.errors import InvalidInput
from ml.selection.batch import BATCH_OPTIONS, Batch, build_constraints, near_duplicates
from ml.selection.pool import Pool, sort_desc
from ml.selection.strategies import REGISTRY, STRATEGIES, _unsure, is_cold

__all__ = ["Selection", "select", "KNOWN_OPTIONS", "INT_OPTIONS"]

# integer options and their smallest allowed value
INT_OPTIONS = {"cold_start_max_train": 1, "kmeans_iter": 0, "kmeans_restarts": 1, "cold_start_min_labels": 0,
               "n_clusters": 1, "typicality_k": 1, "min_cluster_size": 1, "kcenter_max_pool": 1, "kmedoids_max": 0}

# every option select() takes: the strategies' knobs and the batch constraints
KNOWN_OPTIONS: frozenset[str] = frozenset(
    {opt for s in REGISTRY.values() for opt in s.options} | set(BATCH_OPTIONS) | {"uncertainty"}
)
assert set(INT_OPTIONS) <= KNOWN_OPTIONS


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



# --------------------------------------------------------------------------- validation


def _all_finite(A: np.ndarray, rows: int = 65_536) -> bool:
    """np.isfinite(A).all() without a full-size boolean temporary."""
    return all(bool(np.isfinite(A[s: s + rows]).all()) for s in range(0, len(A), rows))


def _validate(strategy, budget, embeddings, probs, labeled_counts, n_classes, prefer, has_uncertainty=False):
    if strategy not in REGISTRY:
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
    if REGISTRY[strategy].needs == "probs" and probs is None and not has_uncertainty:
        raise InvalidInput(
            f"strategy {strategy!r} needs model probabilities; train a model first or use 'auto'/'random'",
            code="model_required",
            details={"strategy": strategy},
        )
    return budget, emb, probs, labeled_counts, (int(n_classes) if n_classes is not None else None), prefer


def _validate_options(options: dict, n: int, d: int) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise InvalidInput(f"unknown selection option(s): {', '.join(unknown)}", code="unknown_option",
                           details={"unknown": unknown, "known": sorted(KNOWN_OPTIONS)})
    for name, lowest in INT_OPTIONS.items():
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
    u = options.get("uncertainty")
    if u is not None:
        u = np.asarray(u, dtype=np.float32)
        if u.shape != (n,) or not np.isfinite(u).all():
            raise InvalidInput("uncertainty must be a finite array with one entry per pool sample",
                               details={"shape": list(u.shape), "n_pool": n})
        options["uncertainty"] = u
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
    ``uncertainty`` (N,): a learner's per-sample acquisition score (:attr:`ml.learners.Predictions.uncertainty`,
    higher = more worth labeling) for task types without class probabilities (boxes, regions, points, cuboids):
    without ``probs``, the uncertainty strategies (least_confidence, margin, entropy, cluster_margin, and
    ``auto`` after its cold start) rank by it; ``auto`` is then :func:`ml.selection.uncertain_diverse`'s
    idea (the most uncertain, spread over the embedding's clusters).

    Batch constraints, on top of any strategy:
    - ``class_quotas`` / ``class_caps``: per predicted class, a (C,) array or {class index: n}. Quotas are
      taken first (ranked by the strategy inside that class), caps bound the whole batch.
    - ``slices`` {name: bool mask (N,)} (see :func:`ml.slices.slice_mask`) with ``slice_quotas`` / ``slice_caps`` {name: n}.
    - ``cost`` (N,) > 0: uncertainty-based utilities are divided by it; ``max_total_cost`` bounds the sum of
      the chosen samples' cost.
    - ``labeled_embeddings`` + ``dedup_threshold`` (cosine similarity, e.g. 0.98): pool samples that
      near-duplicate a labeled sample are never chosen.
    ``Selection.info`` reports what the constraints did.

    Raises ``InvalidInput(code="model_required")`` for an uncertainty strategy without ``probs`` (bald:
    without ``mc_probs``), ``code="unknown_strategy"`` / ``"unknown_option"`` for names it does not know.
    """
    budget, emb, probs, labeled_counts, n_classes, prefer = _validate(
        strategy, budget, embeddings, probs, labeled_counts, n_classes, prefer,
        has_uncertainty=options.get("uncertainty") is not None,
    )
    cost, mc, lab = _validate_options(options, len(emb), emb.shape[1])
    pool = Pool(
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
    constraints = build_constraints(pool)
    info: dict = {}
    available = np.ones(pool.n, bool)
    thr = options.get("dedup_threshold")
    if thr is not None and lab is not None and len(lab):
        dup = near_duplicates(pool, float(thr))
        available &= ~dup
        info["excluded_near_duplicates"] = int(dup.sum())
    max_total_cost = options.get("max_total_cost")
    if max_total_cost is not None:
        max_total_cost = float(max_total_cost)
    batch = Batch(pool, budget, constraints, max_total_cost)
    fn = REGISTRY[strategy].run
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
        gi, gs = sort_desc(chosen[mine], chosen_sc[mine])
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
        name = strategy if strategy != "auto" else ("auto/cold_start_kmeans" if is_cold(pool) else
                                                    "auto/margin_stratified" if pool.probs is not None and _unsure(pool)
                                                    else "auto/margin_diverse")
    return Selection(
        indices=np.concatenate(out_idx).astype(np.int64),
        scores=np.concatenate(out_sc).astype(np.float32),
        strategy=name,
        info=info,
    )
