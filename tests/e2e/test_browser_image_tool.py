"""The image detection tool (boxes and polygons) in headless Chromium, against a live server.

An annotator draws with the mouse and keyboard: a box (drag), relabels it (digit), moves and resizes it,
draws a polygon (4 clicks + click on the first vertex), drags a vertex, undoes and redoes, and submits with
Enter. Checked against window.__looplab.state and the stored Annotation row.
"""
from __future__ import annotations

import pytest

from tests.e2e.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = ["digit", "stroke", "blob", "noise"]
TOL = 0.012  # normalised: a few screen pixels at the fitted zoom
READY = "() => window.__looplab?.state && window.__looplab.state.status === 'ready'"


@pytest.fixture
def detection_project(transactional_db):
    from apps.accounts.services import user_create
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest
    from fixtures.digits import digits_pngs

    lead = user_create(username="lead", password="pw-lead", role="lead")
    annotator = user_create(username="annotator", password="pw-annotator", role="annotator")
    project = project_create(user=lead, name="Digit parts", modality="image", task_type="detection",
                             labels=LABELS, label_budget=100)
    membership_set(project=project, user=annotator, role="annotator")
    big = digits_pngs(size=320)[:4]  # the 8x8 digits rendered large enough to draw on
    samples_ingest(project=project, items=[IngestItem(external_id=f"d{i}", content=png, metadata={"digit": y})
                                           for i, (png, y) in enumerate(big)])
    rnd = round_create(project=project, user=lead, budget=3, strategy="random")
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", (rnd.status, rnd.error)
    return project


def _open(page, live_server, project):
    login(page, live_server, "annotator", "pw-annotator")
    page.goto(f"{live_server.url}/projects/{project.id}/annotate/")
    page.wait_for_function(READY)
    page.wait_for_function("() => window.__looplab.state.frames > 0 && window.__looplab.state.image.width > 0")


def _screen(page, x, y):
    """Page coordinates of a normalised image point."""
    return page.evaluate("""([x, y]) => {
        const [sx, sy] = window.__looplab.image.toScreen(x, y);
        const r = document.getElementById('it-canvas').getBoundingClientRect();
        return [r.left + sx, r.top + sy]; }""", [x, y])


def _drag(page, a, b, steps=8):
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=steps)
    page.mouse.up()


def _state(page):
    return page.evaluate("() => window.__looplab.state")


