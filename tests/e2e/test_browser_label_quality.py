"""The project page's Label quality section in headless Chromium: a lead runs a label check and sends
flagged labels back to the annotators or corrects them, with the mouse only."""
from __future__ import annotations

import pytest

from tests.apps.helpers import label_all_open, push_digits, truth_by_sample
from tests.e2e.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def noisy_project(transactional_db, digits):
    """60 digits labeled by an annotator, every 6th with a wrong digit: (project, flipped sample ids)."""
    from apps.accounts.services import user_create
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create

    lead = user_create(username="lead", password="pw-lead", role="lead")
    annotator = user_create(username="ann1", password="pw-ann1", role="annotator")
    project = project_create(user=lead, name="Digits quality", modality="image", labels=[str(i) for i in range(10)])
    membership_set(project=project, user=annotator, role="annotator")
    push_digits(project, digits, 60)
    rnd = round_create(project=project, user=lead, budget=60, strategy="random")  # on_commit → eager task
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    flipped = set()
    label_all_open(project, annotator, truth_by_sample(project, digits), flip_every=6, flip_by=3, flipped=flipped,
                   active_seconds=2.0)
    return project, flipped


def test_label_check_then_relabel_and_correct(live_server, noisy_project, new_page, artifacts):
    from apps.labeling.models import Annotation, LabelCheck, Task
    from apps.samples.models import Sample

    project, flipped = noisy_project
    page = new_page()
    login(page, live_server, "lead", "pw-lead")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.click("#label-check-btn")
    page.locator("#finding-rows tr[data-kind='label_issue']").first.wait_for()
    page.wait_for_function("() => window.__looplab.labelCheck.check && window.__looplab.labelCheck.check.status === 'succeeded'")
    state = page.evaluate("() => window.__looplab.labelCheck")
    check = LabelCheck.objects.get(project=project)
    assert state["check"]["id"] == check.pk and check.status == "succeeded"
    shown = [f["sample"] for f in state["findings"]]
    assert shown == [f["sample"] for f in check.findings]  # the table is the check's ranked list
    assert page.locator("#finding-rows tr").count() == len(shown)
    assert page.locator("#label-check-job .job-status").text_content() == "succeeded"
    assert page.locator("#label-check-job .progress").get_attribute("aria-valuenow") == "100"
    assert page.locator("#label-check-job .job-msg").text_content() == f"Check #{check.pk}: {check.message}"
    real = [f for f in state["findings"] if f["kind"] == "label_issue" and f["sample"] in flipped]
    assert len(real) >= 2, state["findings"]
    page.locator("#label-quality").screenshot(path=str(artifacts / "label-quality.png"))

    first, second = real[0], real[1]
    page.click(f"#finding-rows tr[data-sample='{first['sample']}'] button[data-action='reject']")
    page.wait_for_function("s => window.__looplab.labelCheck.done[s] === 'sent back'", arg=first["sample"])
    ann = Annotation.objects.get(pk=first["annotation"])
    assert ann.review_status == "rejected" and ann.review_comment.startswith(f"Label check #{check.pk}: labelled ")
    assert Task.objects.get(pk=ann.task_id).state == "pending"  # back with the annotators

    page.click(f"#finding-rows tr[data-sample='{second['sample']}'] button[data-action='correct']")
    page.wait_for_function("s => (window.__looplab.labelCheck.done[s] || '').startsWith('corrected')", arg=second["sample"])
    assert Annotation.objects.get(pk=second["annotation"]).review_status == "corrected"
    assert Sample.objects.get(pk=second["sample"]).label == second["suggested_label"]
    row = page.locator(f"#finding-rows tr[data-sample='{second['sample']}']")
    assert row.locator(".badge").text_content() == f"corrected to {second['suggested_label']}"

    # reopened later, the page shows what was done to each finding
    again = new_page()
    login(again, live_server, "lead", "pw-lead")
    again.goto(f"{live_server.url}/projects/{project.pk}/")
    again.locator(f"#finding-rows tr[data-sample='{first['sample']}'] .badge").wait_for()
    assert again.locator(f"#finding-rows tr[data-sample='{first['sample']}'] .badge").text_content() == "sent back"
    assert again.locator(f"#finding-rows tr[data-sample='{second['sample']}'] .badge").text_content() == "corrected"
    assert again.locator(f"#finding-rows tr[data-sample='{first['sample']}'] button").count() == 0
