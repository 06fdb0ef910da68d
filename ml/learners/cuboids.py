"""Cuboids: per-point segmentation, clustering, and an oriented box fitted to every cluster.

1. **Segmentation**: the PointNet segmenter (:mod:`ml.learners._points`) with one class more than the project's
   labels: index 0 is the background, index k+1 the label k. For training, the points inside a target cuboid
   (:func:`ml.geometry.points_in_cuboid`) get its class and every other point the background. Scenes keep their
   units (``normalize="ground"``: x, y centred, z from the ground), so sizes mean something to the network.
2. **Clustering** (:func:`decode`, numpy + scikit-learn): the foreground points (arg-max not background) are
   grouped by DBSCAN (``cluster_eps`` in the cloud's units, ``min_points``) over all foreground classes at once —
   an object whose points are split between two classes stays one object; clusters under ``min_points`` points
   are dropped.
3. **Box fit**: per cluster, the class is the arg-max of its points' mean class probabilities, the score that
   mean probability, and the box :func:`ml.geometry.fit_cuboid` (the minimum-area rectangle around the points'
   ground-plane hull, so yaw in [0, pi) along the longer side; z from the points' extent).

The same :func:`decode` runs after torch and after onnxruntime. Uncertainty per cloud: the mean of (the mean
binary entropy of the cuboid scores, 0 without cuboids) and (the mean normalised point entropy), so a cloud
with doubtful boxes or with many doubtful points ranks high. Embedding: the segmenter's projected global feature.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.learners._points import PointNetLearnerBase, point_entropy

__all__ = ["SegmentFitCuboidLearner", "decode_cuboids", "cuboid_point_labels"]


def cuboid_point_labels(points: np.ndarray, target: Mapping, labels: Sequence[str], index: int) -> np.ndarray:
    """Per-point network classes of a target: 0 background, k+1 inside a cuboid of label k (later cuboids win)."""
    from ml.geometry import points_in_cuboid

    cuboids = target.get("cuboids") if isinstance(target, Mapping) else None
    if not isinstance(cuboids, (list, tuple)):
        raise InvalidInput("target has no cuboids list", details={"index": index})
    y = np.zeros(len(points), dtype=np.int64)
    for j, c in enumerate(cuboids):
        try:
            k = labels.index(c["label"])
            box = {"center": [float(v) for v in c["center"]], "size": [float(v) for v in c["size"]],
                   "yaw": float(c.get("yaw", 0.0))}
            if len(box["center"]) != 3 or len(box["size"]) != 3 or min(box["size"]) < 0:
                raise ValueError("center and size must be 3 numbers, sizes >= 0")
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"sample {index}: cuboid {j} is not a labeled cuboid ({exc})",
                               details={"index": index, "cuboid": j}) from exc
        y[points_in_cuboid(points, box)] = k + 1
    return y


def _binary_entropy(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 1e-12, 1 - 1e-12)
    return -(s * np.log2(s) + (1 - s) * np.log2(1 - s))


def decode_cuboids(points: np.ndarray, proba: np.ndarray, labels: Sequence[str], *, cluster_eps: float,
                   min_points: int) -> list[dict]:
    """Cuboids from per-point probabilities ``(P, 1 + C)`` (column 0 the background), best score first."""
    from sklearn.cluster import DBSCAN

    from ml.geometry import fit_cuboid

    fg = np.flatnonzero(proba.argmax(axis=1) > 0)
    if len(fg) < min_points:
        return []
    clusters = DBSCAN(eps=cluster_eps, min_samples=min(5, min_points)).fit_predict(points[fg])
    out = []
    for cid in range(int(clusters.max()) + 1):
        members = fg[clusters == cid]
        if len(members) < min_points:
            continue
        mean = proba[members, 1:].mean(axis=0)
        k = int(mean.argmax())
        box = fit_cuboid(points[members])
        out.append({"label": labels[k], "center": [round(v, 6) for v in box["center"]],
                    "size": [round(v, 6) for v in box["size"]], "yaw": round(box["yaw"], 6),
                    "score": round(float(mean[k]), 6)})
    out.sort(key=lambda c: (-c["score"], c["center"]))
    return out


class SegmentFitCuboidLearner(PointNetLearnerBase):
    """Segment, cluster, fit boxes (see the module docstring).

    The segmenter's parameters are :class:`ml.learners.segmentation.PointNetSegmentationLearner`'s (here
    ``normalize="ground"`` by default); ``cluster_eps`` (DBSCAN radius, cloud units) and ``min_points`` (smallest
    cluster kept) drive the decoding.
    """

    name = "segment-fit"
    modality = "pointcloud"
    task_type = "cuboids"
    _kind = "segment_fit_cuboids"
    _params = PointNetLearnerBase._params + ("cluster_eps", "min_points")

    def __init__(self, *, epochs: int = 40, n_points: int = 1024, draws: int = 2, batch_size: int = 16,
                 lr: float = 3e-3, normalize: str = "ground", top_fraction: float = 0.1, cluster_eps: float = 0.25,
                 min_points: int = 15, device: str = "auto", random_state: int = 0, arch: dict | None = None) -> None:
        self.epochs = epochs
        self.n_points = n_points
        self.draws = draws
        self.batch_size = batch_size
        self.lr = lr
        self.normalize = normalize
        self.top_fraction = top_fraction
        self.cluster_eps = cluster_eps
        self.min_points = min_points
        self.device = device
        self.random_state = random_state
        self.arch = arch

    def _check_params(self) -> None:
        super()._check_params()
        if not (float(self.cluster_eps) > 0 and math.isfinite(float(self.cluster_eps))) or int(self.min_points) < 1:
            raise InvalidInput("cluster_eps must be > 0 and min_points >= 1",
                               details={"cluster_eps": self.cluster_eps, "min_points": self.min_points})

    def _n_net_classes(self, labels: Sequence[str]) -> int:
        return len(labels) + 1

    def _point_labels(self, points: np.ndarray, target: Mapping, labels: Sequence[str], index: int) -> np.ndarray:
        return cuboid_point_labels(points, target, list(labels), index)

    @classmethod
    def decode(cls, clouds: Sequence[np.ndarray], proba: Sequence[np.ndarray], params: Mapping[str, Any],
               labels: Sequence[str]) -> tuple[list[dict], np.ndarray]:
        results, uncertainty = [], []
        for pts, p in zip(clouds, proba):
            cuboids = decode_cuboids(pts, p, labels, cluster_eps=float(params["cluster_eps"]),
                                     min_points=int(params["min_points"]))
            scores = np.array([c["score"] for c in cuboids], dtype=np.float64)
            box_term = float(_binary_entropy(scores).mean()) if len(scores) else 0.0
            point_term = float(point_entropy(p).mean()) if len(p) else 0.0
            results.append({"cuboids": cuboids})
            uncertainty.append(0.5 * box_term + 0.5 * point_term)
        return results, np.asarray(uncertainty, dtype=np.float64)

    @classmethod
    def results_agree(cls, a: Mapping, b: Mapping) -> bool:
        from ml.geometry import cuboid_iou

        ca = sorted(a["cuboids"], key=lambda c: (c["label"], c["center"]))
        cb = sorted(b["cuboids"], key=lambda c: (c["label"], c["center"]))
        return len(ca) == len(cb) and all(x["label"] == y["label"] and cuboid_iou(x, y) >= 0.99
                                          for x, y in zip(ca, cb))
