"""Point segmentation: the PointNet segmenter (:class:`ml.nets.PointNetSegmenter`) behind the learner contract.

Targets ``{"point_labels": [label index per point, -1 = unlabeled]}``; results ``{"point_labels": [...],
"point_scores": [...]}`` on every point of the cloud (the arg-max class and its probability;
``Predictions.extra["point_proba"]`` holds each cloud's ``(P, C)`` probabilities). Clouds of any size: training
draws fixed-size random subsets, prediction runs on chunks that cover every point (:mod:`ml.learners._points`).

Uncertainty: per point, the entropy of its class probabilities divided by log C; per cloud, the mean of the mean
point entropy and the mean entropy of the top 10 % (``top_fraction``) most uncertain points. Embedding: the
network's projected global feature (``embed_dim``), averaged over the cloud's chunks.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.learners._points import PointNetLearnerBase, entropy_uncertainty

__all__ = ["PointNetSegmentationLearner", "point_label_array"]


def point_label_array(target: Mapping, n_points: int, n_classes: int, index: int) -> np.ndarray:
    """A target's ``point_labels`` as an int64 array checked against the cloud (one per point, in -1..C-1)."""
    raw = target.get("point_labels") if isinstance(target, Mapping) else None
    if raw is None:
        raise InvalidInput("target has no point_labels", details={"index": index})
    y = np.asarray(raw)
    if y.shape != (n_points,) or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise InvalidInput(f"point_labels must be {n_points} integers (one per point)",
                           details={"index": index, "expected": n_points, "shape": list(y.shape)})
    y = y.astype(np.int64)
    if y.size and (y.min() < -1 or y.max() >= n_classes):
        raise InvalidInput(f"point_labels must lie in -1..{n_classes - 1}",
                           details={"index": index, "min": int(y.min()), "max": int(y.max())})
    return y


class PointNetSegmentationLearner(PointNetLearnerBase):
    """PointNet per-point segmentation (see the module docstring).

    ``epochs``, ``batch_size``, ``lr``: training; ``n_points``: points per training subset and per prediction
    chunk; ``draws``: random subsets of each cloud per training set; ``normalize``: ``"unit_sphere"`` (objects)
    or ``"ground"`` (scenes, units kept); ``top_fraction``: the share of most uncertain points in the
    uncertainty; ``device``: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``; ``arch``: overrides of the
    network's sizes (e.g. ``{"global_dim": 128}``); ``random_state``: the seed of everything.
    """

    name = "pointnet"
    modality = "pointcloud"
    task_type = "point_segmentation"
    _kind = "pointnet_segmentation"

    def __init__(self, *, epochs: int = 40, n_points: int = 1024, draws: int = 2, batch_size: int = 16,
                 lr: float = 3e-3, normalize: str = "unit_sphere", top_fraction: float = 0.1, device: str = "auto",
                 random_state: int = 0, arch: dict | None = None) -> None:
        self.epochs = epochs
        self.n_points = n_points
        self.draws = draws
        self.batch_size = batch_size
        self.lr = lr
        self.normalize = normalize
        self.top_fraction = top_fraction
        self.device = device
        self.random_state = random_state
        self.arch = arch

    def _n_net_classes(self, labels: Sequence[str]) -> int:
        return max(2, len(labels))  # the trainer needs two outputs even for a one-label project

    def _point_labels(self, points: np.ndarray, target: Mapping, labels: Sequence[str], index: int) -> np.ndarray:
        return point_label_array(target, len(points), len(labels), index)

    @classmethod
    def decode(cls, clouds: Sequence[np.ndarray], proba: Sequence[np.ndarray], params: Mapping[str, Any],
               labels: Sequence[str]) -> tuple[list[dict], np.ndarray]:
        results, uncertainty = [], []
        for p in proba:
            p = p[:, :len(labels)]
            results.append({"point_labels": p.argmax(axis=1).astype(int).tolist(),
                            "point_scores": [round(float(s), 6) for s in p.max(axis=1)]})
            uncertainty.append(entropy_uncertainty(p, float(params["top_fraction"])))
        return results, np.asarray(uncertainty, dtype=np.float64)

    @classmethod
    def results_agree(cls, a: Mapping, b: Mapping) -> bool:
        la, lb = np.asarray(a["point_labels"]), np.asarray(b["point_labels"])
        return la.shape == lb.shape and (la.size == 0 or float((la == lb).mean()) >= 0.999)
