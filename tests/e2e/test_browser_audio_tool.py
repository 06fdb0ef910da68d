"""The audio tool in headless Chromium: regions drawn with the mouse, labeled and transcribed with the keyboard.

An audio_regions project gets one clip of spoken digits (espeak-ng words separated by silences); the
annotator drags a region over a word, labels it with a digit, types its transcript, resizes it, undoes and
redoes, makes and deletes a second region, plays and pauses with Space, and submits with Enter. The stored
Annotation and window.__looplab.state are both checked.
"""
from __future__ import annotations

import pytest

from tests.e2e.conftest import open_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
WORDS = ["three", "seven", "one"]
READY = "() => { const s = window.__looplab?.state; return s && s.status === 'ready' && s.timings && s.timings.drawnMs !== null; }"


@pytest.fixture
def spoken(transactional_db):
    from fixtures.speech import espeak_available
    from fixtures.speech_clips import spoken_clip

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    return spoken_clip(WORDS, gap_s=0.7)


def _setup(spoken, task_type="audio_regions"):
    from apps.accounts.services import user_create
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest

    lead = user_create(username="lead", password="pw-lead", role="lead")
    annotator = user_create(username="annotator", password="pw-annotator", role="annotator")
    project = project_create(user=lead, name="Spoken digits", modality="audio", task_type=task_type,
                             labels=LABELS, label_budget=10)
    membership_set(project=project, user=annotator, role="annotator")
    blob, times = spoken
    samples_ingest(project=project, items=[IngestItem(external_id="digits-1", content=blob)])
    rnd = round_create(project=project, user=lead, budget=1)
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", (rnd.status, rnd.error)
    return project, annotator, times


def _x(box, duration, t):
    return box["x"] + box["width"] * t / duration


def _state(page, expr):
    return page.evaluate(f"() => {{ const s = window.__looplab?.state; return {expr}; }}")


def test_audio_regions_with_mouse_and_keyboard(live_server, spoken, new_page, artifacts):
    from apps.labeling.models import Annotation

    project, annotator, times = _setup(spoken)
    page = open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", READY)
    duration = _state(page, "s.duration")
    assert duration == pytest.approx(times[-1][2] + 0.7, abs=0.01)
    assert _state(page, "s.peaks.buckets") >= 1000  # drawn from server peaks
    page.wait_for_function("() => window.__looplab.state.spectrogramReady")
    wave = page.locator("#waveform").bounding_box()
    y = wave["y"] + 60

    # 1. Drag a region over "seven".
    word, w_start, w_end = times[1]
    page.mouse.move(_x(wave, duration, w_start - 0.05), y)
    page.mouse.down()
    page.mouse.move(_x(wave, duration, (w_start + w_end) / 2), y, steps=5)
    page.mouse.move(_x(wave, duration, w_end + 0.05), y, steps=5)
    page.mouse.up()
    page.wait_for_function("() => window.__looplab.state.regions.length === 1")
    region = _state(page, "s.regions[0]")
    assert region["start"] == pytest.approx(w_start - 0.05, abs=0.03)
    assert region["end"] == pytest.approx(w_end + 0.05, abs=0.03)
    assert region["label"] is None and _state(page, "s.selectedRegion") == region["id"]
    assert _state(page, "s.undoDepth") == 1

    # 2. Label it with a digit key: "8" is the 8th label, "seven".
    page.keyboard.press("8")
    assert _state(page, "s.regions[0].label") == "seven"

    # 3. Transcript: T focuses the field; digits and S typed there are text, not hotkeys; Enter saves, not submits.
    page.keyboard.press("t")
    assert page.evaluate("() => document.activeElement.id") == "region-text"
    page.keyboard.type("seven 7 s")
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") != "region-text"
    assert _state(page, "s.regions[0].text") == "seven 7 s"
    assert _state(page, "s.regions[0].label") == "seven"
    assert _state(page, "s.submitted") == 0 and _state(page, "s.skipped") == 0 and _state(page, "s.status") == "ready"
    assert _state(page, "s.undoDepth") == 3

    # 4. Resize: drag the right edge 0.3 s further.
    before_end = _state(page, "s.regions[0].end")
    handle = page.locator("[part~='region-handle-right']").first.bounding_box()
    hx, hy = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(hx, hy)
    page.mouse.down()
    page.mouse.move(hx + wave["width"] * 0.15 / duration, hy, steps=4)
    page.mouse.move(hx + wave["width"] * 0.3 / duration, hy, steps=4)
    page.mouse.up()
    page.wait_for_function(f"() => window.__looplab.state.regions[0].end > {before_end + 0.2}")
    resized_end = _state(page, "s.regions[0].end")
    assert resized_end == pytest.approx(before_end + 0.3, abs=0.04)
    assert _state(page, "s.regions[0].start") == region["start"]

    # 5. Undo / redo the resize, then undo the transcript and redo it.
    page.keyboard.press("Control+z")
    assert _state(page, "s.regions[0].end") == before_end
    page.keyboard.press("Control+Shift+z")
    assert _state(page, "s.regions[0].end") == resized_end
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    assert _state(page, "s.regions[0].text") == ""
    assert page.input_value("#region-text") == ""
    page.keyboard.press("Control+y")
    page.keyboard.press("Control+y")
    assert _state(page, "s.regions[0].text") == "seven 7 s" and _state(page, "s.regions[0].end") == resized_end
    assert _state(page, "s.redoDepth") == 0

    # 6. A second region over "one", then delete it (and check the delete undoes and redoes).
    _, o_start, o_end = times[2]
    page.mouse.move(_x(wave, duration, o_start), y)
    page.mouse.down()
    page.mouse.move(_x(wave, duration, o_end), y, steps=6)
    page.mouse.up()
    page.wait_for_function("() => window.__looplab.state.regions.length === 2")
    page.keyboard.press("2")  # "one"
    assert page.locator(".at-row:not([hidden])").count() == 2
    page.keyboard.press("Delete")
    assert _state(page, "s.regions.length") == 1
    page.keyboard.press("Control+z")
    assert _state(page, "s.regions.length") == 2 and _state(page, "s.regions[1].label") == "one"
    page.keyboard.press("Control+Shift+z")
    assert _state(page, "s.regions.map(r => r.label)") == ["seven"]
    assert page.locator(".at-row:not([hidden])").count() == 1

    # 7. Clip label with Shift+digit, zoom in and out.
    page.keyboard.press("Shift+Digit4")
    assert _state(page, "s.clipLabel") == "three"
    page.keyboard.press("+")
    page.wait_for_function("() => window.__looplab.state.zoom > 0")
    page.keyboard.press("f")
    assert _state(page, "s.zoom") == 0

    # 8. Space plays and pauses.
    page.keyboard.press("Space")
    page.wait_for_function("() => window.__looplab.state.playing === true")
    page.wait_for_function("() => window.__looplab.state.currentTime > 0")
    page.keyboard.press("Space")
    page.wait_for_function("() => window.__looplab.state.playing === false")

    page.locator("[part~='region-handle-right']").first.hover()
    page.screenshot(path=str(artifacts / "audio-tool.png"))

    # 9. Enter submits (focus is not in the transcript field).
    task_id = _state(page, "s.task.id")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__looplab.state.submitted === 1 && window.__looplab.state.status === 'empty'")
    last = _state(page, "s.last")
    assert last["task"] == task_id
    annotation = Annotation.objects.get(task_id=task_id)
    assert annotation.annotator.username == "annotator"
    assert annotation.result["label"] == "three"
    [stored] = annotation.result["regions"]
    assert stored["label"] == "seven" and stored["text"] == "seven 7 s"
    assert stored["start"] == pytest.approx(w_start - 0.05, abs=0.03)
    assert stored["end"] == pytest.approx(resized_end, abs=1e-3)
    assert stored["end"] <= duration
    assert annotation.active_seconds and annotation.active_seconds > 0
    assert not new_page.errors, new_page.errors


