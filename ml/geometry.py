"""Geometry of yaw-rotated 3D boxes (cuboids): IoU, point membership and a box fit to points.

A cuboid is the annotation shape ``{"center": [x, y, z], "size": [l, w, h], "yaw"}``: ``l`` along the box's own
x axis after rotating it by ``yaw`` (radians, counter-clockwise) about z, ``w`` across, ``h`` along z. Pure numpy;
used by the labeling app's annotator agreement, the cuboid metrics and the cuboid learner's box fitting.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

__all__ = ["footprint", "convex_clip", "polygon_area", "cuboid_iou", "points_in_cuboid", "fit_cuboid"]


def footprint(c: Mapping) -> np.ndarray:
    """The cuboid's four ground-plane corners (4, 2), counter-clockwise."""
    (x, y, _), (length, width, _), yaw = c["center"], c["size"], c["yaw"]
    dx, dy = length / 2, width / 2
    corners = np.array([[dx, dy], [-dx, dy], [-dx, -dy], [dx, -dy]])
    rot = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    return corners @ rot.T + np.array([x, y])


def _intersect(p, q, a, b):
    d1, d2 = q - p, b - a
    denom = d1[0] * d2[1] - d1[1] * d2[0]
    t = ((a[0] - p[0]) * d2[1] - (a[1] - p[1]) * d2[0]) / denom if denom else 0.0
    return p + t * d1


def convex_clip(subject: np.ndarray, clipper: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman: the intersection of two convex counter-clockwise polygons ((k, 2), maybe empty)."""
    out = list(subject)
    for i in range(len(clipper)):
        a, b = clipper[i], clipper[(i + 1) % len(clipper)]
        inside = lambda p: (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= -1e-12  # noqa: E731
        src, out = out, []
        for j in range(len(src)):
            p, q = src[j], src[(j + 1) % len(src)]
            if inside(q):
                if not inside(p):
                    out.append(_intersect(p, q, a, b))
                out.append(q)
            elif inside(p):
                out.append(_intersect(p, q, a, b))
        if not out:
            return np.zeros((0, 2))
    return np.array(out)


def polygon_area(poly: np.ndarray) -> float:
    """Shoelace area of a simple polygon (k, 2); 0 for fewer than three corners."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def cuboid_iou(a: Mapping, b: Mapping) -> float:
    """3D IoU of two yaw-rotated cuboids (rotation about z; size = [length along yaw, width, height])."""
    inter_bev = polygon_area(convex_clip(footprint(a), footprint(b)))
    za = (a["center"][2] - a["size"][2] / 2, a["center"][2] + a["size"][2] / 2)
    zb = (b["center"][2] - b["size"][2] / 2, b["center"][2] + b["size"][2] / 2)
    inter = inter_bev * max(0.0, min(za[1], zb[1]) - max(za[0], zb[0]))
    union = float(np.prod(a["size"]) + np.prod(b["size"]) - inter)
    return inter / union if union > 0 else 0.0


def points_in_cuboid(points: np.ndarray, c: Mapping, *, margin: float = 0.0) -> np.ndarray:
    """Boolean mask (P,): the points of ``(P, 3)`` inside the cuboid grown by ``margin`` on every side."""
    pts = np.asarray(points, dtype=np.float64)
    center = np.asarray(c["center"], dtype=np.float64)
    half = np.asarray(c["size"], dtype=np.float64) / 2 + margin
    cos, sin = math.cos(c["yaw"]), math.sin(c["yaw"])
    d = pts - center
    local_x = d[:, 0] * cos + d[:, 1] * sin  # rotate by -yaw into the box frame
    local_y = -d[:, 0] * sin + d[:, 1] * cos
    return (np.abs(local_x) <= half[0]) & (np.abs(local_y) <= half[1]) & (np.abs(d[:, 2]) <= half[2])


def _hull(xy: np.ndarray) -> np.ndarray:
    """Convex hull (Andrew's monotone chain), counter-clockwise, (k, 2)."""
    pts = np.unique(xy, axis=0)
    if len(pts) < 3:
        return pts

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def fit_cuboid(points: np.ndarray) -> dict:
    """The yaw-rotated box that fits ``(P, 3)`` points: the minimum-area rectangle around their ground-plane
    convex hull (one of its sides lies on a hull edge), z from the points' extent. ``yaw`` in [0, pi) with the
    ``l`` side along it (l >= w). Returns ``{"center", "size", "yaw"}`` (plain floats)."""
    pts = np.asarray(points, dtype=np.float64)
    hull = _hull(pts[:, :2])
    z0, z1 = float(pts[:, 2].min()), float(pts[:, 2].max())
    if len(hull) < 3:  # degenerate (collinear or a single point): an axis-aligned box around the points
        lo, hi = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
        c = (lo + hi) / 2
        return {"center": [float(c[0]), float(c[1]), (z0 + z1) / 2],
                "size": [float(hi[0] - lo[0]), float(hi[1] - lo[1]), z1 - z0], "yaw": 0.0}
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    best = None
    for theta in angles:
        cos, sin = math.cos(theta), math.sin(theta)
        u = hull[:, 0] * cos + hull[:, 1] * sin
        v = -hull[:, 0] * sin + hull[:, 1] * cos
        area = (u.max() - u.min()) * (v.max() - v.min())
        if best is None or area < best[0] - 1e-12:
            best = (area, theta, u.min(), u.max(), v.min(), v.max())
    _, theta, u0, u1, v0, v1 = best
    length, width = u1 - u0, v1 - v0
    cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
    cx, cy = cu * math.cos(theta) - cv * math.sin(theta), cu * math.sin(theta) + cv * math.cos(theta)
    if width > length:  # keep l >= w: the yaw follows the longer side
        length, width, theta = width, length, theta + math.pi / 2
    return {"center": [float(cx), float(cy), (z0 + z1) / 2], "size": [float(length), float(width), z1 - z0],
            "yaw": float(np.mod(theta, np.pi))}
