"""PROTOTYPE selection variants, measured by the label-efficiency benchmark only (never used by the app).

Run them with ``python -m bench.label_efficiency --strategies auto,proto:<name>,...``. Each one is a thin
composition of ``ml.selection.select`` calls, so what it shows can be turned into a change of
``ml/selection/`` (see bench/README.md, "label efficiency").

- ``min1``: auto with ``cold_start_min_labels=1``: the k-means cold start only until every class has a label.
- ``model_first``: auto, but the k-means cold start only while there is no model (``probs is None``);
  with a model, margin with batch diversity right away (``cold_start_min_labels=0``).
- ``model_first_df3``: the same with ``diversity_factor=3`` (k-means over the 30 most uncertain, not 100).
- ``model_first_margin``: the same with plain margin (no diversity).
- ``coverage``: auto, but while a class has < 3 labels and a model exists, typicality with the labeled
  embeddings (picks in clusters no label covers yet) instead of the coverage-blind k-means cold start.
- ``cold_oracle``: NOT a strategy, an upper bound for the cold start: the 2 samples nearest each class's
  mean embedding (uses the labels), to see how much a 20-label cold start can gain at all.
"""
from __future__ import annotations

import numpy as np

PROTOTYPES = ("min1", "model_first", "model_first_df3", "model_first_margin", "coverage", "cold_oracle", "min5",
              "min8", "mix", "rmix3", "rmix2", "stratmargin")


def select_proto(name: str, *, budget, embeddings, probs, labeled_counts, n_classes, random_state, **options):
    from ml.selection import select

    common = dict(budget=budget, embeddings=embeddings, probs=probs, labeled_counts=labeled_counts,
                  n_classes=n_classes, random_state=random_state)
    if name == "min1":
        return select("auto", cold_start_min_labels=1, **common, **options)
    if name == "model_first":
        return select("auto", cold_start_min_labels=0, **common, **options)
    if name == "model_first_df3":
        return select("auto", cold_start_min_labels=0, diversity_factor=3, **common, **options)
    if name == "model_first_margin":
        return select("auto", cold_start_min_labels=0, diversity_factor=1, **common, **options)
    if name == "coverage":
        cold = probs is not None and labeled_counts is not None and int(np.min(labeled_counts)) < 3
        if cold:
            return select("typicality", **common, **options)
        return select("auto", **common, **options)
    if name in ("min5", "min8"):  # the cold start (typicality) until every class has 5 / 8 labels
        return select("auto", cold_start_min_labels=int(name[3:]), **common, **options)
    if name == "mix":  # half the batch by coverage (typicality), half by auto's margin with diversity
        from ml.selection import Selection

        k_typ = budget // 2
        first = select("typicality", **{**common, "budget": k_typ}, **options)
        rest = np.setdiff1d(np.arange(len(embeddings)), first.indices)
        second = select("auto", **{**common, "budget": budget - len(first.indices), "embeddings": embeddings[rest],
                                   "probs": None if probs is None else probs[rest]}, **options)
        idx = np.concatenate([np.asarray(first.indices), rest[np.asarray(second.indices, dtype=np.int64)]])
        return Selection(indices=idx, scores=np.zeros(len(idx), np.float32), strategy="mix/" + second.strategy)
    if name in ("rmix3", "rmix2") and probs is not None:  # a third / half of the batch uniform, the rest auto
        from ml.selection import Selection

        k_rand = budget // int(name[-1])
        first = select("random", **{**common, "budget": k_rand})
        rest = np.setdiff1d(np.arange(len(embeddings)), first.indices)
        lab = options.get("labeled_embeddings")
        lab = np.concatenate([lab, embeddings[first.indices]]) if lab is not None and len(lab) else embeddings[first.indices]
        second = select("auto", **{**common, "budget": budget - len(first.indices), "embeddings": embeddings[rest],
                                   "probs": probs[rest]}, **{**options, "labeled_embeddings": lab})
        idx = np.concatenate([np.asarray(first.indices), rest[np.asarray(second.indices, dtype=np.int64)]])
        return Selection(indices=idx, scores=np.zeros(len(idx), np.float32), strategy="rmix/" + second.strategy)
    if name in ("rmix3", "rmix2"):
        return select("auto", **common, **options)
    if name == "stratmargin" and probs is not None:
        # margin inside k-means strata: the batch's picks per cluster of the pool in proportion to its size
        # (largest remainder), the smallest-margin members of each cluster
        from ml.cluster import kmeans
        from ml.selection import Selection, margin

        k = min(budget, len(embeddings))
        _, groups, _ = kmeans(embeddings, k, random_state=random_state)
        sizes = np.bincount(groups, minlength=k)
        raw = k * sizes / sizes.sum()
        quota = np.floor(raw).astype(int)
        quota[np.argsort(-(raw - quota), kind="stable")[: k - quota.sum()]] += 1
        u = margin(probs)
        picks = []
        for g in range(k):
            members = np.flatnonzero(groups == g)
            picks.extend(members[np.argsort(-u[members], kind="stable")[: quota[g]]].tolist())
        idx = np.asarray(picks, dtype=np.int64)
        return Selection(indices=idx, scores=u[idx].astype(np.float32), strategy="stratmargin")
    if name == "stratmargin":
        return select("auto", **common, **options)
    if name == "cold_oracle":
        raise ValueError("cold_oracle needs the labels: use cold_oracle_indices()")
    raise ValueError(f"unknown prototype {name!r}; choose from {PROTOTYPES}")


def cold_oracle_indices(embeddings: np.ndarray, y: np.ndarray, n_classes: int, budget: int) -> np.ndarray:
    """Upper-bound cold start: per class, the samples nearest the class mean (round-robin over classes)."""
    per = int(np.ceil(budget / n_classes))
    picks = []
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) == 0:
            continue
        mu = embeddings[idx].mean(axis=0)
        d = ((embeddings[idx] - mu) ** 2).sum(axis=1)
        picks.append(idx[np.argsort(d, kind="stable")[:per]])
    out = []
    for r in range(per):
        for p in picks:
            if r < len(p) and len(out) < budget:
                out.append(int(p[r]))
    return np.asarray(out, np.int64)
