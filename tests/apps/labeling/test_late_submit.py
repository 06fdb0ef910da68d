"""A submit after the lease ran out: accepted while the task is still the submitter's, refused (409) once
another annotator holds it. Real PostgreSQL; state through services, the submit through the API."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.apps.helpers import push_digits, run_round


@pytest.fixture
def one_task(project, lead, digits, django_capture_on_commit_callbacks):
    """A project whose queue holds exactly one task."""
    push_digits(project, digits, 12)
    return run_round(project, lead, django_capture_on_commit_callbacks, budget=1, strategy="random").tasks.get()


def _expire(task, hours: float = 3) -> None:
    """The lease ran out `hours` ago (what the clock would do; the row is otherwise as the lease left it)."""
    from apps.labeling.models import Task

    past = timezone.now() - timedelta(hours=hours)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=past, available_at=past, leased_at=past - timedelta(minutes=30))


def _submit(client, task_id: int, label: str):
    return client.post(f"/api/v1/tasks/{task_id}/annotations/", {"result": {"label": label}, "active_seconds": 4.0},
                       format="json")


def test_late_submit_refused_once_another_annotator_holds_the_task(api, project, lead, annotator, one_task):
    from apps.labeling.models import Annotation, Task
    from apps.samples.models import Sample

    first = api(annotator).post(f"/api/v1/projects/{project.id}/tasks/next/").json()
    assert first["id"] == one_task.pk
    _expire(one_task)
    taken = api(lead).post(f"/api/v1/projects/{project.id}/tasks/next/").json()  # the open task goes to the lead
    assert taken["id"] == one_task.pk

    r = _submit(api(annotator), one_task.pk, "3")
    assert r.status_code == 409, r.content
    error = r.json()["error"]
    assert error["code"] == "task_taken" and "nothing was stored" in error["message"]
    assert not Annotation.objects.filter(task=one_task).exists()
    task = Task.objects.get(pk=one_task.pk)
    assert task.state == "pending" and task.leased_by_id == lead.pk  # the new holder keeps the task
    assert Sample.objects.get(pk=one_task.sample_id).label is None

    # The holder's submit is the one that counts.
    r = _submit(api(lead), one_task.pk, "5")
    assert r.status_code == 201, r.content
    assert Sample.objects.get(pk=one_task.sample_id).label == "5"
    assert [a.annotator_id for a in Annotation.objects.filter(task=one_task)] == [lead.pk]
    # ...and the late one is now refused as done.
    assert _submit(api(annotator), one_task.pk, "3").json()["error"]["code"] == "task_done"


def test_late_submit_accepted_while_nobody_else_took_the_task(api, project, annotator, one_task):
    from apps.labeling.models import Annotation, Task
    from apps.samples.models import Sample

    api(annotator).post(f"/api/v1/projects/{project.id}/tasks/next/")
    _expire(one_task, hours=5)
    r = _submit(api(annotator), one_task.pk, "7")
    assert r.status_code == 201, r.content
    assert r.json()["lease_to_submit_s"] > 5 * 3600
    assert Task.objects.get(pk=one_task.pk).state == "done"
    assert Sample.objects.get(pk=one_task.sample_id).label == "7"
    assert Annotation.objects.get(task=one_task).annotator_id == annotator.pk


def test_late_submit_refused_after_the_next_holder_let_it_lapse_too(api, project, lead, annotator, one_task):
    """Claimed by another after expiry, and their lease ran out as well: nobody holds it, and it is not the
    first annotator's any more (not_leased); the next claim gets it."""
    from apps.labeling.models import Annotation

    api(annotator).post(f"/api/v1/projects/{project.id}/tasks/next/")
    _expire(one_task, hours=3)
    api(lead).post(f"/api/v1/projects/{project.id}/tasks/next/")
    _expire(one_task, hours=1)
    r = _submit(api(annotator), one_task.pk, "3")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_leased", r.content
    assert not Annotation.objects.exists()


def test_skip_follows_the_same_rule(api, project, lead, annotator, one_task):
    from apps.labeling.models import TaskSkip

    api(annotator).post(f"/api/v1/projects/{project.id}/tasks/next/")
    _expire(one_task)
    api(lead).post(f"/api/v1/projects/{project.id}/tasks/next/")
    r = api(annotator).post(f"/api/v1/tasks/{one_task.pk}/skip/")
    assert r.status_code == 409 and r.json()["error"]["code"] == "task_taken"
    assert not TaskSkip.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_late_submit_and_a_new_claim_racing_store_one_of_them(project, lead, annotator, one_task):
    """The late submit and another annotator's claim of the expired task, at the same moment, many times: either
    the submit wins (stored; the claim gets nothing) or the claim wins (the submit is a 409 task_taken). Never
    both, never a stored annotation on a task someone else holds."""
    from apps.core.errors import Conflict
    from apps.labeling.models import Annotation, Task
    from apps.labeling.services import annotation_submit, task_lease_next

    if connection.vendor != "postgresql":
        pytest.skip("the race needs PostgreSQL's row locks")
    outcomes = {"submitted": 0, "taken": 0}
    for _ in range(12):
        Annotation.objects.filter(task=one_task).delete()
        Task.objects.filter(pk=one_task.pk).update(state="pending", done_at=None, leased_by=annotator)
        _expire(one_task)
        barrier = threading.Barrier(2)
        result: dict = {}

        def late_submit():
            try:
                barrier.wait()
                annotation_submit(task=one_task, user=annotator, result={"label": "3"})
                result["submit"] = "ok"
            except Conflict as exc:
                result["submit"] = exc.code
            finally:
                connection.close()

        def claim():
            try:
                barrier.wait()
                got = task_lease_next(project=project, user=lead)
                result["claim"] = got.pk if got else None
            finally:
                connection.close()

        threads = [threading.Thread(target=late_submit), threading.Thread(target=claim)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stored = Annotation.objects.filter(task=one_task).count()
        holder = Task.objects.get(pk=one_task.pk).leased_by_id
        if result["submit"] == "ok":
            assert stored == 1 and result["claim"] is None and holder is None, result
            outcomes["submitted"] += 1
        else:
            assert result["submit"] == "task_taken" and result["claim"] == one_task.pk, result
            assert stored == 0 and holder == lead.pk, result
            outcomes["taken"] += 1
    assert sum(outcomes.values()) == 12
