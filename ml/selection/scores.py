"""Uncertainty scores over model probabilities: higher = more uncertain = more worth labeling.

Plain functions over probability arrays (:func:`least_confidence`, :func:`margin`, :func:`entropy`); they
compute the same quantities as modAL's ``classifier_uncertainty`` / ``classifier_margin`` /
``classifier_entropy`` (a test checks it) without importing modAL, which pulls in torch (~3 s) on import.
:func:`bald` scores T stochastic forward passes (MC dropout).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["least_confidence", "margin", "entropy", "bald", "UNCERTAINTY"]


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - max_c p(c|x): (N,) float32, higher = more uncertain."""
    probs = np.asarray(probs)
    return (1.0 - probs.max(axis=1)).astype(np.float32)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): (N,) float32, higher = smaller margin = more uncertain."""
    probs = np.asarray(probs)
    if probs.shape[1] == 1:
        return np.ones(len(probs), np.float32)
    part = np.partition(probs, probs.shape[1] - 2, axis=1)
    return (1.0 - (part[:, -1] - part[:, -2])).astype(np.float32)


def _row_entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=axis)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row, after renormalising the row: (N,) float32."""
    p = np.asarray(probs, dtype=np.float32)
    s = p.sum(axis=1, keepdims=True)
    p = p / np.where(s > 0, s, 1.0)
    return _row_entropy(p, axis=1).astype(np.float32)


def bald(mc_probs: np.ndarray) -> np.ndarray:
    """BALD mutual information from T stochastic forward passes (e.g. MC dropout), nats: (N,) float32.

    ``mc_probs`` has shape (T, N, C). I(y; w | x) = H(mean_t p_t) - mean_t H(p_t): high where the
    passes disagree with each other (epistemic uncertainty), low where they agree, even on a flat
    prediction (aleatoric uncertainty).
    """
    mc = np.asarray(mc_probs, dtype=np.float32)
    mean = mc.mean(axis=0)
    mi = _row_entropy(mean, axis=1) - _row_entropy(mc, axis=2).mean(axis=0)
    return np.maximum(mi, 0.0).astype(np.float32)


UNCERTAINTY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}