def test_draw_box_and_polygon_undo_redo_submit(live_server, detection_project, new_page, artifacts):
    from apps.labeling.models import Annotation

    project = detection_project
    page = new_page()
    _open(page, live_server, project)
    s = _state(page)
    assert s["mode"] == "select" and s["boxes"] == [] and s["selected"] == LABELS[0]
    page.keyboard.press("?")
    assert page.is_visible("#help") and "polygon" in page.inner_text("#help-keys")
    page.keyboard.press("Escape")
    assert page.is_hidden("#help")

    # A box: drag on an empty spot (select mode draws there).
    _drag(page, _screen(page, 0.2, 0.2), _screen(page, 0.5, 0.6))
    s = _state(page)
    assert len(s["boxes"]) == 1 and s["selection"] == {"kind": "box", "index": 0} and s["undoDepth"] == 1
    box = s["boxes"][0]
    assert box["label"] == "digit"
    assert abs(box["x"] - 0.2) < TOL and abs(box["y"] - 0.2) < TOL
    assert abs(box["w"] - 0.3) < TOL and abs(box["h"] - 0.4) < TOL

    # Relabel with a digit while selected.
    page.keyboard.press("3")
    s = _state(page)
    assert s["boxes"][0]["label"] == "blob" and s["selected"] == "blob" and s["undoDepth"] == 2

    # Move it by dragging its inside: +0.1, +0.05.
    _drag(page, _screen(page, 0.35, 0.4), _screen(page, 0.45, 0.45))
    box = _state(page)["boxes"][0]
    assert abs(box["x"] - 0.3) < TOL and abs(box["y"] - 0.25) < TOL and abs(box["w"] - 0.3) < TOL

    # Resize from the bottom-right handle to (0.7, 0.75).
    _drag(page, _screen(page, box["x"] + box["w"], box["y"] + box["h"]), _screen(page, 0.7, 0.75))
    s = _state(page)
    box = s["boxes"][0]
    assert abs(box["x"] - 0.3) < TOL and abs(box["y"] - 0.25) < TOL
    assert abs(box["x"] + box["w"] - 0.7) < TOL and abs(box["y"] + box["h"] - 0.75) < TOL
    assert s["undoDepth"] == 4

    # A polygon: P, four clicks, click the first vertex again to close.
    page.keyboard.press("Escape")  # deselect, so the digit picks the label for new shapes only
    assert _state(page)["selection"] is None
    page.keyboard.press("2")
    assert _state(page)["selected"] == "stroke" and _state(page)["boxes"][0]["label"] == "blob"
    page.keyboard.press("p")
    corners = [(0.05, 0.05), (0.15, 0.06), (0.16, 0.15), (0.06, 0.14)]
    for x, y in corners:
        page.mouse.click(*_screen(page, x, y))
    assert len(_state(page)["draft"]) == 4
    page.mouse.click(*_screen(page, *corners[0]))
    s = _state(page)
    assert s["draft"] is None and len(s["polygons"]) == 1
    poly = s["polygons"][0]
    assert poly["label"] == "stroke" and len(poly["points"]) == 4
    for (x, y), (px, py) in zip(corners, poly["points"]):
        assert abs(x - px) < TOL and abs(y - py) < TOL
    depth = s["undoDepth"]

    # Drag the third vertex out to (0.25, 0.25).
    _drag(page, _screen(page, *corners[2]), _screen(page, 0.25, 0.25))
    s = _state(page)
    assert abs(s["polygons"][0]["points"][2][0] - 0.25) < TOL and abs(s["polygons"][0]["points"][2][1] - 0.25) < TOL
    assert s["undoDepth"] == depth + 1

    # Insert a vertex with Alt+click on an edge, then delete it with Alt+click on it.
    mid = [(corners[0][0] + corners[1][0]) / 2, (corners[0][1] + corners[1][1]) / 2]
    page.keyboard.down("Alt")
    page.mouse.click(*_screen(page, *mid))
    page.keyboard.up("Alt")
    assert len(_state(page)["polygons"][0]["points"]) == 5
    page.keyboard.down("Alt")
    page.mouse.click(*_screen(page, *mid))
    page.keyboard.up("Alt")
    assert len(_state(page)["polygons"][0]["points"]) == 4
    assert _state(page)["undoDepth"] == depth + 3

    # Undo the vertex delete, the insert and the drag; then redo the drag.
    for _ in range(3):
        page.keyboard.press("Control+z")
    s = _state(page)
    assert s["undoDepth"] == depth and s["redoDepth"] == 3
    assert abs(s["polygons"][0]["points"][2][0] - corners[2][0]) < TOL
    page.keyboard.press("Control+Shift+z")
    s = _state(page)
    assert abs(s["polygons"][0]["points"][2][0] - 0.25) < TOL and s["redoDepth"] == 2
    page.keyboard.press("Control+y")
    assert len(_state(page)["polygons"][0]["points"]) == 5
    page.keyboard.press("Control+z")  # back to the 4-vertex polygon with the dragged vertex
    s = _state(page)
    assert len(s["polygons"][0]["points"]) == 4 and abs(s["polygons"][0]["points"][2][0] - 0.25) < TOL

    # Zoom and pan do not move shapes in image space.
    before = _state(page)["boxes"][0]
    scale = _state(page)["view"]["scale"]
    page.mouse.move(*_screen(page, 0.5, 0.5))
    page.mouse.wheel(0, -300)
    page.keyboard.down(" ")
    _drag(page, _screen(page, 0.5, 0.5), _screen(page, 0.45, 0.4))
    page.keyboard.up(" ")
    s = _state(page)
    assert s["view"]["scale"] > 1.3 * scale
    assert s["boxes"][0] == before and len(s["boxes"]) == 1
    page.keyboard.press("f")
    page.keyboard.press("v")
    page.mouse.click(*_screen(page, 0.5, 0.5))  # select the box to show its handles in the screenshot
    page.wait_for_timeout(100)
    page.screenshot(path=str(artifacts / "image-tool.png"))

    task_id = _state(page)["task"]["id"]
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    page.wait_for_function("id => { const s = window.__looplab?.state; return s.submitted === 1 && (!s.task || s.task.id !== id); }",
                           arg=task_id)
    page.wait_for_function("() => window.__looplab.state.status === 'ready'")
    s = _state(page)
    assert s["boxes"] == [] and s["polygons"] == [] and s["undoDepth"] == 0
    # Nothing of the last item's choice carries over: no shape selected, new shapes get the first label again
    # (the last item ended with "blob" chosen).
    assert s["task"]["id"] != task_id and s["selection"] is None and s["draft"] is None
    assert s["selected"] == LABELS[0]

    annotation = Annotation.objects.get(task_id=task_id)
    result = annotation.result
    assert annotation.annotator.username == "annotator" and annotation.active_seconds > 0
    assert len(result["boxes"]) == 1 and len(result["polygons"]) == 1
    b = result["boxes"][0]
    assert b["label"] == "blob"
    assert abs(b["x"] - 0.3) < TOL and abs(b["y"] - 0.25) < TOL
    assert abs(b["x"] + b["w"] - 0.7) < TOL and abs(b["y"] + b["h"] - 0.75) < TOL
    p = result["polygons"][0]
    assert p["label"] == "stroke" and len(p["points"]) == 4
    want = [corners[0], corners[1], (0.25, 0.25), corners[3]]
    for (x, y), (px, py) in zip(want, p["points"]):
        assert abs(x - px) < TOL and abs(y - py) < TOL
    assert not new_page.errors, new_page.errors