def test_audio_classification_and_pre_annotations(live_server, spoken, new_page, artifacts):
    """Clip classification shows the same waveform; a task's prediction (regions + clip label) is pre-filled."""
    from apps.labeling.models import Annotation, Task

    project, annotator, times = _setup(spoken)
    task = Task.objects.get(project=project)
    # What a deployed region model would attach to the task (no such model exists yet in the loop).
    Task.objects.filter(pk=task.pk).update(prediction={
        "label": "seven", "confidence": 0.81,
        "regions": [{"label": word, "start": a, "end": b} for word, a, b in times]})
    page = open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", READY)
    assert _state(page, "s.regions.map(r => [r.label, r.predicted])") == [[w, True] for w, _, _ in times]
    assert _state(page, "s.clipLabel") == "seven"
    assert "3 regions" in page.inner_text("#prediction")
    page.wait_for_function("() => window.__looplab.state.spectrogramReady")
    page.screenshot(path=str(artifacts / "audio-tool-predicted.png"))
    # Correct one: select the third region ("one") with ] and relabel it, then submit.
    page.keyboard.press("]")
    page.keyboard.press("]")
    page.keyboard.press("]")
    assert _state(page, "s.regions.find(r => r.id === s.selectedRegion).label") == "one"
    page.keyboard.press("9")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__looplab.state.submitted === 1")
    result = Annotation.objects.get(task=task).result
    assert [r["label"] for r in result["regions"]] == ["three", "seven", "eight"]
    assert result["regions"][0]["start"] == pytest.approx(times[0][1], abs=1e-3)
    assert not new_page.errors, new_page.errors


def test_audio_classification_tool(live_server, spoken, new_page, artifacts):
    from apps.labeling.models import Annotation

    project, annotator, times = _setup(spoken, task_type="classification")
    page = open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", READY)
    assert page.locator("#region-rows").count() == 0
    page.keyboard.press("Enter")  # nothing chosen: refused with a message
    assert "Choose" in page.inner_text("#annotate-error") or page.locator("#submit-button").is_disabled()
    page.keyboard.press("4")
    assert _state(page, "s.selected") == "three"
    page.screenshot(path=str(artifacts / "audio-tool-classification.png"))
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__looplab.state.submitted === 1")
    assert Annotation.objects.get(task__project=project).result == {"label": "three"}
    assert not new_page.errors, new_page.errors
