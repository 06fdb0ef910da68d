"""Objects cut out of samples: the crops a detection or point-segmentation project sends to a linked
classification project (the derived samples of issue #13's motorcycle pipeline).

- :func:`image_objects` / :func:`crop_image`: boxes and polygons (0-1 coordinates, as in the annotation API) → the
  box (a polygon's bounding box) grown by ``padding`` of its size on each side, clipped to the image, cut at full
  resolution and written as PNG.
- :func:`cloud_objects` / :func:`crop_points`: per-point labels → one object per label present (the points of
  that label; ``min_points`` at least), written as binary PLY in the cloud's own units.

Deterministic: the same content and shape give the same bytes (so a second send deduplicates by content hash).
numpy and Pillow only.
"""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput

__all__ = ["image_objects", "crop_image", "cloud_objects", "crop_points", "MIN_CROP_PIXELS"]

MIN_CROP_PIXELS = 4  # a crop narrower or lower than this (in the stored image's pixels) is skipped


def image_objects(result: Mapping[str, Any], *, min_score: float | None = None,
                  labels: Sequence[str] | None = None) -> list[dict]:
    """The objects of a detection result or label: ``{"label", "box": [x, y, w, h], "score"?, "index", "kind"}``
    for every box and polygon (its bounding box), keeping those with ``score >= min_score`` (when given and the
    shape has a score) and a label in ``labels`` (when given)."""
    out = []
    for kind in ("boxes", "polygons"):
        for i, shape in enumerate(result.get(kind) or []):
            if not isinstance(shape, Mapping):
                continue
            if kind == "boxes":
                box = [float(shape[k]) for k in ("x", "y", "w", "h")]
            else:
                pts = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
                if len(pts) < 3:
                    continue
                lo, hi = pts.min(axis=0), pts.max(axis=0)
                box = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
            score = shape.get("score")
            if min_score is not None and score is not None and float(score) < min_score:
                continue
            if labels is not None and shape.get("label") not in labels:
                continue
            obj = {"label": shape.get("label"), "box": box, "index": i, "kind": kind}
            if score is not None:
                obj["score"] = float(score)
            out.append(obj)
    return out


def crop_image(content: bytes, box: Sequence[float], *, padding: float = 0.1) -> bytes | None:
    """PNG bytes of ``box`` (x, y, w, h in 0-1) grown by ``padding`` × its size per side, clipped to the image;
    None when the crop is smaller than :data:`MIN_CROP_PIXELS` on a side."""
    from PIL import Image

    from ml.modalities.image import decode_image

    if not 0 <= padding <= 1:
        raise InvalidInput("padding must be within 0..1", details={"padding": padding})
    rgb = decode_image(content)
    h, w = rgb.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    x0, x1 = (x - padding * bw) * w, (x + bw + padding * bw) * w
    y0, y1 = (y - padding * bh) * h, (y + bh + padding * bh) * h
    eps = 1e-6  # 0-1 coordinates times the size: 15.000000002 is pixel 15, not 16
    left, top = max(0, int(np.floor(x0 + eps))), max(0, int(np.floor(y0 + eps)))
    right, bottom = min(w, int(np.ceil(x1 - eps))), min(h, int(np.ceil(y1 - eps)))
    if right - left < MIN_CROP_PIXELS or bottom - top < MIN_CROP_PIXELS:
        return None
    buf = io.BytesIO()
    Image.fromarray(rgb[top:bottom, left:right]).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def cloud_objects(result: Mapping[str, Any], labels: Sequence[str], *, min_points: int = 16,
                  keep: Sequence[str] | None = None) -> list[dict]:
    """The objects of a point-segmentation result or label: one per label index present with at least
    ``min_points`` points: ``{"label", "points": (indices), "n_points", "score"?}`` (``score`` the mean point
    score when the result has ``point_scores``)."""
    y = np.asarray(result.get("point_labels") or [], dtype=np.int64)
    scores = result.get("point_scores")
    out = []
    for c, name in enumerate(labels):
        if keep is not None and name not in keep:
            continue
        idx = np.flatnonzero(y == c)
        if len(idx) < min_points:
            continue
        obj = {"label": name, "points": idx, "n_points": int(len(idx)), "index": c, "kind": "points"}
        if scores is not None and len(scores) == len(y):
            obj["score"] = float(np.mean(np.asarray(scores, dtype=np.float64)[idx]))
        out.append(obj)
    return out


def crop_points(content: bytes, indices: np.ndarray) -> bytes:
    """Binary PLY of the cloud's points at ``indices`` (the cloud's own units)."""
    from ml.modalities.pointcloud import points_to_ply, read_points

    pts = read_points(content)
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= len(pts):
        raise InvalidInput("point indices out of range for the cloud", details={"n_points": int(len(pts))})
    return points_to_ply(pts[idx].astype(np.float32))
