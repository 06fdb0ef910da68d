"""Annotation results per task type, validated against the project's schema (DESIGN.md, result shapes).

Coordinates: images normalised to 0..1 of the displayed image; audio in seconds within the clip's
duration; point clouds in the cloud's own units. Every validator returns a clean copy (floats
rounded, unknown keys refused) or raises ValidationFailed with the path of the first problem.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from apps.core.errors import ErrorCode, ValidationFailed

MAX_SHAPES = 5000
MAX_POLYGON_POINTS = 2000
MAX_TEXT = 10_000
EPS = 1e-6


def _fail(path: str, message: str, code: ErrorCode = ErrorCode.INVALID_RESULT) -> None:
    raise ValidationFailed(f"{path}: {message}", code=code, details={"path": path})


def _number(value: Any, path: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, "must be a finite number")
    if (lo is not None and value < lo - EPS) or (hi is not None and value > hi + EPS):
        _fail(path, f"must be within {lo}..{hi}; got {value}")
    return float(value)


def _label(value: Any, path: str, labels: list[str]) -> str:
    if not isinstance(value, str) or value not in labels:
        _fail(path, f"must be one of the project's labels; got {value!r}", code=ErrorCode.INVALID_LABEL)
    return value


def _obj(value: Any, path: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(value, dict):
        _fail(path, "must be a JSON object")
    missing = required - set(value)
    if missing:
        _fail(path, f"missing {sorted(missing)}")
    extra = set(value) - required - set(optional)
    if extra:
        _fail(path, f"unexpected fields {sorted(extra)}")
    return value


def _list(value: Any, path: str, limit: int = MAX_SHAPES) -> list:
    if not isinstance(value, list):
        _fail(path, "must be a list")
    if len(value) > limit:
        _fail(path, f"at most {limit} items; got {len(value)}")
    return value


def classification(result: dict, *, labels: list[str], info: dict) -> dict:
    _obj(result, "result", {"label"})
    return {"label": _label(result["label"], "result.label", labels)}


def _box(box, path, labels):
    _obj(box, path, {"label", "x", "y", "w", "h"})
    x, y = _number(box["x"], f"{path}.x", 0, 1), _number(box["y"], f"{path}.y", 0, 1)
    w, h = _number(box["w"], f"{path}.w", 0, 1), _number(box["h"], f"{path}.h", 0, 1)
    if w <= 0 or h <= 0:
        _fail(path, "w and h must be positive")
    if x + w > 1 + 1e-4 or y + h > 1 + 1e-4:
        _fail(path, "the box must lie inside the image (x + w <= 1, y + h <= 1)")
    return {"label": _label(box["label"], f"{path}.label", labels), "x": x, "y": y, "w": w, "h": h}


def _polygon(poly, path, labels):
    _obj(poly, path, {"label", "points"})
    points = _list(poly["points"], f"{path}.points", MAX_POLYGON_POINTS)
    if len(points) < 3:
        _fail(f"{path}.points", "a polygon needs at least 3 points")
    clean = []
    for i, point in enumerate(points):
        if not isinstance(point, list) or len(point) != 2:
            _fail(f"{path}.points[{i}]", "must be [x, y]")
        clean.append([_number(point[0], f"{path}.points[{i}][0]", 0, 1), _number(point[1], f"{path}.points[{i}][1]", 0, 1)])
    return {"label": _label(poly["label"], f"{path}.label", labels), "points": clean}


def detection(result: dict, *, labels: list[str], info: dict) -> dict:
    _obj(result, "result", set(), {"boxes", "polygons"})
    if not result:
        _fail("result", 'give "boxes" and/or "polygons" (empty lists mean "nothing to mark")')
    return {
        "boxes": [_box(b, f"result.boxes[{i}]", labels) for i, b in enumerate(_list(result.get("boxes", []), "result.boxes"))],
        "polygons": [_polygon(p, f"result.polygons[{i}]", labels)
                     for i, p in enumerate(_list(result.get("polygons", []), "result.polygons"))],
    }


def audio_regions(result: dict, *, labels: list[str], info: dict) -> dict:
    _obj(result, "result", {"regions"}, {"label"})
    duration = float(info.get("duration_s") or math.inf)
    regions = []
    for i, region in enumerate(_list(result["regions"], "result.regions")):
        path = f"result.regions[{i}]"
        _obj(region, path, {"label", "start", "end"}, {"text"})
        start = _number(region["start"], f"{path}.start", 0, duration)
        end = _number(region["end"], f"{path}.end", 0, duration)
        if end <= start:
            _fail(path, "end must be after start")
        clean = {"label": _label(region["label"], f"{path}.label", labels), "start": start, "end": end}
        if "text" in region:
            if not isinstance(region["text"], str) or len(region["text"]) > MAX_TEXT or "\x00" in region["text"]:
                _fail(f"{path}.text", f"must be a string of at most {MAX_TEXT} characters, without NUL")
            clean["text"] = region["text"]
        regions.append(clean)
    out = {"regions": regions}
    if "label" in result:
        out["label"] = _label(result["label"], "result.label", labels)
    return out


def point_segmentation(result: dict, *, labels: list[str], info: dict) -> dict:
    _obj(result, "result", {"point_labels"})
    values = result["point_labels"]
    n_points = info.get("n_points")
    if not isinstance(values, list):
        _fail("result.point_labels", "must be a list with one label index per point")
    if n_points is not None and len(values) != n_points:
        _fail("result.point_labels", f"needs one entry per point: {n_points}; got {len(values)}")
    top = len(labels) - 1
    for i, v in enumerate(values):  # -1 = not labeled
        if isinstance(v, bool) or not isinstance(v, int) or v < -1 or v > top:
            _fail(f"result.point_labels[{i}]", f"must be an integer label index in -1..{top}; got {v!r}",
                  code=ErrorCode.INVALID_LABEL)
    return {"point_labels": list(values)}


def cuboids(result: dict, *, labels: list[str], info: dict) -> dict:
    _obj(result, "result", {"cuboids"})
    out = []
    for i, cuboid in enumerate(_list(result["cuboids"], "result.cuboids")):
        path = f"result.cuboids[{i}]"
        _obj(cuboid, path, {"label", "center", "size", "yaw"})
        for key in ("center", "size"):
            if not isinstance(cuboid[key], list) or len(cuboid[key]) != 3:
                _fail(f"{path}.{key}", "must be [x, y, z]")
        center = [_number(v, f"{path}.center[{j}]") for j, v in enumerate(cuboid["center"])]
        size = [_number(v, f"{path}.size[{j}]", 0) for j, v in enumerate(cuboid["size"])]
        if min(size) <= 0:
            _fail(f"{path}.size", "all sizes must be positive")
        yaw = _number(cuboid["yaw"], f"{path}.yaw", -4 * math.pi, 4 * math.pi)
        out.append({"label": _label(cuboid["label"], f"{path}.label", labels), "center": center, "size": size, "yaw": yaw})
    return {"cuboids": out}


def shapes_as_boxes(result: dict) -> list[dict]:
    """A detection result's boxes plus each polygon's bounding box (same keys as a box)."""
    boxes = list(result.get("boxes", []))
    for poly in result.get("polygons", []):
        xs, ys = [p[0] for p in poly["points"]], [p[1] for p in poly["points"]]
        boxes.append({"label": poly["label"], "x": min(xs), "y": min(ys), "w": max(xs) - min(xs), "h": max(ys) - min(ys)})
    return boxes


VALIDATORS: dict[str, Callable[..., dict]] = {
    "classification": classification,
    "detection": detection,
    "audio_regions": audio_regions,
    "point_segmentation": point_segmentation,
    "cuboids": cuboids,
}


def validate_result(*, project, sample, result) -> dict:
    if not isinstance(result, dict):
        raise ValidationFailed("result must be a JSON object.", code=ErrorCode.INVALID_RESULT)
    validator = VALIDATORS.get(project.task_type)
    if validator is None:
        raise ValidationFailed(f"Task type {project.task_type!r} is not supported.",
                               code=ErrorCode.UNSUPPORTED_TASK_TYPE)
    return validator(result, labels=list(project.labels), info=sample.content_info or {})
