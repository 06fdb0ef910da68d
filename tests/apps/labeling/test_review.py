"""Review API: list, accept, reject (task back to the queue), correct (sample label follows)."""
import pytest

from tests.apps.helpers import push_digits


@pytest.fixture
def two_per_task(project, lead, annotator, make_user, digits, django_capture_on_commit_callbacks):
    """A digits project asking for 2 annotations per task; 4 tasks, each annotated by the annotator and by ann2."""
    from apps.labeling.services import annotation_submit, round_create, task_lease_next
    from apps.projects.services import membership_set, project_update

    ann2 = make_user("ann2", "annotator")
    membership_set(project=project, user=ann2, role="annotator")
    project_update(project=project, annotations_per_task=2)
    push_digits(project, digits, 12)
    with django_capture_on_commit_callbacks(execute=True):
        round_create(project=project, user=lead, budget=4, strategy="random")
    for user, labels in ((annotator, ["1", "2", "3", "4"]), (ann2, ["1", "2", "5", "4"])):
        for label in labels:
            task = task_lease_next(project=project, user=user)
            annotation_submit(task=task, user=user, result={"label": label}, active_seconds=2.0)
    return {"ann2": ann2}


def test_list_filters_and_roles(api, lead, annotator, outsider, project, two_per_task):
    c = api(lead)
    body = c.get(f"/api/v1/projects/{project.id}/annotations/?review_status=pending").json()
    assert body["count"] == 8
    row = body["results"][0]
    assert {"id", "task", "sample", "annotator", "result", "review_status", "content_url", "final_result"} <= set(row)
    assert c.get(f"/api/v1/projects/{project.id}/annotations/?annotator=ann2").json()["count"] == 4
    assert c.get(f"/api/v1/projects/{project.id}/annotations/?task={row['task']}").json()["count"] == 2
    r = c.get(f"/api/v1/projects/{project.id}/annotations/?review_status=maybe")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_review_status"
    assert api(annotator).get(f"/api/v1/projects/{project.id}/annotations/").status_code == 403
    assert api(outsider).get(f"/api/v1/projects/{project.id}/annotations/").status_code == 404
    assert api(annotator).post(f"/api/v1/annotations/{row['id']}/review/", {"action": "accept"}, format="json").status_code == 403
    assert api(outsider).post(f"/api/v1/annotations/{row['id']}/review/", {"action": "accept"}, format="json").status_code == 404


def test_reject_sends_the_task_back_and_stops_counting(api, lead, annotator, project, two_per_task):
    from apps.labeling.models import Annotation, Task
    from apps.labeling.services import annotation_submit, task_lease_next
    from apps.samples.models import Sample

    c = api(lead)
    ann = Annotation.objects.filter(annotator=annotator).order_by("id").first()
    task = Task.objects.get(pk=ann.task_id)
    assert task.state == "done" and Sample.objects.get(pk=task.sample_id).label == "1"
    # A rejection needs a comment; bad actions are 4xx with the error shape.
    r = c.post(f"/api/v1/annotations/{ann.pk}/review/", {"action": "reject"}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "comment_required"
    r = c.post(f"/api/v1/annotations/{ann.pk}/review/", {"action": "shred"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_error"
    r = c.post(f"/api/v1/annotations/{ann.pk}/review/", {"action": "reject", "comment": "that is a 7"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["review_status"] == "rejected" and r.json()["reviewer"] == "lead"
    ann.refresh_from_db()
    task.refresh_from_db()
    assert ann.review_status == "rejected" and ann.review_comment == "that is a 7" and ann.reviewed_at
    assert task.state == "pending" and task.done_at is None
    assert Sample.objects.get(pk=task.sample_id).label is None
    # The rejected annotator may take the task again (their rejected annotation does not count).
    again = task_lease_next(project=project, user=annotator)
    assert again.pk == task.pk
    annotation_submit(task=again, user=annotator, result={"label": "7"})
    task.refresh_from_db()
    assert task.state == "done"
    assert Annotation.objects.filter(task=task).exclude(review_status="rejected").count() == 2


def test_accept_and_correct(api, lead, annotator, project, two_per_task):
    from apps.labeling.models import Annotation, Task
    from apps.samples.models import Sample

    c = api(lead)
    anns = list(Annotation.objects.filter(annotator=annotator).order_by("id"))
    r = c.post(f"/api/v1/annotations/{anns[1].pk}/review/", {"action": "accept", "comment": "ok"}, format="json")
    assert r.status_code == 200 and r.json()["review_status"] == "accepted"
    assert Task.objects.get(pk=anns[1].task_id).state == "done"
    # Correct the disagreeing task (3 vs 5): the lead says 8; the sample label follows.
    bad = c.post(f"/api/v1/annotations/{anns[2].pk}/review/", {"action": "correct", "result": {"label": "cat"}}, format="json")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_label"
    missing = c.post(f"/api/v1/annotations/{anns[2].pk}/review/", {"action": "correct"}, format="json")
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "result_required"
    r = c.post(f"/api/v1/annotations/{anns[2].pk}/review/", {"action": "correct", "result": {"label": "8"}}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["review_status"] == "corrected" and body["result"] == {"label": "3"}
    assert body["corrected_result"] == {"label": "8"} and body["final_result"] == {"label": "8"}
    assert Sample.objects.get(pk=anns[2].sample_id).label == "8"
    assert c.get(f"/api/v1/projects/{project.id}/annotations/?review_status=pending").json()["count"] == 6
    assert c.get(f"/api/v1/projects/{project.id}/annotations/?review_status=accepted,corrected").json()["count"] == 2


def test_unknown_annotation_is_404(api, lead, project):
    assert api(lead).post("/api/v1/annotations/999999/review/", {"action": "accept"}, format="json").status_code == 404
    assert api(lead).post("/api/v1/annotations/abc/review/", {"action": "accept"}, format="json").status_code == 404