def test_predictions_are_editable_and_bad_shapes_are_refused(live_server, detection_project, new_page, artifacts):
    from apps.labeling.models import Annotation, Task

    project = detection_project
    # The deployed model's detections, as a round would attach them to the tasks.
    prediction = {"boxes": [{"label": "digit", "x": 0.1, "y": 0.1, "w": 0.3, "h": 0.3, "confidence": 0.9}],
                  "polygons": [{"label": "blob", "points": [[0.6, 0.6], [0.9, 0.6], [0.75, 0.9]]}]}
    Task.objects.filter(project=project).update(prediction=prediction)
    page = new_page()
    _open(page, live_server, project)
    s = _state(page)
    assert len(s["boxes"]) == 1 and s["boxes"][0]["predicted"] is True and len(s["polygons"]) == 1
    assert page.is_visible("#prediction") and "pre-annotated" in page.inner_text("#prediction")

    # Delete the predicted polygon (select it, Delete), relabel the box; undo brings the polygon back.
    page.mouse.click(*_screen(page, 0.75, 0.7))
    assert _state(page)["selection"] == {"kind": "polygon", "index": 0}
    page.keyboard.press("Delete")
    assert _state(page)["polygons"] == []
    page.keyboard.press("Control+z")
    assert len(_state(page)["polygons"]) == 1
    page.keyboard.press("Control+Shift+z")
    page.mouse.click(*_screen(page, 0.25, 0.25))
    page.keyboard.press("4")
    assert _state(page)["boxes"][0] == {"label": "noise", "x": 0.1, "y": 0.1, "w": 0.3, "h": 0.3}
    page.screenshot(path=str(artifacts / "image-tool-prediction.png"))

    # A shape outside the image (x + w > 1), as a broken client would send it: refused, shown, item kept.
    task_id = _state(page)["task"]["id"]
    page.evaluate("() => window.__looplab.state.boxes.push({label: 'digit', x: 0.8, y: 0.1, w: 0.5, h: 0.2})")
    page.keyboard.press("Enter")
    page.wait_for_selector("#annotate-error:not([hidden])")
    s = _state(page)
    assert s["status"] == "ready" and s["task"]["id"] == task_id and s["submitted"] == 0
    assert s["errorCode"] == "invalid_result" and s["errorDetails"]["path"] == "result.boxes[1]"
    assert "inside the image" in page.inner_text("#annotate-error")
    page.screenshot(path=str(artifacts / "image-tool-error.png"))
    assert not Annotation.objects.filter(task_id=task_id).exists()

    # Remove it (select, Delete) and submit: stored.
    page.evaluate("() => { window.__looplab.state.selection = {kind: 'box', index: 1}; }")
    page.keyboard.press("Delete")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__looplab.state.submitted === 1")
    assert Annotation.objects.get(task_id=task_id).result == {
        "boxes": [{"label": "noise", "x": 0.1, "y": 0.1, "w": 0.3, "h": 0.3}], "polygons": []}
    assert not new_page.errors, new_page.errors
