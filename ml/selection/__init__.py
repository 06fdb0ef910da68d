"""Query strategies: which unlabeled samples are most worth labeling under a budget.

One entry point, :func:`select`, over plain arrays:

- ``embeddings`` (N, D) of the unlabeled pool (label-free features before the first model,
  the model's penultimate layer after),
- ``probs`` (N, C) model probabilities, or None before any model exists,
- ``labeled_counts`` (C,) how many labels each class has so far.

It returns a :class:`Selection` with pool positions in rank order. Scores are "higher = more worth
labeling" and never increase along the ranking (within the preferred group and within the rest).

For task types whose predictions are not class probabilities (detection, audio regions, point
segmentation, cuboids), :func:`uncertain_diverse` picks a batch from any learner's per-sample
``uncertainty`` and ``embedding`` (:mod:`~ml.selection.acquisition`).

The uncertainty measures are plain functions over probability arrays (:func:`least_confidence`,
:func:`margin`, :func:`entropy`); they compute the same quantities as modAL's
``classifier_uncertainty`` / ``classifier_margin`` / ``classifier_entropy`` (a test checks it), without
importing modAL at selection time, because modAL pulls in torch (~3 s) on import.

The package's modules: :mod:`~ml.selection.scores` (uncertainty scores), :mod:`~ml.selection.strategies`
(the strategies and their registry), :mod:`~ml.selection.batch` (batch constraints of one call),
:mod:`~ml.selection.constraints` (the round-constraint grammar, :class:`RoundConstraints`),
:mod:`~ml.selection.core` (:func:`select`) and :mod:`~ml.selection.acquisition` (:func:`uncertain_diverse`).
Slice predicates are :mod:`ml.slices`.
"""

from __future__ import annotations

from ml.selection.acquisition import uncertain_diverse
from ml.selection.constraints import InvalidConstraints, RoundConstraints
from ml.selection.core import Selection, select
from ml.selection.scores import bald, entropy, least_confidence, margin
from ml.selection.strategies import COLD_START_MIN_LABELS, MODEL_FREE_STRATEGIES, REGISTRY, STRATEGIES, Strategy
from ml.slices import PREDICATE_OPERATORS, slice_mask

__all__ = [
    "STRATEGIES",
    "MODEL_FREE_STRATEGIES",
    "COLD_START_MIN_LABELS",
    "REGISTRY",
    "Strategy",
    "Selection",
    "select",
    "uncertain_diverse",
    "least_confidence",
    "margin",
    "entropy",
    "bald",
    "slice_mask",
    "PREDICATE_OPERATORS",
    "RoundConstraints",
    "InvalidConstraints",
]
