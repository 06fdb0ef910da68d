"""The project page's Drift section in headless Chromium: a lead checks production for drift and sends the
samples most unlike the training data back to labeling."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageOps

from tests.apps.helpers import label_all_open, push_digits, truth_by_sample
from tests.e2e.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def drifting_project(transactional_db, digits):
    """A deployed digits model (trained on 120 labels), then 50 negatives from a "new" camera pushed."""
    from apps.accounts.services import user_create
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest
    from apps.training.services import training_run_create

    lead = user_create(username="lead", password="pw-lead", role="lead")
    annotator = user_create(username="ann1", password="pw-ann1", role="annotator")
    project = project_create(user=lead, name="Digits drift", modality="image", labels=[str(i) for i in range(10)],
                             auto_deploy=True)
    membership_set(project=project, user=annotator, role="annotator")
    push_digits(project, digits, 160, metadata=lambda i: {"camera": "old"})  # on_commit → eager embed job
    round_create(project=project, user=lead, budget=120, strategy="random")
    label_all_open(project, annotator, truth_by_sample(project, digits))
    run = training_run_create(project=project, user=lead, epochs=4)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error

    def negative(png):
        buf = io.BytesIO()
        ImageOps.invert(Image.open(io.BytesIO(png)).convert("L")).save(buf, format="PNG")
        return buf.getvalue()

    samples_ingest(project=project, items=[IngestItem(external_id=f"n{i}", content=negative(png),
                                                      metadata={"camera": "new"})
                                           for i, (png, _) in enumerate(digits[200:250])])
    return project


def test_drift_check_and_send_back(live_server, drifting_project, new_page, artifacts):
    from apps.monitoring.models import DriftCheck, DriftMonitor
    from apps.samples.models import Sample

    project = drifting_project
    page = new_page()
    login(page, live_server, "lead", "pw-lead")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.select_option("#drift-window", "24")
    page.click("#drift-btn")
    page.locator("#drift-witnesses figure").first.wait_for()
    state = page.evaluate("() => window.__looplab.drift")
    check = DriftCheck.objects.get(project=project)
    assert state["check"]["id"] == check.pk and check.status == "succeeded"
    assert state["detail"]["report"]["drifted"] is True
    assert page.locator("#drift-stats dd").first.text_content() == "drift"
    # the novelty statistic, in words: how much of production lies beyond the training data's own tail
    nov = state["detail"]["report"]["novelty"]
    beyond = page.locator("#drift-stats div", has=page.locator("dt", has_text="Beyond the training data"))
    text = beyond.locator("dd").text_content()
    assert re.fullmatch(r"\d+% of production \(\d+% expected\)", text), text
    assert text.endswith(f"({100 * nov['share_expected']:.0f}% expected)") and nov["share_prod"] > nov["share_expected"]
    assert page.locator("#drift-slices tr[data-slice='camera=new'] td").first.text_content().startswith("0% →")
    shown = [int(x) for x in page.locator("#drift-witnesses figure").evaluate_all("els => els.map(e => e.dataset.sample)")]
    assert shown == [w["sample"] for w in check.witnesses][:24]
    page.locator("#drift").screenshot(path=str(artifacts / "drift.png"))

    n_open = len([w for w in state["detail"]["witnesses"] if not w["labeled"] and not w["drift_flagged"]])
    assert page.locator("#drift-flag-btn").text_content() == f"Send {n_open} to labeling"
    page.click("#drift-flag-btn")
    page.wait_for_function("() => window.__looplab.drift.flagged !== null")
    assert page.evaluate("() => window.__looplab.drift.flagged") == n_open
    flagged = set(Sample.objects.filter(project=project, drift_flagged=True).values_list("external_id", flat=True))
    assert len(flagged) == n_open and sum(e.startswith("n") for e in flagged) >= 0.9 * n_open
    page.locator("#drift-witnesses .badge").first.wait_for()
    assert page.locator("#drift-flag-btn").is_hidden()  # nothing left to send

    # the check was asked for, and the window is shown
    assert page.locator("#drift-stats dd").nth(1).text_content().endswith("(asked)")
    # monitoring: every 24 hours, and send drifted samples back without asking
    assert page.locator("#drift-schedule-status").text_content() == "no schedule: checks run when you ask"
    page.select_option("#drift-every", "24")
    page.check("#drift-auto-flag")
    page.fill("#drift-webhook", "https://hooks.example.com/looplab/drift")
    page.click("#drift-schedule-btn")
    page.wait_for_function("() => document.getElementById('drift-schedule-status').textContent.includes('due')")
    monitor = DriftMonitor.objects.get(project=project)
    assert monitor.drift_check_hours == 24 and monitor.drift_auto_flag is True
    assert monitor.drift_webhook_url == "https://hooks.example.com/looplab/drift"
    page.reload()
    page.wait_for_function("() => window.__looplab.drift.schedule !== null")
    assert page.locator("#drift-every").input_value() == "24" and page.locator("#drift-auto-flag").is_checked()
    assert page.locator("#drift-webhook").input_value() == "https://hooks.example.com/looplab/drift"
    assert page.locator("#drift-webhook-secret").text_content() == monitor.drift_webhook_secret != ""
    # a new signing secret: shown at once, and the page says the old one still signs for a day
    old_secret = monitor.drift_webhook_secret
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#drift-webhook-rotate")
    page.wait_for_function("() => document.getElementById('drift-webhook-rotated').textContent.includes('Previous')")
    monitor = DriftMonitor.objects.get(project=project)
    assert monitor.drift_webhook_secret_previous == old_secret != monitor.drift_webhook_secret
    assert page.locator("#drift-webhook-secret").text_content() == monitor.drift_webhook_secret
    page.locator("#drift").screenshot(path=str(artifacts / "drift-monitoring.png"))
    # the project list marks the project whose latest check found drift
    page.goto(f"{live_server.url}/")
    badge = page.locator(f"tr[data-project-id='{project.pk}'] .badge-bad")
    assert badge.text_content().strip().lower() == "drift"
    badge.click()
    page.wait_for_url(f"**/projects/{project.pk}/#drift")
