"""Labels that mean what the annotator sees, in headless Chromium against a live server.

- A digit-named project (labels "0" … "9"): each digit pressed stores that digit, all ten.
- A project with other names keeps positions (1 … 9, then 0; an 11th label has no key and is clicked),
  and the keys are on the buttons and in the "?" overlay.
- Every new item starts with no label chosen: the image classifier and the 3D (point cloud) classifier
  open the next item with nothing selected and Submit disabled; a model's suggestion is still pre-selected.
- hotkeys.js (the one rule every tool uses) answers the same table in the browser as under Node.
- A submit after the lease ran out and another annotator claimed the task: the page says why, stores
  nothing and moves on to the next item.
State is built through services; checked: window.__looplab.state, the page, and the stored Annotation rows.
"""
from __future__ import annotations

import pytest

from tests.apps.helpers import push_digits
from tests.e2e.conftest import open_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

READY_NEXT = """prev => {
  const s = window.__looplab?.state;
  return s && (s.status === 'empty' || (s.status === 'ready' && s.task && s.task.id !== prev));
}"""
PC_READY = "() => { const s = window.__looplab?.state; return s && s.status === 'ready' && s.cloudReady && s.frames > 0; }"
DIGITS = [str(i) for i in range(10)]


def _image_project(people, labels: list[str], digits, n_tasks: int):
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create

    project = project_create(user=people["lead"], name="Keys", modality="image", labels=labels, label_budget=100)
    membership_set(project=project, user=people["annotator"], role="annotator")
    push_digits(project, digits, n_tasks + 4)
    rnd = round_create(project=project, user=people["lead"], budget=n_tasks, strategy="random")
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    return project


def _open(new_page, live_server, project, ready="() => window.__looplab?.state && window.__looplab.state.status === 'ready'"):
    return open_as(new_page, live_server, "annotator", f"/projects/{project.id}/annotate/", ready, timeout=30_000)


def _nothing_chosen(page) -> None:
    """The item on screen has no label chosen: state, buttons and the Submit button agree."""
    assert page.evaluate("() => window.__looplab.state.selected") is None
    assert page.locator(".label-btn[aria-pressed='true']").count() == 0
    assert page.is_disabled("#submit-button")


def test_each_digit_stores_that_digit(live_server, people, digits, new_page, artifacts):
    from apps.labeling.models import Annotation

    project = _image_project(people, DIGITS, digits, n_tasks=10)
    page = _open(new_page, live_server, project)
    assert page.evaluate("() => window.__looplab.state.hotkeys") == DIGITS
    for d in DIGITS:  # the button of label d shows key d
        assert page.inner_text(f".label-btn[data-label='{d}'] .hotkey") == d
        assert page.get_attribute(f".label-btn[data-label='{d}']", "aria-keyshortcuts") == d
    page.keyboard.press("?")
    row = page.inner_text("#help .label-keys")
    assert all(f"{d}\u00a0{d}" in row for d in DIGITS), row  # "<kbd>7</kbd> 7" for every digit
    page.keyboard.press("Escape")

    pressed: dict[int, str] = {}
    for d in ["7", "0", "9", "1", "6", "2", "8", "3", "5", "4"]:
        task = page.evaluate("() => window.__looplab.state.task")
        _nothing_chosen(page)  # a new item: no choice carried over from the last one
        page.keyboard.press(d)
        assert page.evaluate("() => window.__looplab.state.selected") == d
        assert page.get_attribute(f".label-btn[data-label='{d}']", "aria-pressed") == "true"
        if d == "7":
            page.screenshot(path=str(artifacts / "hotkeys-digits.png"))
        page.keyboard.press("Enter")
        pressed[task["id"]] = d
        page.wait_for_function(READY_NEXT, arg=task["id"])
    assert page.evaluate("() => window.__looplab.state.status") == "empty"

    stored = {a.task_id: a.result["label"] for a in Annotation.objects.filter(task__project=project)}
    assert stored == pressed  # all ten: the digit pressed is the label stored
    assert sorted(stored.values()) == DIGITS
    assert not new_page.errors, new_page.errors


