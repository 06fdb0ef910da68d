"""Pre-annotations in every tool, in headless Chromium against a live server: a task opens with the deployed
model's prediction (in the task type's shape, with its ``model`` id, as round_run writes it on the task), each
tool shows it as editable shapes marked predicted, the annotator edits it with the tool's own mouse and key
commands and submits; the stored annotation has the edit and its ``preannotation`` counts (kept, edited,
deleted, added; ml.preannotation) say what was done. The image test also reads the counts on the project page.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.e2e.conftest import open_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MODEL = 17  # the deployed model version id the prediction names (round_run: {**result, "model": runner.model_id})
SUBMITTED = "() => window.__looplab.state.submitted === 1 && window.__looplab.state.status !== 'submitting'"


def _project(people, *, modality: str, task_type: str, labels: list[str], contents: list[bytes]):
    """A project with one task per content (a random round), built through services."""
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest

    project = project_create(user=people["lead"], name=f"pre-annotated {task_type}", modality=modality,
                             task_type=task_type, labels=labels, label_budget=10)
    membership_set(project=project, user=people["annotator"], role="annotator")
    samples_ingest(project=project, items=[IngestItem(external_id=f"s{i}", content=c) for i, c in enumerate(contents)])
    rnd = round_create(project=project, user=people["lead"], budget=len(contents), strategy="random")
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", (rnd.status, rnd.error)
    return project


def _predict(project, prediction_for):
    """Write each task's prediction (``prediction_for(sample)``) with the model id, as round_run does."""
    from apps.labeling.models import Task

    for task in Task.objects.filter(project=project).select_related("sample"):
        Task.objects.filter(pk=task.pk).update(prediction={**prediction_for(task.sample), "model": MODEL})


def _submit(page):
    task_id = page.evaluate("() => window.__looplab.state.task.id")
    page.wait_for_timeout(200)  # some active time
    page.keyboard.press("Enter")
    page.wait_for_function(SUBMITTED)
    from apps.labeling.models import Annotation

    return Annotation.objects.get(task_id=task_id)


# -- image: detection boxes ------------------------------------------------------------------------------------

IMAGE_READY = ("() => { const s = window.__looplab?.state; return s && s.status === 'ready' && s.frames > 0 "
               "&& s.image && s.image.width > 0; }")


def _screen(page, x, y):
    return page.evaluate("""([x, y]) => {
        const [sx, sy] = window.__looplab.image.toScreen(x, y);
        const r = document.getElementById('it-canvas').getBoundingClientRect();
        return [r.left + sx, r.top + sy]; }""", [x, y])


def _drag(page, a, b, steps=8):
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=steps)
    page.mouse.up()


def test_image_boxes_moved_deleted_added(live_server, people, new_page, artifacts):
    from fixtures.digits import digits_pngs

    labels = ["digit", "stroke", "blob"]
    project = _project(people, modality="image", task_type="detection", labels=labels,
                       contents=[digits_pngs(size=320)[0][0]])
    boxes = [{"label": "digit", "x": 0.05, "y": 0.05, "w": 0.25, "h": 0.25, "score": 0.9},   # kept
             {"label": "stroke", "x": 0.4, "y": 0.4, "w": 0.3, "h": 0.3, "score": 0.7},   # moved
             {"label": "blob", "x": 0.75, "y": 0.05, "w": 0.2, "h": 0.2, "score": 0.4}]   # deleted
    _predict(project, lambda sample: {"boxes": boxes, "polygons": []})
    page = open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", IMAGE_READY)
    s = page.evaluate("() => window.__looplab.state")
    assert [(b["label"], b["predicted"]) for b in s["boxes"]] == [("digit", True), ("stroke", True), ("blob", True)]
    assert "pre-annotated 3 boxes" in page.inner_text("#prediction")

    # Move the second box by dragging its inside +0.1, +0.05; select the third with a click and Delete it;
    # draw a new box on an empty spot with the "blob" label.
    _drag(page, _screen(page, 0.55, 0.55), _screen(page, 0.65, 0.6))
    page.mouse.click(*_screen(page, 0.85, 0.15))
    assert page.evaluate("() => window.__looplab.state.selection") == {"kind": "box", "index": 2}
    page.keyboard.press("Delete")
    page.keyboard.press("Escape")
    page.keyboard.press("3")
    _drag(page, _screen(page, 0.1, 0.75), _screen(page, 0.3, 0.95))
    s = page.evaluate("() => window.__looplab.state")
    assert len(s["boxes"]) == 3 and s["boxes"][0]["predicted"] is True and "predicted" not in s["boxes"][1]
    page.screenshot(path=str(artifacts / "preannotation-image.png"))

    annotation = _submit(page)
    got = annotation.result["boxes"]
    assert got[0] == {k: boxes[0][k] for k in ("label", "x", "y", "w", "h")}
    assert got[1]["label"] == "stroke" and got[1]["x"] == pytest.approx(0.5, abs=0.012)
    assert got[1]["y"] == pytest.approx(0.45, abs=0.012) and got[1]["w"] == pytest.approx(0.3, abs=1e-6)
    assert got[2]["label"] == "blob" and got[2]["x"] == pytest.approx(0.1, abs=0.012)
    assert annotation.preannotation == {"model": MODEL, "kind": "shapes", "n_predicted": 3, "kept": 1,
                                        "edited": 1, "deleted": 1, "added": 1}
    assert annotation.active_seconds and annotation.active_seconds > 0

    # The project page says it in words, with the active time of the one pre-annotated annotation.
    lead = open_as(new_page, live_server, "lead", f"/projects/{project.id}/")
    text = lead.inner_text("#preannotation-stats")
    assert "33% of predicted boxes and polygons kept unchanged, 33% edited, 33% deleted, 1 added" in text
    assert f"{annotation.active_seconds:.1f} s per task with a pre-annotation (n=1)" in text and "without (n=0)" in text
    assert not new_page.errors, new_page.errors


