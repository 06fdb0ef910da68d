"""The review page and the project page's export button in headless Chromium, against a live server.

State is built through services; the browser does what a lead would: sign in, press keys, click buttons.
"""
from __future__ import annotations

import csv
import io

import pytest

from tests.apps.helpers import push_digits
from tests.e2e.conftest import login, open_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def reviewed_project(transactional_db, digits):
    """A digits project asking for 2 annotations per task: 4 tasks annotated by two annotators (one disagreement)."""
    from apps.accounts.services import user_create
    from apps.labeling.services import annotation_submit, round_create, task_lease_next
    from apps.projects.services import membership_set, project_create

    lead = user_create(username="lead", password="pw-lead", role="lead")
    a1 = user_create(username="ann1", password="pw-ann1", role="annotator")
    a2 = user_create(username="ann2", password="pw-ann2", role="annotator")
    project = project_create(user=lead, name="Digits review", modality="image", labels=[str(i) for i in range(10)],
                             annotations_per_task=2)
    for user in (a1, a2):
        membership_set(project=project, user=user, role="annotator")
    push_digits(project, digits, 12)
    rnd = round_create(project=project, user=lead, budget=4, strategy="random")  # on_commit → eager task
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    for user, labels in ((a1, "1234"), (a2, "1294")):
        for label in labels:
            task = task_lease_next(project=project, user=user)
            annotation_submit(task=task, user=user, result={"label": label}, active_seconds=3.0)
    return project, lead


def test_review_reject_with_comment_and_accept(live_server, reviewed_project, new_page, artifacts):
    from apps.labeling.models import Annotation, Task

    project, _ = reviewed_project
    page = open_as(new_page, live_server, "lead", f"/projects/{project.pk}/review/",
                   "() => window.__looplab?.state && window.__looplab.state.status === 'ready' && window.__looplab.state.agreement")
    state = page.evaluate("() => window.__looplab.state")
    assert len(state["annotations"]) == 8 and state["selected"] == state["annotations"][0]["id"]
    assert state["agreement"]["overall"]["kappa_kind"] == "cohen" and state["agreement"]["overall"]["tasks"] == 4
    expect_rows = page.locator("#review-rows tr")
    assert expect_rows.count() == 8

    # Keyboard: J moves to the second annotation, R opens the comment, typing + Enter rejects it.
    page.keyboard.press("j")
    second = page.evaluate("() => window.__looplab.state.selected")
    assert second == state["annotations"][1]["id"]
    page.keyboard.press("r")
    assert page.evaluate("() => document.activeElement.id") == "comment"
    page.keyboard.type("Please look again: this is a 7")
    page.keyboard.press("Enter")
    page.wait_for_function("id => window.__looplab.state.lastAction && window.__looplab.state.lastAction.id === id", arg=second)
    assert expect_rows.count() == 7  # it left the "pending" list

    # Mouse: click the fourth row, then the Accept button.
    target = page.evaluate("() => window.__looplab.state.annotations[2].id")
    page.click(f'#review-rows tr[data-id="{target}"]')
    page.click("#accept-btn")
    page.wait_for_function("id => window.__looplab.state.lastAction && window.__looplab.state.lastAction.id === id", arg=target)
    assert page.evaluate("() => window.__looplab.state.reviewed") == 2
    page.wait_for_function("() => document.getElementById('review-counts').textContent.startsWith('6 pending')")
    page.select_option("#f-status", "")
    page.wait_for_function("() => window.__looplab.state.annotations.length === 8")
    page.click(f'#review-rows tr[data-id="{second}"]')
    page.screenshot(path=str(artifacts / "review.png"), full_page=True)

    rejected = Annotation.objects.get(pk=second)
    assert rejected.review_status == "rejected" and rejected.review_comment == "Please look again: this is a 7"
    assert rejected.reviewer.username == "lead" and rejected.reviewed_at is not None
    assert Task.objects.get(pk=rejected.task_id).state == "pending"  # back in the queue
    accepted = Annotation.objects.get(pk=target)
    assert accepted.review_status == "accepted"
    assert Annotation.objects.filter(task__project=project, review_status="pending").count() == 6
    assert not new_page.errors


def test_review_page_correct_with_digits_and_annotators_are_refused(live_server, reviewed_project, new_page):
    from apps.labeling.models import Annotation
    from apps.samples.models import Sample

    project, _ = reviewed_project
    page = open_as(new_page, live_server, "lead", f"/projects/{project.pk}/review/",
                   "() => window.__looplab?.state && window.__looplab.state.status === 'ready'")
    first = page.evaluate("() => window.__looplab.state.selected")
    page.keyboard.press("c")
    page.keyboard.press("7")  # label "7": a digit-named label answers to its digit
    page.wait_for_function("id => window.__looplab.state.lastAction && window.__looplab.state.lastAction.id === id", arg=first)
    ann = Annotation.objects.get(pk=first)
    assert ann.review_status == "corrected" and ann.corrected_result == {"label": "7"}
    assert Sample.objects.get(pk=ann.sample_id).label == "7"

    other = new_page()
    login(other, live_server, "ann1", "pw-ann1")
    response = other.goto(f"{live_server.url}/projects/{project.pk}/review/")
    assert response.status == 403


def test_export_button_gives_a_downloadable_file(live_server, reviewed_project, new_page, artifacts):
    project, _ = reviewed_project
    page = open_as(new_page, live_server, "lead", f"/projects/{project.pk}/")
    page.select_option("#export-format", "csv")
    page.click("#export-btn")
    button = page.locator("#export-rows button[data-download]").first
    button.wait_for()
    page.locator("#exports").screenshot(path=str(artifacts / "review-exports.png"))
    with page.expect_download() as info:
        button.click()
    download = info.value
    path = download.path()
    rows = list(csv.DictReader(io.StringIO(open(path, encoding="utf-8").read())))
    from apps.samples.models import Sample

    labeled = dict(Sample.objects.filter(project=project, label__isnull=False).values_list("id", "label"))
    assert len(rows) == len(labeled) == 4
    assert {int(r["sample_id"]): r["label"] for r in rows} == labeled
    assert download.suggested_filename.endswith(".csv")
