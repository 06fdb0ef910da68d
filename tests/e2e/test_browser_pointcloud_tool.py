"""The 3D point-cloud tool in headless Chromium (WebGL through SwiftShader), against a live server.

State is built through services: a project with a few lamp clouds from fixtures/shapes.py (PLY bytes)
and a selection round. The browser does what an annotator would: digits pick a label, a lasso is drawn
with the mouse, Ctrl+Z / Ctrl+Shift+Z undo and redo, Enter submits; a cuboid is placed with a click,
resized and rotated with keys. Checked: window.__looplab.state and the stored Annotation rows.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.e2e.conftest import open_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

READY = "() => { const s = window.__looplab?.state; return s && s.status === 'ready' && s.cloudReady && s.frames > 0; }"


def _cloud_project(people, task_type: str, labels: list[str], n_clouds: int = 3, n_points: int = 2048):
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest
    from fixtures.shapes import encode_points, part_shapes

    project = project_create(user=people["lead"], name=f"Lamps ({task_type})", modality="pointcloud",
                             task_type=task_type, labels=labels, label_budget=50)
    membership_set(project=project, user=people["annotator"], role="annotator")
    clouds = [pts for pts, _ in part_shapes(n_clouds, seed=7, n_points=n_points)]
    samples_ingest(project=project, items=[IngestItem(external_id=f"lamp-{i}", content=encode_points(p, "ply"))
                                           for i, p in enumerate(clouds)])
    rnd = round_create(project=project, user=people["lead"], budget=n_clouds)
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", (rnd.status, rnd.error)
    return project


def _open_tool(new_page, live_server, project):
    return open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", READY, timeout=30_000)


def _state(page, *fields):
    return page.evaluate("fields => Object.fromEntries(fields.map(f => [f, window.__looplab.state[f]]))", list(fields))


def _labels(page) -> list[int]:
    return page.evaluate("() => Array.from(window.__looplab.state.pointLabels)")


def _project_and_select(points: np.ndarray, m: list[float], width: float, height: float, poly: list[float]) -> int:
    """The lasso selection recomputed in numpy: column-major view-projection, CSS pixels, even-odd rule."""
    M = np.asarray(m, dtype=np.float64).reshape(4, 4).T
    hom = np.c_[points.astype(np.float64), np.ones(len(points))] @ M.T
    w = hom[:, 3]
    front = w > 0
    sx = (hom[:, 0] / w) * width / 2 + width / 2
    sy = height / 2 - (hom[:, 1] / w) * height / 2
    xs, ys = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    inside = np.zeros(len(points), dtype=bool)
    for i in range(len(xs)):
        j = i - 1
        xi, yi, xj, yj = xs[i], ys[i], xs[j], ys[j]
        crosses = (yi > sy) != (yj > sy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (xj - xi) * (sy - yi) / (yj - yi) + xi
        inside ^= crosses & (sx < x_at)
    return int((inside & front).sum())


def test_lasso_segmentation_undo_redo_submit(live_server, people, new_page, artifacts):
    from apps.labeling.models import Annotation
    from apps.samples.models import Sample
    from ml.modalities.pointcloud import read_points
    from apps.samples.content import read_content

    labels = ["base", "pole", "shade"]
    project = _cloud_project(people, "point_segmentation", labels)
    page = _open_tool(new_page, live_server, project)
    s = _state(page, "nPoints", "labeledCount", "tool", "task", "timings")
    n = s["nPoints"]
    assert n == 2048 and s["labeledCount"] == 0 and s["tool"] == "lasso"
    sample = Sample.objects.get(pk=s["task"]["sample"]["id"])
    assert sample.content_info["n_points"] == n
    page.screenshot(path=str(artifacts / "pointcloud-segmentation-start.png"))

    # Pick "shade" with its digit, then lasso the upper middle of the view with the mouse.
    page.keyboard.press("3")
    assert _state(page, "selected")["selected"] == "shade"
    box = page.locator("#pc-canvas").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.42
    r = min(box["width"], box["height"]) * 0.22
    ring = [(cx + r * math.cos(2 * math.pi * k / 28), cy + 0.8 * r * math.sin(2 * math.pi * k / 28)) for k in range(29)]
    page.mouse.move(*ring[0])
    page.mouse.down()
    for x, y in ring[1:]:
        page.mouse.move(x, y, steps=2)
    page.screenshot(path=str(artifacts / "pointcloud-lasso-drawing.png"))
    page.mouse.up()
    page.wait_for_function("() => window.__looplab.state.lastSelection !== null")
    s = _state(page, "labeledCount", "lastSelection", "undoDepth", "labelCounts")
    count = s["labeledCount"]
    assert 0 < count < n, count
    assert s["labelCounts"] == [0, 0, count] and s["undoDepth"] == 1
    sel = s["lastSelection"]
    assert sel["count"] == count and sel["tool"] == "lasso"
    # The same selection computed in Python from the stored points, the camera matrix and the polygon.
    points = read_points(read_content(sample)).astype(np.float32)
    expected = _project_and_select(points, sel["matrix"], sel["width"], sel["height"], sel["polygon"])
    assert abs(expected - count) <= max(2, 0.005 * n), (expected, count)
    after_lasso = _labels(page)
    page.screenshot(path=str(artifacts / "pointcloud-segmentation-lasso.png"))

    # Undo → nothing labeled; redo → the same labels again.
    page.keyboard.press("Control+z")
    s = _state(page, "labeledCount", "undoDepth", "redoDepth")
    assert s == {"labeledCount": 0, "undoDepth": 0, "redoDepth": 1}
    assert set(_labels(page)) == {-1}
    page.keyboard.press("Control+Shift+z")
    s = _state(page, "labeledCount", "undoDepth", "redoDepth")
    assert s == {"labeledCount": count, "undoDepth": 1, "redoDepth": 0}
    assert _labels(page) == after_lasso

    # A box with "base" in the lower part, then the eraser over a brush stroke.
    page.keyboard.press("1")
    page.keyboard.press("b")
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.72)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.95, steps=6)
    page.mouse.up()
    s = _state(page, "labeledCount", "labelCounts", "undoDepth", "lastSelection")
    assert s["lastSelection"]["tool"] == "box" and s["labelCounts"][0] > 0 and s["undoDepth"] == 2
    page.keyboard.press("e")
    page.keyboard.press("p")
    page.mouse.move(cx - r * 0.5, cy)
    page.mouse.down()
    page.mouse.move(cx + r * 0.5, cy, steps=8)
    page.mouse.up()
    s2 = _state(page, "labeledCount", "undoDepth", "eraser", "lastSelection")
    assert s2["eraser"] is True and s2["lastSelection"]["tool"] == "brush"
    assert s2["labeledCount"] < s["labeledCount"] and s2["undoDepth"] == 3
    page.keyboard.press("Control+z")
    assert _state(page, "labeledCount")["labeledCount"] == s["labeledCount"]
    page.keyboard.press("Control+z")
    assert _labels(page) == after_lasso
    page.screenshot(path=str(artifacts / "pointcloud-segmentation.png"))

    # Submit: one label per stored point, equal to what the page shows.
    final = _labels(page)
    task_id = _state(page, "task")["task"]["id"]
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__looplab.state.submitted === 1 && window.__looplab.state.status !== 'submitting'")
    annotation = Annotation.objects.get(task_id=task_id)
    assert annotation.annotator.username == "annotator"
    stored = annotation.result["point_labels"]
    assert len(stored) == sample.content_info["n_points"] == n
    assert stored == final
    assert annotation.active_seconds is not None and annotation.active_seconds > 0
    assert not new_page.errors, new_page.errors


def test_cuboid_place_resize_rotate_submit(live_server, people, new_page, artifacts):
    from apps.labeling.models import Annotation

    labels = ["lamp", "other"]
    project = _cloud_project(people, "cuboids", labels, n_clouds=2)
    page = _open_tool(new_page, live_server, project)
    box = page.locator("#pc-canvas").bounding_box()

    # A click (no drag) on the cloud places a cuboid at the clicked point.
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    s = _state(page, "cuboids", "activeCuboid", "undoDepth", "selected")
    assert len(s["cuboids"]) == 1 and s["activeCuboid"] == 0 and s["undoDepth"] == 1
    placed = s["cuboids"][0]
    assert placed["label"] == "lamp"

    # Label with a digit, resize with Shift+arrows, rotate with Q, lift with PageUp.
    page.keyboard.press("2")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowUp")
    for _ in range(3):
        page.keyboard.press("q")
    page.keyboard.press("PageUp")
    c = _state(page, "cuboids")["cuboids"][0]
    assert c["label"] == "other"
    assert c["size"][0] == pytest.approx(placed["size"][0] * 1.21, rel=1e-6)
    assert c["size"][1] == pytest.approx(placed["size"][1] * 1.1, rel=1e-6)
    assert c["size"][2] == pytest.approx(placed["size"][2], rel=1e-9)
    assert math.degrees(c["yaw"] - placed["yaw"]) % 360 == pytest.approx(15, abs=1e-6)
    assert c["center"][2] > placed["center"][2]
    assert _state(page, "undoDepth")["undoDepth"] == 1 + 1 + 3 + 3 + 1

    # Undo the lift and one rotation step, redo one.
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    u = _state(page, "cuboids")["cuboids"][0]
    assert u["center"][2] == pytest.approx(placed["center"][2])
    assert math.degrees(u["yaw"] - placed["yaw"]) % 360 == pytest.approx(10, abs=1e-6)
    page.keyboard.press("Control+Shift+z")
    c = _state(page, "cuboids")["cuboids"][0]
    assert math.degrees(c["yaw"] - placed["yaw"]) % 360 == pytest.approx(15, abs=1e-6)
    assert page.is_visible("#pc-insets")
    page.screenshot(path=str(artifacts / "pointcloud-cuboids.png"))

    task_id = _state(page, "task")["task"]["id"]
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__looplab.state.submitted === 1 && window.__looplab.state.status !== 'submitting'")
    stored = Annotation.objects.get(task_id=task_id).result["cuboids"]
    assert len(stored) == 1
    got = stored[0]
    assert got["label"] == "other"
    assert got["center"] == pytest.approx(c["center"], abs=1e-3)
    assert got["size"] == pytest.approx(c["size"], abs=1e-3)
    assert math.cos(got["yaw"] - c["yaw"]) == pytest.approx(1.0, abs=1e-6)
    assert not new_page.errors, new_page.errors