# -- audio: regions -------------------------------------------------------------------------------------------

AUDIO_READY = ("() => { const s = window.__looplab?.state; return s && s.status === 'ready' && s.timings "
               "&& s.timings.drawnMs !== null; }")
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_audio_regions_relabelled_and_deleted(live_server, people, new_page, artifacts):
    from fixtures.speech import espeak_available
    from fixtures.speech_clips import spoken_clip

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    blob, times = spoken_clip(["three", "seven", "one"], gap_s=0.7)
    project = _project(people, modality="audio", task_type="audio_regions", labels=DIGITS, contents=[blob])
    # the model hears "three" right, takes "seven" for "eight", finds "one"; the clip label "seven"
    predicted = [{"label": w, "start": a, "end": b} for w, a, b in times]
    predicted[1]["label"] = "eight"
    _predict(project, lambda sample: {"regions": predicted, "label": "seven", "confidence": 0.8})
    page = open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", AUDIO_READY)
    state = lambda expr: page.evaluate(f"() => {{ const s = window.__looplab.state; return {expr}; }}")  # noqa: E731
    assert state("s.regions.map(r => [r.label, r.predicted])") == [["three", True], ["eight", True], ["one", True]]
    assert state("s.clipLabel") == "seven"

    # ] ] selects the second region: relabel it "seven" (its key is 8); ] selects the third: Delete.
    page.keyboard.press("]")
    page.keyboard.press("]")
    assert state("s.regions.find(r => r.id === s.selectedRegion).label") == "eight"
    page.keyboard.press("8")
    assert state("s.regions.map(r => r.label)") == ["three", "seven", "one"]
    page.keyboard.press("]")
    page.keyboard.press("Delete")
    assert state("s.regions.map(r => r.label)") == ["three", "seven"]
    page.screenshot(path=str(artifacts / "preannotation-audio.png"))

    annotation = _submit(page)
    assert [r["label"] for r in annotation.result["regions"]] == ["three", "seven"]
    assert annotation.result["regions"][1]["start"] == pytest.approx(times[1][1], abs=1e-3)
    assert annotation.result["label"] == "seven"
    assert annotation.preannotation == {"model": MODEL, "kind": "shapes", "n_predicted": 3, "kept": 1,
                                        "edited": 1, "deleted": 1, "added": 0, "label_kept": True}
    assert not new_page.errors, new_page.errors


# -- point cloud: segmentation and cuboids ------------------------------------------------------------------

CLOUD_READY = ("() => { const s = window.__looplab?.state; "
               "return s && s.status === 'ready' && s.cloudReady && s.frames > 0; }")


def _lamps(n: int = 1):
    from fixtures.shapes import encode_points, part_shapes

    lamps = part_shapes(n, seed=7, n_points=2048)
    return lamps, [encode_points(p, "ply") for p, _ in lamps]