def test_other_names_keep_positions_and_show_their_keys(live_server, people, digits, new_page, artifacts):
    from apps.labeling.models import Annotation

    from apps.labeling.models import Task

    labels = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "kiwi"]  # 11: the last has no key
    project = _image_project(people, labels, digits, n_tasks=3)
    # The third item carries a model's suggestion (what a round with a deployed model writes; training one
    # here would cost a minute): it is pre-selected, the reset between items notwithstanding.
    queue = list(Task.objects.filter(project=project).order_by("-priority", "id").values_list("id", flat=True))
    Task.objects.filter(pk=queue[2]).update(prediction={"label": "bee", "confidence": 0.9})
    page = _open(new_page, live_server, project)
    keys = [page.inner_text(f".label-btn[data-index='{i}'] .hotkey") for i in range(len(labels))]
    assert keys == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", ""]
    assert page.get_attribute(".label-btn[data-label='kiwi']", "aria-keyshortcuts") is None
    page.keyboard.press("?")
    row = page.inner_text("#help .label-keys")
    assert "1\u00a0ant" in row and "0\u00a0jay" in row and "1 more label without a key" in row, row
    page.screenshot(path=str(artifacts / "hotkeys-help.png"))
    page.keyboard.press("Escape")

    chosen: dict[int, str] = {}
    for action, label in [("3", "cat"), ("0", "jay"), ("click", "kiwi")]:
        task = page.evaluate("() => window.__looplab.state.task")
        if task["id"] == queue[2]:
            assert page.evaluate("() => window.__looplab.state.selected") == "bee"
            assert page.get_attribute(".label-btn[data-label='bee']", "aria-pressed") == "true"
            assert page.is_enabled("#submit-button")
        else:
            _nothing_chosen(page)
        if action == "click":
            page.click(".label-btn[data-label='kiwi']")
        else:
            page.keyboard.press(action)
        assert page.evaluate("() => window.__looplab.state.selected") == label
        page.keyboard.press("Enter")
        chosen[task["id"]] = label
        page.wait_for_function(READY_NEXT, arg=task["id"])
    assert list(chosen) == queue  # the items came in queue order, the suggested one last
    assert {a.task_id: a.result["label"] for a in Annotation.objects.filter(task__project=project)} == chosen
    assert not new_page.errors, new_page.errors


def test_pointcloud_classifier_opens_the_next_cloud_with_nothing_chosen(live_server, people, new_page):
    from apps.labeling.models import Annotation
    from tests.e2e.test_browser_pointcloud_tool import _cloud_project

    project = _cloud_project(people, "classification", ["lamp", "other"], n_clouds=2, n_points=1024)
    page = _open(new_page, live_server, project, ready=PC_READY)
    _nothing_chosen(page)
    first = page.evaluate("() => window.__looplab.state.task.id")
    page.keyboard.press("2")
    assert page.evaluate("() => window.__looplab.state.selected") == "other"
    assert page.is_enabled("#submit-button")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => {{ const s = window.__looplab?.state; return s.task && s.task.id !== {first} && s.cloudReady; }}")
    page.wait_for_function(PC_READY)
    second = page.evaluate("() => window.__looplab.state.task.id")
    _nothing_chosen(page)
    page.keyboard.press("Enter")  # nothing chosen: Enter stores nothing
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__looplab.state.task.id") == second
    assert [(a.task_id, a.result) for a in Annotation.objects.filter(task__project=project)] == [(first, {"label": "other"})]
    assert not new_page.errors, new_page.errors


def test_the_key_rule_in_the_browser(live_server, people, new_page):
    """hotkeys.js as the browser loads it (Node runs the same cases in labeling_ui/tests)."""
    page = new_page()
    page.goto(f"{live_server.url}/login/")
    table = page.evaluate("""async () => {
      const m = await import('/static/looplab/hotkeys.js');
      return [m.labelHotkeys(['0','1','2','3','4','5','6','7','8','9']), m.labelHotkeys(['cat','1','dog']),
              m.labelHotkeys(['a','b','c','d','e','f','g','h','i','j','k']), m.labelHotkeys(['x','7','10'])];
    }""")
    assert table == [DIGITS, ["2", "1", "3"], ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", None], ["1", "7", "2"]]


def test_a_late_submit_on_a_taken_task_says_why_and_moves_on(live_server, people, digits, new_page):
    from datetime import timedelta

    from django.utils import timezone

    from apps.labeling.models import Annotation, Task
    from apps.labeling.services import task_lease_next

    project = _image_project(people, DIGITS, digits, n_tasks=2)
    page = _open(new_page, live_server, project)
    task = page.evaluate("() => window.__looplab.state.task")
    past = timezone.now() - timedelta(hours=2)  # the annotator went for lunch; the lease ran out
    Task.objects.filter(pk=task["id"]).update(lease_expires_at=past, available_at=past)
    assert task_lease_next(project=project, user=people["lead"]).pk == task["id"]  # someone else took it
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_function(READY_NEXT, arg=task["id"])
    state = page.evaluate("() => window.__looplab.state")
    assert state["errorCode"] == "task_taken" and state["submitted"] == 0
    assert "Another annotator holds this task" in page.inner_text("#annotate-error")
    assert state["task"]["id"] != task["id"] and state["selected"] is None
    assert not Annotation.objects.exists()
    assert Task.objects.get(pk=task["id"]).leased_by_id == people["lead"].pk
