"""A lead starts a round with a slice quota from the project page and reads what the quota did."""
from __future__ import annotations

import pytest

from tests.apps.helpers import push_digits
from tests.e2e.conftest import open_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_round_with_a_slice_quota_from_the_page(live_server, people, digits, new_page, artifacts):
    from apps.labeling.models import Round
    from apps.projects.services import project_create

    project = project_create(user=people["lead"], name="Digits at night", modality="image",
                             labels=[str(i) for i in range(10)], label_budget=500)
    push_digits(project, digits, 200, metadata=lambda i: {"time_of_day": "night" if i % 10 == 0 else "day"})

    page = open_as(new_page, live_server, "lead", f"/projects/{project.id}/")
    page.fill("#round-form input[name=budget]", "20")
    page.click("#round-form .round-constraints summary")
    page.fill("#round-form input[name=slice_key]", "time_of_day")
    page.fill("#round-form input[name=slice_value]", "night")
    page.fill("#round-form input[name=slice_min]", "8")
    page.check("#round-form input[name=skip_duplicates]")
    page.click("#round-form button[type=submit]")
    line = page.wait_for_selector("tr[data-job='round'][data-status='succeeded'] .round-constraint", timeout=60_000)
    rnd = Round.objects.get(project=project)
    assert rnd.constraints == {"slices": [{"name": "time_of_day=night", "where": {"time_of_day": "night"},
                                           "min": 8, "max": None}], "exclude_near_duplicates": 0.98}
    got = rnd.details["constraints"]["constraints"]["slice:time_of_day=night"]["count"]
    assert got >= 8
    assert line.inner_text() == f"time_of_day=night: at least 8 → {got}"
    # nothing is labeled yet in a first round: none to skip, and the page says so
    assert rnd.details["constraints"]["excluded_near_duplicates"] == 0
    assert page.locator(".round-constraint >> text=near-duplicates of labeled or queued samples skipped "
                        "(cosine ≥ 0.98): 0").count() == 1
    page.screenshot(path=str(artifacts / "round-quota.png"), full_page=True)

    # a quota the API refuses shows its message
    page.fill("#round-form input[name=slice_min]", "9")
    page.fill("#round-form input[name=slice_max]", "3")
    page.click("#round-form button[type=submit]")
    page.wait_for_selector("#action-status.alert-error >> text=min (9) is above max (3)")
    assert Round.objects.filter(project=project).count() == 1

    # a class quota counts the deployed model's predictions: without a model the page says so
    page.fill("#round-form input[name=slice_key]", "")
    page.fill("#round-form input[name=class_min]", "3")
    page.select_option("#round-form select[name=class_label]", "7")
    page.click("#round-form button[type=submit]")
    page.wait_for_selector("#action-status.alert-error >> text=no model is deployed yet")
    assert Round.objects.filter(project=project).count() == 1