def test_pointcloud_segmentation_relabelled_with_the_lasso(live_server, people, new_page, artifacts):
    labels = ["base", "pole", "shade"]
    lamps, contents = _lamps()
    project = _project(people, modality="pointcloud", task_type="point_segmentation", labels=labels, contents=contents)
    truth = lamps[0][1].astype(int)
    predicted = truth.copy()
    predicted[:300] = -1  # the model leaves some points unlabelled
    _predict(project, lambda sample: {"point_labels": predicted.tolist()})
    page = open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", CLOUD_READY, timeout=30_000)
    assert page.evaluate("() => Array.from(window.__looplab.state.pointLabels)") == predicted.tolist()
    assert "point labels are filled in" in page.inner_text("#prediction")

    # "pole" (key 2), then a lasso round the upper middle of the view: those points become "pole".
    page.keyboard.press("2")
    box = page.locator("#pc-canvas").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.42
    r = min(box["width"], box["height"]) * 0.22
    ring = [(cx + r * math.cos(2 * math.pi * k / 24), cy + 0.8 * r * math.sin(2 * math.pi * k / 24)) for k in range(25)]
    page.mouse.move(*ring[0])
    page.mouse.down()
    for x, y in ring[1:]:
        page.mouse.move(x, y, steps=2)
    page.mouse.up()
    page.wait_for_function("() => window.__looplab.state.lastSelection !== null")
    final = np.array(page.evaluate("() => Array.from(window.__looplab.state.pointLabels)"))
    lassoed = final != predicted
    assert lassoed.any() and set(final[lassoed]) == {1}
    page.screenshot(path=str(artifacts / "preannotation-pointcloud-segmentation.png"))

    annotation = _submit(page)
    assert annotation.result["point_labels"] == final.tolist()
    edited = int(((predicted >= 0) & lassoed).sum())
    added = int(((predicted < 0) & lassoed).sum())
    assert edited > 0
    assert annotation.preannotation == {"model": MODEL, "kind": "points", "n_predicted": 2048 - 300,
                                        "kept": 2048 - 300 - edited, "edited": edited, "deleted": 0, "added": added}
    assert not new_page.errors, new_page.errors


def test_pointcloud_cuboids_resized_and_deleted(live_server, people, new_page, artifacts):
    from ml.geometry import fit_cuboid

    labels = ["lamp", "other"]
    lamps, contents = _lamps()
    project = _project(people, modality="pointcloud", task_type="cuboids", labels=labels, contents=contents)
    fitted = {k: [round(v, 4) for v in val] if isinstance(val, list) else round(val, 4)
              for k, val in fit_cuboid(lamps[0][0]).items()}
    stray = {"label": "other", "center": [fitted["center"][0] + 3, fitted["center"][1], fitted["center"][2]],
             "size": [0.5, 0.5, 0.5], "yaw": 0.0}
    _predict(project, lambda sample: {"cuboids": [{"label": "lamp", **fitted, "score": 0.9}, stray]})
    page = open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", CLOUD_READY, timeout=30_000)
    s = page.evaluate("() => ({cuboids: window.__looplab.state.cuboids, active: window.__looplab.state.activeCuboid})")
    assert [c["label"] for c in s["cuboids"]] == ["lamp", "other"] and s["active"] == 0
    assert s["cuboids"][0]["size"] == pytest.approx(fitted["size"], abs=1e-4)
    assert "proposes 2 cuboid(s)" in page.inner_text("#prediction")

    # The active (first) cuboid: twice longer by 10% (Shift+ArrowRight); Tab to the second, Delete it.
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Tab")
    assert page.evaluate("() => window.__looplab.state.activeCuboid") == 1
    page.keyboard.press("Delete")
    page.screenshot(path=str(artifacts / "preannotation-pointcloud-cuboids.png"))

    annotation = _submit(page)
    [got] = annotation.result["cuboids"]
    assert got["label"] == "lamp" and got["size"][0] == pytest.approx(fitted["size"][0] * 1.21, rel=1e-3)
    assert got["center"] == pytest.approx(fitted["center"], abs=1e-3)
    assert annotation.preannotation == {"model": MODEL, "kind": "shapes", "n_predicted": 2, "kept": 0,
                                        "edited": 1, "deleted": 1, "added": 0}
    assert not new_page.errors, new_page.errors
